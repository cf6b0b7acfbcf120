"""Rank x worker split of the real dataset: a real ``accelerate launch``, uneven totals, windows across cuts.

Every rank must yield the same number of samples (else DDP hangs at the end of an epoch), the consumers'
frames are disjoint and cover the epoch except a remainder that is logged, and a sample's window is the
same whichever consumer yields it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loader_helpers import LogToFile, indices, loader, loader_error, same_sample

from lerowds import LeRobotWebDataset
from lerowds.errors import ConfigError
from lerowds.reader.order.pool import Emit, pool_order
from lerowds.reader.order.ranks import consumer_sample_count, rank_plan, worker_segments
from lerowds.reader.resume.batches import worker_batch_counts

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers, 2 CPUs

SCRIPT = Path(__file__).with_name("accelerate_script.py")
SUB149 = [e for e in range(13) if e != 1]  # tabular_converted without its 1-frame episode: 149 frames
DATASET_LOG = "lerowds.reader.dataset"


# ---- a real accelerate launch ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(mode: str, dataset: Path, out: Path) -> list[dict]:
    """``accelerate launch <mode> --num_processes 2 accelerate_script.py``; the per-rank reports written."""
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {
        "HF_HOME": str(out / "hf"),
        "OMP_NUM_THREADS": "1",
    }  # no user accelerate config, no oversubscription
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        mode,
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={_free_port()}",
        str(SCRIPT),
        str(dataset),
        str(out),
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return sorted((json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"])


@pytest.mark.slow
def test_accelerate_launch_two_ranks_split_the_seed_scenario(seed8_converted, tmp_path) -> None:
    """8 episodes x 20 frames in several shards, two ranks under ``accelerate launch``: disjoint, all 160.

    ``--cpu`` is the issue's command, but accelerate 1.x starts a single process for ``--cpu`` unless it
    is given an MPI hostfile (a world of one, which reads everything: the single-process tests); the same
    launcher's ``--multi_gpu`` mode (torch.distributed.run) starts two processes on a CPU-only machine, and
    the script's ``Accelerator(cpu=True)`` joins them over gloo. Skipped only when it does not start two.
    """
    assert len(sorted((seed8_converted / "shards").iterdir())) >= 3  # the scenario needs several shards
    reports = _launch("--multi_gpu", seed8_converted, tmp_path / "multi")
    if len(reports) < 2 or reports[0]["num_processes"] < 2:
        pytest.skip(f"accelerate launch started {len(reports)} process(es), not 2")

    assert [r["rank"] for r in reports] == [0, 1]
    assert all(r["num_processes"] == 2 and r["dist_initialized"] for r in reports)
    for key in ("plain", "shuffled", "loader"):
        a, b = (r[key] for r in reports)
        assert len(a) == len(b) == 80, key  # equal counts: no rank waits for the other at the epoch's end
        assert not set(a) & set(b) and sorted(a + b) == list(range(160)), key
    assert all(r["len_plain"] == r["len_shuffled"] == 80 for r in reports)
    assert reports[0]["plain"] == list(range(80)) and reports[1]["plain"] == list(range(80, 160))
    pinned = [  # the first 16 shuffled samples of each rank (ORDER_VERSION 2)
        [74, 78, 143, 121, 85, 134, 83, 69, 154, 132, 96, 147, 90, 142, 66, 93],
        [115, 47, 20, 22, 33, 112, 54, 41, 21, 52, 46, 18, 106, 3, 53, 49],
    ]
    assert [r["shuffled"][:16] for r in reports] == pinned
    assert reports[0]["loader_batches"] == reports[1]["loader_batches"] == 20
    for r in reports:  # rank from torch.distributed == explicit rank/world_size in one process
        ds = LeRobotWebDataset(
            seed8_converted, shuffle=True, seed=3, episode_pool_size=8, rank=r["rank"], world_size=2
        )
        assert indices(ds) == r["shuffled"]

    # The accelerate trap is detected on the Accelerator and on both kinds of prepared loaders ...
    for r in reports:
        assert "dispatch_batches=None" in r["trap_accelerator"]
        assert r["warned_prepared"] and "rank 0 only" in r["trap_prepared"]
        assert r["warned_resharded"] and "IterableDatasetShard(num_processes=2)" in r["trap_resharded"]
    # ... and is real: the dispatched batches hold rank 0's frames only, half of the epoch.
    dispatched = reports[0]["prepared"] + reports[1]["prepared"]
    assert set(dispatched) <= set(range(80)) and len(set(dispatched)) < 160


# ---- uneven totals, ranks simulated ---------------------------------------------------------------------


def _run_ranks(
    path: Path, world: int, *, num_workers: int, log: Path | None = None, **kw
) -> tuple[list[list[int]], list[int], list[int]]:
    """Every rank's indices, batch count (batch_size=4) and ``len(ds)``, each rank a separate dataset."""
    per_rank, batches, lengths = [], [], []
    for rank in range(world):
        ds = LeRobotWebDataset(path, rank=rank, world_size=world, **kw)
        init = None if log is None else LogToFile(log)
        got = list(loader(ds, batch_size=4, num_workers=num_workers, worker_init_fn=init))
        per_rank.append(indices(got))
        batches.append(len(got))
        lengths.append(len(ds))
    return per_rank, batches, lengths


def _dataset_frames(path: Path, episodes: list[int] | None) -> list[int]:
    ds = LeRobotWebDataset(path, shuffle=False, episodes=episodes)
    return sorted(indices([s for s in ds]))


# The remainder is dropped where ranks split the frames, before workers: the ordered case (which frames are
# dropped) runs in-process; DataLoader workers (who logs the drop) with the shuffled one.
@pytest.mark.parametrize(
    ("shuffle", "num_workers"),
    [(False, 0), (True, 0), (True, 2)],
    ids=["ordered-0", "shuffled-0", "shuffled-2"],
)
@pytest.mark.parametrize(("world", "episodes"), [(4, None), (7, None), (3, SUB149)], ids=["w4", "w7", "w3"])
def test_uneven_total_equal_counts_disjoint_cover_all_but_the_logged_remainder(
    tabular_converted, tmp_path, caplog, world, episodes, shuffle, num_workers
) -> None:
    frames = _dataset_frames(tabular_converted, episodes)
    total = len(frames)
    assert total % world, "the case needs a world size that does not divide the total"
    log = tmp_path / "workers.log"
    kw = {"shuffle": shuffle, "seed": 4, "episode_pool_size": 3, "episodes": episodes}
    with caplog.at_level(logging.INFO, logger=DATASET_LOG):
        per_rank, batches, lengths = _run_ranks(
            tabular_converted, world, num_workers=num_workers, log=log if num_workers else None, **kw
        )
    counts = [len(r) for r in per_rank]
    assert counts == lengths == [total // world] * world
    assert len(set(batches)) == 1  # the same number of batches on every rank: no DDP hang
    seen = [i for r in per_rank for i in r]
    assert len(set(seen)) == len(seen)  # disjoint (and no frame twice within a rank)
    missing = sorted(set(frames) - set(seen))
    assert set(seen) <= set(frames) and len(missing) == total % world
    if not shuffle:  # the dropped frames are the end of the sequence: the last episode's last frames
        assert missing == frames[total - total % world :]
    message = f"epoch 0: dropped {total % world} of {total} frames so that each of {world} ranks yields {total // world} samples"
    if num_workers == 0:
        assert [r.getMessage() for r in caplog.records if r.name == DATASET_LOG] == [message] * world
    else:  # logged once per rank, by its worker 0, in the worker process
        assert log.read_text().splitlines() == [f"worker0 INFO {message}"] * world


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("world", [4, 7])
def test_remainder_repeat_covers_all_and_repeats_at_most_world_minus_one(
    tabular_converted, tmp_path, caplog, world, num_workers
) -> None:
    log = tmp_path / "workers.log"
    kw = {"shuffle": True, "seed": 9, "episode_pool_size": 2, "remainder": "repeat"}
    with caplog.at_level(logging.INFO, logger=DATASET_LOG):
        per_rank, batches, lengths = _run_ranks(
            tabular_converted, world, num_workers=num_workers, log=log if num_workers else None, **kw
        )
    per = -(-150 // world)
    assert [len(r) for r in per_rank] == lengths == [per] * world and len(set(batches)) == 1
    assert all(len(set(r)) == len(r) for r in per_rank)  # a rank never sees a frame twice
    seen = Counter(i for r in per_rank for i in r)
    assert sorted(seen) == list(range(150))
    repeated = sum(c - 1 for c in seen.values())
    assert repeated == world * per - 150 <= world - 1 and max(seen.values()) <= 2
    message = f"epoch 0: repeated {repeated} of 150 frames so that each of {world} ranks yields {per} samples"
    lines = (
        [r.getMessage() for r in caplog.records if r.name == DATASET_LOG]
        if num_workers == 0
        else [line.removeprefix("worker0 INFO ") for line in log.read_text().splitlines()]
    )
    assert lines == [message] * world


def test_rank_and_world_from_the_environment_equal_explicit_arguments(tabular_converted, monkeypatch) -> None:
    kw = {"shuffle": True, "seed": 2, "episode_pool_size": 2, "episodes": SUB149}
    explicit = [
        indices(
            loader(
                LeRobotWebDataset(tabular_converted, rank=r, world_size=3, **kw), batch_size=4, num_workers=2
            )
        )
        for r in range(3)
    ]
    from_env = []
    for r in range(3):
        monkeypatch.setenv("RANK", str(r))
        monkeypatch.setenv("WORLD_SIZE", "3")
        monkeypatch.setenv("LOCAL_RANK", str(r))
        ds = LeRobotWebDataset(tabular_converted, **kw)
        assert len(ds) == 149 // 3
        from_env.append(indices(loader(ds, batch_size=4, num_workers=2)))  # workers inherit the environment
    assert from_env == explicit
    seen = {i for r in from_env for i in r}
    assert len(seen) == 147 and 7 not in seen  # 149 // 3 each, 2 dropped; episode 1 (frame 7) not selected


def test_a_worker_owning_nothing_warns(tabular_converted, tmp_path) -> None:
    """75 ranks own 2 frames each: the third DataLoader worker of a rank gets none and says so."""
    log = tmp_path / "workers.log"
    ds = LeRobotWebDataset(tabular_converted, rank=5, world_size=75, shuffle=False)
    got = indices(loader(ds, batch_size=4, num_workers=3, worker_init_fn=LogToFile(log)))
    assert got == [10, 11] and len(ds) == 2
    warnings = [line for line in log.read_text().splitlines() if "WARNING" in line]
    assert warnings == [
        "worker2 WARNING rank 5 worker 2 of 3 owns no frames this epoch (2 frames per rank): use fewer workers"
    ]


def test_more_ranks_than_frames_raises(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, rank=0, world_size=151)
    match = "world_size=151 ranks but only 150 frames"
    with pytest.raises(ConfigError, match=match):
        len(ds)
    with pytest.raises(ConfigError, match=match):
        iter(ds)
    err = loader_error(loader(ds, batch_size=4, num_workers=2))  # also from inside DataLoader workers
    assert isinstance(err, ConfigError) and match in str(err)
    small = LeRobotWebDataset(tabular_converted, rank=3, world_size=4, episodes=[1, 4])  # 1 + 2 frames
    with pytest.raises(ConfigError, match="world_size=4 ranks but only 3 frames"):
        list(small)


# ---- windows stay exact when an episode is split between consumers -----------------------------------


def _unbatch(batches: list[dict]) -> dict[int, dict]:
    """index -> sample (numpy values, task string) from numpy-collated batches."""
    out = {}
    for b in batches:
        for j, i in enumerate(np.asarray(b["index"]).tolist()):
            out[i] = {k: v[j] for k, v in b.items()}
    return out


def _consumers_of_episodes(samples_by_consumer: dict[tuple[int, int], dict[int, dict]]) -> dict[int, set]:
    owners: dict[int, set] = defaultdict(set)
    for consumer, samples in samples_by_consumer.items():
        for s in samples.values():
            owners[int(s["episode_index"])].add(consumer)
    return owners


@pytest.mark.parametrize(("world", "num_workers"), [(4, 0), (1, 3), (2, 2)])
def test_windows_of_split_episodes_equal_a_single_consumer_run(tabular_converted, world, num_workers) -> None:
    fps = 15
    dt = {"action": [-3 / fps, -1 / fps, 0.0, 1 / fps, 4 / fps], "observation.state": [-2 / fps, 0.0]}
    kw = {"delta_timestamps": dt, "shuffle": True, "seed": 6, "episode_pool_size": 2}
    reference = _unbatch(
        list(loader(LeRobotWebDataset(tabular_converted, **kw), batch_size=5, num_workers=0))
    )
    assert sorted(reference) == list(range(150))
    by_consumer: dict[tuple[int, int], dict[int, dict]] = {}
    for rank in range(world):
        ds = LeRobotWebDataset(tabular_converted, rank=rank, world_size=world, **kw)
        # batch_size=1: a batch is one worker's sample, so the worker is the batch number mod num_workers
        batches = list(loader(ds, batch_size=1, num_workers=num_workers))
        workers = max(num_workers, 1)
        for n, b in enumerate(batches):
            by_consumer.setdefault((rank, n % workers), {}).update(_unbatch([b]))
    owners = _consumers_of_episodes(by_consumer)
    assert any(len(c) > 1 for c in owners.values()), "no episode is split between consumers: weak case"
    seen = [i for s in by_consumer.values() for i in s]
    assert len(seen) == len(set(seen)) == 150 - 150 % world
    for samples in by_consumer.values():
        for i, sample in samples.items():
            assert same_sample(sample, reference[i]), f"sample {i} differs from the single-consumer run"


def test_video_windows_of_split_episodes_equal_a_single_consumer_run(video_small_converted) -> None:
    cam = "observation.images.front"
    dt = {cam: [-2 / 15, -1 / 15, 0.0], "action": [0.0, 1 / 15]}
    kw = {"delta_timestamps": dt, "shuffle": True, "seed": 1, "episode_pool_size": 2, "return_uint8": True}
    reference = {int(s["index"]): s for s in LeRobotWebDataset(video_small_converted, **kw)}
    owners: dict[int, set[int]] = defaultdict(set)
    seen = []
    for rank in range(3):  # 76 frames over 3 ranks: 25 each, one dropped
        for s in LeRobotWebDataset(video_small_converted, rank=rank, world_size=3, **kw):
            i = int(s["index"])
            seen.append(i)
            owners[int(s["episode_index"])].add(rank)
            assert same_sample(s, reference[i]), f"sample {i} differs from the single-consumer run"
    assert len(seen) == len(set(seen)) == 75
    assert sum(len(r) > 1 for r in owners.values()) == 2  # two episodes straddle a rank boundary


# ---- the whole split, composed: ranks x workers x pool order (pure functions) -------------------------


@settings(max_examples=100, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=10),
    world=st.integers(1, 5),
    workers=st.integers(1, 4),
    pool=st.integers(1, 4),
    batch_size=st.integers(1, 4),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 3),
    shuffle=st.booleans(),
    remainder=st.sampled_from(["drop", "repeat"]),
)
def test_consumers_emit_disjoint_covering_equal_streams(
    lengths, world, workers, pool, batch_size, seed, epoch, shuffle, remainder
) -> None:
    """What every (rank, worker) emits, composed as the dataset composes it: disjoint across ranks, covering
    all frames but the remainder, and the same sample and batch counts on every rank (no DDP hang)."""
    total = sum(lengths)
    if world > total:
        return  # raises (tested above)
    per_rank_frames, per_rank_batches = [], []
    for rank in range(world):
        plan = rank_plan(
            lengths, seed=seed, epoch=epoch, shuffle=shuffle, world_size=world, rank=rank, remainder=remainder
        )
        streams = []
        for worker in range(workers):
            segments = worker_segments(plan.segments, num_workers=workers, worker=worker)
            events = pool_order(
                segments, pool_size=pool, seed=seed, epoch=epoch, rank=rank, worker=worker, shuffle=shuffle
            )
            streams.append([(e.episode, e.frame) for e in events if isinstance(e, Emit)])
        counts = [len(s) for s in streams]
        assert counts == [
            consumer_sample_count(total, world_size=world, num_workers=workers, worker=w, remainder=remainder)
            for w in range(workers)
        ]
        per_rank_frames.append([f for s in streams for f in s])
        per_rank_batches.append(worker_batch_counts(counts, batch_size=batch_size))
    assert len({len(f) for f in per_rank_frames}) == 1 and len({tuple(b) for b in per_rank_batches}) == 1
    assert all(len(set(f)) == len(f) for f in per_rank_frames)  # no frame twice within a rank
    seen = Counter(f for frames in per_rank_frames for f in frames)
    everything = {(e, f) for e, n in enumerate(lengths) for f in range(n)}
    excess = world * len(per_rank_frames[0]) - total
    if remainder == "drop":
        assert max(seen.values(), default=1) == 1 and len(everything - set(seen)) == -excess < world
    else:
        assert set(seen) == everything and sum(seen.values()) - total == excess < world
