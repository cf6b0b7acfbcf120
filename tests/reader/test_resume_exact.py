"""Exact resume of the real dataset through a real DataLoader: batches before the cut + resumed == uninterrupted.

For every batch boundary ``n`` of an epoch (the cut points are sampled where a full sweep would be slow,
always keeping 0, 1, the batches around each worker's last one, total - 1 and total), a fresh dataset and
a fresh DataLoader resumed from ``{"epoch", "batches_consumed": n, "batch_size"}`` must yield exactly the
uninterrupted run's batches ``n..`` — value for value — and at ``n == total`` the next epoch's batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from loader_helpers import assert_same_batches, epochs, indices, loader

from lerowds import LeRobotWebDataset
from lerowds.errors import ResumeMismatchError
from lerowds.reader import pipeline as consumer
from lerowds.reader.order.ranks import consumer_sample_count
from lerowds.reader.resume.batches import dataloader_batch_order

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers, 2 CPUs

SUB149 = tuple(e for e in range(13) if e != 1)  # tabular_converted without its 1-frame episode: 149 frames


@dataclass(frozen=True)
class Case:
    num_workers: int
    batch_size: int
    pool: int
    episodes: tuple[int, ...] | None = None
    rank: int = 0
    world_size: int = 1
    epoch: int = 0
    every_cut: bool = True  # every batch boundary, else a sample that keeps the edge cases
    drop_last: bool = False
    tensors: bool = False  # torch's default collate (tensors) instead of the numpy one
    persistent: bool = False
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        where = f"r{self.rank}of{self.world_size}" if self.world_size > 1 else ""
        sub = "sub" if self.episodes else ""
        flags = "".join(
            f"-{name}"
            for name, on in (
                ("droplast", self.drop_last),
                ("tensors", self.tensors),
                ("persist", self.persistent),
            )
            if on
        )
        budget = "".join(f"-{k}" for k in self.extra)
        return f"w{self.num_workers}-b{self.batch_size}-p{self.pool}-e{self.epoch}{sub}{where}{flags}{budget}"


# Per-worker sample counts: 150 frames give 150 (1 worker), 75/75 (2), 50/50/50 (3); SUB149 gives 75/74
# and 50/50/49. Batch size 5 divides them, 4 and 7 do not; 7 with 50/50/49, 37 or 2 with 75/74 leave one
# worker a batch short, so it runs out before the others near the end of the epoch.
# Every cut is a fresh DataLoader (num_workers forks), so the full sweep runs in-process (w0), with few batches
# (b37) and for the uneven 3-worker case (w3-b7-p2-e0sub, 50/50/49); the other worker cases take the sample
# (the edges, each worker's last batches, and a run of cuts mid-epoch with each worker next).
CASES = [
    Case(0, 4, 1),
    Case(0, 5, 64),
    Case(0, 7, 2, SUB149, epoch=1),
    Case(1, 5, 2, every_cut=False),
    Case(1, 4, 64, epoch=1, every_cut=False),
    Case(2, 5, 1, every_cut=False),
    Case(2, 37, 2, SUB149),
    Case(2, 37, 64, SUB149, epoch=1),
    Case(2, 3, 64, epoch=1, every_cut=False),
    Case(2, 2, 2, SUB149, every_cut=False),
    Case(2, 4, 2, every_cut=False, tensors=True),  # torch's default collate: tensors and task strings
    Case(3, 7, 2, SUB149),
    Case(3, 5, 64, every_cut=False),
    Case(3, 4, 1, every_cut=False),
    Case(3, 7, 64, SUB149, epoch=1, every_cut=False),
    Case(3, 4, 2, rank=2, world_size=4),  # 37 per rank (2 dropped): 13/12/12 samples, 4/3/3 batches
    Case(2, 4, 2, rank=1, world_size=4, extra={"remainder": "repeat"}),  # 38 per rank: 19/19
    Case(3, 7, 2, SUB149, drop_last=True, every_cut=False),
    Case(2, 37, 2, SUB149, every_cut=False, persistent=True),
    Case(
        2, 4, 64, every_cut=False, extra={"pool_byte_budget": 14000}
    ),  # the byte budget bounds the pool: 2 episodes
]


def _dataset(path: Path, case: Case) -> LeRobotWebDataset:
    kw = {
        "episode_pool_size": case.pool,
        "shuffle": True,
        "seed": 5,
        "episodes": case.episodes,
        "rank": case.rank,
        "world_size": case.world_size,
    }
    return LeRobotWebDataset(path, **kw, **case.extra)


def _loader(ds: LeRobotWebDataset, case: Case):
    return loader(
        ds,
        batch_size=case.batch_size,
        num_workers=case.num_workers,
        tensors=case.tensors,
        drop_last=case.drop_last,
        persistent_workers=case.persistent,
    )


def cut_points(counts: list[int], batch_size: int, drop_last: bool, every: bool) -> list[int]:
    order = dataloader_batch_order(counts, batch_size=batch_size, drop_last=drop_last)
    total = len(order)
    if every:
        return list(range(total + 1))
    last_of = {w: i for i, (w, _) in enumerate(order)}  # each worker's last batch
    around = {i + d for i in last_of.values() for d in (-1, 0, 1, 2)}
    mid = {total // 2 + d for d in range(len(counts))}  # mid-epoch, each worker's turn next
    return sorted(
        {0, 1, 2, total // 3, total // 2, total - 1, total} | {i for i in around | mid if 0 <= i <= total}
    )


def worker_counts(ds: LeRobotWebDataset, case: Case) -> list[int]:
    workers = max(case.num_workers, 1)
    return [
        consumer_sample_count(
            ds.num_frames, world_size=case.world_size, num_workers=workers, worker=w, remainder=ds.remainder
        )
        for w in range(workers)
    ]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_resume_at_every_batch_boundary_continues_the_uninterrupted_run(
    tabular_converted, case: Case
) -> None:
    path = tabular_converted
    saver = _dataset(path, case)
    runs = epochs(_loader(saver, case), case.epoch + 2)  # the uninterrupted run: epochs 0 .. epoch + 1
    full, following = runs[case.epoch], runs[case.epoch + 1]
    counts = worker_counts(saver, case)
    assert len(full) == len(
        dataloader_batch_order(counts, batch_size=case.batch_size, drop_last=case.drop_last)
    )
    if not case.drop_last:  # the epoch is each of the rank's frames once (the order: test_order_pinned.py)
        assert len(indices(full)) == len(set(indices(full))) == len(indices(following)) == len(saver)
        if case.world_size == 1:
            assert sorted(indices(following)) == sorted(indices(full))
    total = len(full)
    for n in cut_points(counts, case.batch_size, case.drop_last, case.every_cut):
        state = {"epoch": case.epoch, "batches_consumed": n, "batch_size": case.batch_size}
        if case.drop_last:
            state["drop_last"] = True
        if n % 2:  # every other cut through state_dict(), which adds the configuration to check
            state = saver.state_dict(
                batches_consumed=n,
                batch_size=case.batch_size,
                epoch=case.epoch,
                num_workers=case.num_workers,
                drop_last=case.drop_last,
            )
        ds = _dataset(path, case)
        ds.load_state_dict(state)
        resumed_loader = _loader(ds, case)
        resumed = list(resumed_loader)
        if n == total:
            assert_same_batches(resumed, following, f"{case}: resumed at the end of epoch {case.epoch}")
        else:
            assert_same_batches(full[:n] + resumed, full, f"{case}: cut after {n} of {total} batches")
        if n == total // 2:  # the loop goes on: the resumed loader's next iteration is the next epoch
            assert_same_batches(list(resumed_loader), following, f"{case}: the epoch after a resume at {n}")


def test_resume_with_decoded_video_frames(video_small_converted) -> None:
    """Two workers over a video dataset: decoded frames (and windows) resume value for value too."""
    cam = "observation.images.front"
    kw = {"episode_pool_size": 2, "seed": 8, "delta_timestamps": {cam: [-1 / 15, 0.0]}}
    case = Case(2, 3, 2, tensors=True)
    saver = LeRobotWebDataset(video_small_converted, **kw)
    full, following = epochs(_loader(saver, case), 2)
    total = len(full)  # 76 frames: 38 per worker, 13 batches each
    assert total == 26 and full[0][cam].shape == (3, 2, 3, 32, 32)
    for n in (0, 1, 11, 24, 25, 26):
        ds = LeRobotWebDataset(video_small_converted, **kw)
        ds.load_state_dict(saver.state_dict(batches_consumed=n, batch_size=3, epoch=0, num_workers=2))
        resumed = list(_loader(ds, case))
        if n == total:
            assert_same_batches(resumed, following, "video: resumed at the end of the epoch")
        else:
            assert_same_batches(full[:n] + resumed, full, f"video: cut after {n} of {total} batches")


# ---- resuming reads and decodes only what it yields -----------------------------------------------------


class _CountingDecoder:
    def __init__(self, inner, frames: list) -> None:
        self._inner, self._frames = inner, frames

    def frames(self, indices):
        self._frames.extend(indices)
        return self._inner.frames(indices)

    def close(self) -> None:
        self._inner.close()


def _count_reads(ds: LeRobotWebDataset, monkeypatch) -> dict[str, list]:
    """Record episode parquet reads, clip lookups, decoder opens and decoded frames of ``ds`` (num_workers=0)."""
    seen: dict[str, list] = {"parquet": [], "clip": [], "decoders": [], "frames": []}
    store = ds._store
    parquet_bytes, clip, make_decoder = store.parquet_bytes, store.clip, consumer.make_decoder

    def counting_parquet(row):
        seen["parquet"].append(row)
        return parquet_bytes(row)

    def counting_clip(row, key):
        seen["clip"].append(row)
        return clip(row, key)

    def counting_make_decoder(kind, clip_range, fps, length, context, **kw):
        seen["decoders"].append(context.episode_index)
        return _CountingDecoder(make_decoder(kind, clip_range, fps, length, context, **kw), seen["frames"])

    monkeypatch.setattr(store, "parquet_bytes", counting_parquet)
    monkeypatch.setattr(store, "clip", counting_clip)
    monkeypatch.setattr(consumer, "make_decoder", counting_make_decoder)
    return seen


def test_resume_skips_without_reading_or_decoding(video_small_converted, monkeypatch) -> None:
    kw = {"episode_pool_size": 2, "seed": 4}
    full_ds = LeRobotWebDataset(video_small_converted, **kw)
    full_reads = _count_reads(full_ds, monkeypatch)
    full = list(loader(full_ds, batch_size=4, num_workers=0, tensors=True))
    assert len(full) == 19 and len(full_reads["parquet"]) == 8 and len(full_reads["frames"]) == 76

    for n in (17, 18, 10):
        ds = LeRobotWebDataset(video_small_converted, **kw)
        ds.load_state_dict({"epoch": 0, "batches_consumed": n, "batch_size": 4})
        reads = _count_reads(ds, monkeypatch)
        stream = iter(loader(ds, batch_size=4, num_workers=0, tensors=True))
        assert reads == {
            "parquet": [],
            "clip": [],
            "decoders": [],
            "frames": [],
        }  # nothing before the first batch
        resumed = list(stream)
        assert_same_batches(full[:n] + resumed, full, f"cut after {n}")
        yielded = indices(resumed)
        episodes = {int(e) for b in resumed for e in b["episode_index"].tolist()}
        # Only the episodes of the samples still to come are read (the pool at the cut and later ones) ...
        assert sorted(reads["parquet"]) == sorted(episodes) and sorted(reads["clip"]) == sorted(episodes)
        assert sorted(reads["decoders"]) == sorted(episodes)
        # ... and exactly one frame is decoded per yielded sample (no window: the sample's own frame).
        frames = sorted(int(f) for b in resumed for f in b["frame_index"].tolist())
        assert sorted(reads["frames"]) == frames and len(reads["frames"]) == len(yielded)
        if n == 18:
            assert len(yielded) == 4 and len(episodes) <= 2


# ---- configuration mismatches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "saved_kw", "loaded_kw", "saved", "now"),
    [
        ("seed", {"seed": 0}, {"seed": 1}, "0", "1"),
        ("episode_pool_size", {"episode_pool_size": 2}, {"episode_pool_size": 64}, "2", "64"),
        ("shuffle", {"shuffle": True}, {"shuffle": False}, "True", "False"),
        ("remainder", {"remainder": "drop"}, {"remainder": "repeat"}, "'drop'", "'repeat'"),
        ("num_frames", {}, {"episodes": list(SUB149)}, "150", "149"),
        ("pool_byte_budget", {}, {"pool_byte_budget": "1MB"}, "None", "1000000"),
    ],
)
def test_mismatched_config_names_the_field_and_both_values(
    tabular_converted, field, saved_kw, loaded_kw, saved, now
) -> None:
    state = LeRobotWebDataset(tabular_converted, **saved_kw).state_dict(
        batches_consumed=3, batch_size=4, epoch=0, num_workers=2
    )
    ds = LeRobotWebDataset(tabular_converted, **loaded_kw)
    with pytest.raises(ResumeMismatchError) as err:
        ds.load_state_dict(state)
    assert f"saved with {field}={saved} but this run has {field}={now}" in str(err.value)


def test_state_of_another_dataset_is_refused(tabular_converted, video_small_converted) -> None:
    state = LeRobotWebDataset(tabular_converted).state_dict(batches_consumed=3, batch_size=4, epoch=0)
    other = LeRobotWebDataset(video_small_converted)
    with pytest.raises(
        ResumeMismatchError, match="saved with dataset='[^']+' but this run has dataset='[^']+'"
    ) as err:
        other.load_state_dict(state)
    assert state["config"]["dataset"] in str(err.value) and other.meta.fingerprint in str(err.value)


def test_state_of_another_episode_selection_is_refused(tabular_converted) -> None:
    """Episodes 1 + 4 and episode 7 are both 3 frames: the selection itself must be part of the check."""
    state = LeRobotWebDataset(tabular_converted, episodes=[1, 4]).state_dict(
        batches_consumed=0, batch_size=1, epoch=0
    )
    ds = LeRobotWebDataset(tabular_converted, episodes=[7])
    with pytest.raises(ResumeMismatchError, match="episodes"):
        ds.load_state_dict(state)


@pytest.mark.parametrize(("saved", "actual"), [(2, 3), (3, 2), (2, 0), (0, 2), (1, 2)])
def test_other_worker_count_continues_the_epoch_elastically(tabular_converted, saved, actual) -> None:
    """Another num_workers is an elastic resume (test_elastic.py): the rest of the epoch comes once."""
    kw = {"episode_pool_size": 2, "seed": 4}
    first = indices(
        list(loader(LeRobotWebDataset(tabular_converted, **kw), batch_size=4, num_workers=saved))[:3]
    )
    state = LeRobotWebDataset(tabular_converted, **kw).state_dict(
        batches_consumed=3, batch_size=4, epoch=0, num_workers=saved
    )
    ds = LeRobotWebDataset(tabular_converted, **kw)
    ds.load_state_dict(state)  # the main process cannot know the DataLoader's worker count yet
    rest = indices(loader(ds, batch_size=4, num_workers=actual))
    assert sorted(first + rest) == list(range(150))


def test_zero_and_one_worker_are_the_same_stream(tabular_converted) -> None:
    """num_workers=0 and 1 give one identical stream, so a state saved with one resumes exactly with the other."""
    kw = {"episode_pool_size": 3, "seed": 2}
    full = list(loader(LeRobotWebDataset(tabular_converted, **kw), batch_size=4, num_workers=0))
    for saved, actual in ((0, 1), (1, 0)):
        saver = LeRobotWebDataset(tabular_converted, **kw)
        ds = LeRobotWebDataset(tabular_converted, **kw)
        ds.load_state_dict(saver.state_dict(batches_consumed=7, batch_size=4, epoch=0, num_workers=saved))
        assert_same_batches(
            full[:7] + list(loader(ds, batch_size=4, num_workers=actual)), full, f"{saved}->{actual}"
        )


def test_resume_past_the_end_of_the_epoch_is_refused(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted)
    ds.load_state_dict({"epoch": 0, "batches_consumed": 39, "batch_size": 4})  # 150 frames: 38 batches
    with pytest.raises(ResumeMismatchError, match="batches_consumed=39 but this epoch has 38 batches"):
        list(loader(ds, batch_size=4, num_workers=0))
