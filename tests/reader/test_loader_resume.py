"""``Loader`` and ``StatefulLoader`` as torch Statefuls: ``state_dict()`` after any batch, loaded into a fresh
loader (directly or through accelerate's checkpointing), continues with exactly the next batch."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from contracts import SelfSaving, check_exactly_once, check_save_restore
from loader_helpers import assert_same_batches
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset, Loader, StatefulLoader
from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.mix import mix

CAM = "observation.images.front"


def _tabular(root: Path) -> LeRobotWebDataset:
    return LeRobotWebDataset(root, episode_pool_size=2, seed=7)


def _ids(batches: Any) -> list[list[int]]:
    return [b["index"].tolist() for b in batches]


def _take(loader: Any, n: int) -> list[list[int]]:
    it = iter(loader)
    out = _ids(itertools.islice(it, n))
    del it  # a training job stops here and saves
    return out


def test_resume_with_video_batches_equal(video_small_converted: Path) -> None:
    def make() -> Loader:
        ds = LeRobotWebDataset(
            video_small_converted, delta_timestamps={CAM: [-1 / 15, 0.0]}, episode_pool_size=3, seed=1
        )
        return Loader(ds, 6, num_threads=2)

    def kept(batch: dict[str, Any]) -> dict[str, Any]:  # the Loader reuses its buffers: keep copies
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    check_save_restore(
        lambda: SelfSaving(make(), item=kept),
        epochs=1,
        cuts=lambda per_epoch, total: [5],
        compare=assert_same_batches,
        what="video resume",
    )


def test_state_before_iterating_and_counter_form(tabular_converted: Path) -> None:
    loader = Loader(_tabular(tabular_converted), 8, num_threads=2)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batches_consumed"]) == (0, 0)
    loader.set_epoch(3)
    assert loader.state_dict()["epoch"] == 3
    full = _ids(Loader(_tabular(tabular_converted), 8, num_threads=2))
    counters = Loader(_tabular(tabular_converted), 8, num_threads=2)
    counters.load_state_dict({"epoch": 0, "batches_consumed": 4, "batch_size": 8})  # a trainer's integers
    assert _ids(counters) == full[4:]
    ds = _tabular(tabular_converted)  # the dataset's counter form still feeds the DataLoader path
    ds.load_state_dict(ds.state_dict(batches_consumed=4, batch_size=8, num_workers=2))
    assert _ids(DataLoader(ds, batch_size=8, num_workers=2)) == full[4:]


KW = {"shuffle": True, "seed": 7, "episode_pool_size": 2}


def _ranks(root: Path, world: int, threads: int, batch_size: int, batches: int | None, state=None, **kw):
    """Every rank's first ``batches`` batches (all when None) through a fresh ``Loader``, and rank 0's state
    after them (rank 0's: every rank's state is the same but for nothing the resume reads)."""
    taken, saved = [], None
    for rank in range(world):
        loader = Loader(
            LeRobotWebDataset(root, rank=rank, world_size=world, **KW), batch_size, num_threads=threads, **kw
        )
        if state is not None:
            loader.load_state_dict(state)
        ids = _take(loader, batches) if batches is not None else _ids(loader)
        taken.append([i for b in ids for i in b])
        if rank == 0:
            saved = loader.state_dict()
    return taken, saved


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ((1, 2, 8, 5), (1, 3, 8)),  # more threads
        ((1, 3, 5, 4), (1, 1, 7)),  # fewer threads, another batch size
        ((1, 2, 8, 5), (1, 2, 6)),  # only the batch size: each thread continues its stream
        ((2, 2, 4, 5), (3, 3, 5)),  # more ranks and threads
        ((3, 1, 5, 4), (2, 2, 3)),  # fewer ranks
    ],
    ids=str,
)
def test_loader_resumes_elastically_exactly_once(tabular_converted: Path, old, new) -> None:
    """A Loader state resumed on another thread count, world size or batch size continues the epoch as a
    DataLoader's does (docs/ELASTIC.md): what was consumed plus the rest is the epoch, each sample once (but
    the last R % W' dropped), every rank yields as many, and the next epoch is a fresh run's."""
    (w0, k0, b0, n), (w1, k1, b1) = old, new
    consumed, state = _ranks(tabular_converted, w0, k0, b0, n)
    assert state is not None and state["config"]["num_workers"] == k0
    rest = []
    for rank in range(w1):
        loader = Loader(
            LeRobotWebDataset(tabular_converted, rank=rank, world_size=w1, **KW), b1, num_threads=k1
        )
        loader.load_state_dict(state)
        batches = _ids(loader)
        assert len(batches[0]) <= b1 and loader.state_dict()["batches_consumed"] == n + len(batches)
        rest.append([i for b in batches for i in b])
        fresh = Loader(
            LeRobotWebDataset(tabular_converted, rank=rank, world_size=w1, **KW), b1, num_threads=k1
        )
        fresh.set_epoch(1)
        assert _ids(loader) == _ids(fresh)  # the next epoch is exactly a fresh run's on the new setup
    assert len({len(r) for r in rest}) == 1, [len(r) for r in rest]
    epoch = 150 - 150 % w0  # the tabular fixture's 150 frames, cut over the old ranks ("drop")
    before = [i for r in consumed for i in r]
    left = epoch - len(before)
    after = [i for r in rest for i in r]
    if left % w1 == 0:  # nothing dropped: exactly the epoch
        check_exactly_once([before + after], _epoch_ids(tabular_converted, w0), "resumed epoch")
    assert len(set(before + after)) == len(before + after) and set(after) <= set(
        _epoch_ids(tabular_converted, w0)
    )
    assert len(after) == left - left % w1


def test_a_second_cut_chains_and_a_dataloader_takes_over(tabular_converted: Path) -> None:
    """(2 ranks, 2 threads, batch 4) -> Loader (3, 1, 5) -> DataLoader (1 rank, 2 workers, 6): three legs,
    the epoch once; the Loader's state records the earlier leg like the dataset's does."""
    leg0, state = _ranks(tabular_converted, 2, 2, 4, 6)
    leg1, state = _ranks(tabular_converted, 3, 1, 5, 3, state)
    assert state["batches_consumed"] == 9 and state["elastic"] == [
        {"world_size": 2, "num_workers": 2, "batch_size": 4, "drop_last": False, "batches_consumed": 6}
    ]
    ds = LeRobotWebDataset(tabular_converted, **KW)
    ds.load_state_dict(state)
    leg2 = [i for b in DataLoader(ds, batch_size=6, num_workers=2) for i in b["index"].tolist()]
    seen = [i for leg in (leg0, leg1) for r in leg for i in r] + leg2
    assert len(set(seen)) == len(seen) and set(seen) <= set(range(150))
    after_leg0 = 150 - sum(len(r) for r in leg0)
    assert len(seen) == 150 - after_leg0 % 3  # the cut to 3 ranks dropped R % 3; one rank drops nothing


def test_state_without_the_thread_count_on_another_world_size_is_refused(tabular_converted: Path) -> None:
    """Bare counters (no ``num_workers``) cannot say what was consumed on another world size: refused, named."""
    ds = _tabular(tabular_converted)
    state = ds.state_dict(batches_consumed=3, batch_size=8, epoch=0)
    state["config"]["world_size"] = 2  # as saved by rank r of a 2-rank run
    loader = Loader(_tabular(tabular_converted), 8, num_threads=2)
    loader.load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match=r"saved with world_size=2 but this run has world_size=1"):
        list(loader)


def test_a_mix_loader_resumes_on_another_setup(tabular_converted: Path) -> None:
    """A mix through the Loader: (2 ranks, 2 threads, batch 3) -> (3, 1, 4); the draws of the mix epoch not
    consumed come once (a source may come round again, so the multiset of (source, index) is compared)."""

    def make(rank: int, world: int, threads: int, batch_size: int) -> Loader:
        a = LeRobotWebDataset(tabular_converted, episodes=range(6), **KW)
        b = LeRobotWebDataset(tabular_converted, episodes=range(6, 13), **KW)
        mixed = mix({"a": a, "b": b}, [0.6, 0.4], seed=3, samples_per_epoch=200, rank=rank, world_size=world)
        return Loader(mixed, batch_size, num_threads=threads)

    def keys(batches: Any) -> Counter:
        return Counter((s, int(i)) for b in batches for s, i in zip(b["source"], b["index"].tolist()))

    whole = sum((keys(make(r, 2, 2, 3)) for r in range(2)), Counter())
    consumed, state = Counter(), None
    for rank in range(2):
        loader = make(rank, 2, 2, 3)
        it = iter(loader)
        consumed += keys(itertools.islice(it, 11))
        del it
        state = loader.state_dict()
    rest = []
    for rank in range(3):
        loader = make(rank, 3, 1, 4)
        loader.load_state_dict(state)
        rest.append(keys(loader))
    assert len({sum(r.values()) for r in rest}) == 1
    got = consumed + sum(rest, Counter())
    left = 200 - sum(consumed.values())
    assert not got - whole and sum(got.values()) == 200 - left % 3


def _epoch_ids(root: Path, world: int) -> list[int]:
    """The ids a fresh epoch on ``world`` ranks covers ("drop": the last 150 % world frames left out)."""
    got = []
    for rank in range(world):
        got += [
            i for b in _ids(Loader(LeRobotWebDataset(root, rank=rank, world_size=world, **KW), 8)) for i in b
        ]
    return got


def test_dataloader_and_thread_loader_states_are_interchangeable(tabular_converted: Path) -> None:
    """A ``StatefulLoader(DataLoader(num_workers=2))`` checkpoint resumes in ``Loader(num_threads=2)`` and
    back: both follow the DataLoader's round-robin, so the counters mean the same batches."""
    full = _ids(Loader(_tabular(tabular_converted), 8, num_threads=2))
    dl = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    assert _take(dl, 6) == full[:6]
    threads = Loader(_tabular(tabular_converted), 8, num_threads=2)
    threads.load_state_dict(dl.state_dict())
    assert _take(threads, 3) == full[6:9]
    back = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    back.load_state_dict(threads.state_dict())
    assert _ids(back) == full[9:]
    assert back.state_dict()["batches_consumed"] == len(full)


def test_stateful_loader_over_epochs_and_persistent_workers(tabular_converted: Path) -> None:
    ref = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    epoch0, epoch1 = _ids(ref), _ids(ref)
    assert ref.state_dict()["epoch"] == 1
    dl = DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2, persistent_workers=True)
    wrapped = StatefulLoader(dl)
    state = {"epoch": 0, "batches_consumed": len(epoch0), "batch_size": 8}
    wrapped.load_state_dict(state)
    assert _ids(wrapped) == epoch1
    with pytest.raises(ConfigError, match="persistent workers started"):
        wrapped.load_state_dict(state)


@pytest.mark.parametrize("kind", ["threads", "dataloader"])
def test_accelerate_save_state_load_state_resumes_mid_epoch(
    tabular_converted: Path, tmp_path: Path, kind: str
) -> None:
    import accelerate  # a test dependency: CI must run this, not skip it

    def make() -> Any:
        if kind == "threads":
            return Loader(_tabular(tabular_converted), 8, num_threads=2)
        return StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))

    full = _ids(make())
    acc = accelerate.Accelerator(cpu=True)
    loader = make()
    acc.register_for_checkpointing(loader)
    assert _take(loader, 7) == full[:7]
    acc.save_state(str(tmp_path / "ckpt"))

    acc2 = accelerate.Accelerator(cpu=True)
    restored = make()
    acc2.register_for_checkpointing(restored)
    acc2.load_state(str(tmp_path / "ckpt"))
    assert _ids(restored) == full[7:]
