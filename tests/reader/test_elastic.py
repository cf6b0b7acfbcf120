"""Elastic resume through real DataLoaders: save on (W, K, B), resume on (W', K', B'), and a real launch.

The old run's loaders are broken off after ``n`` batches while their workers had prefetched more: those
prefetched samples are not consumed and must come in the resumed run. Over all ranks, what the old run
consumed plus what the resumed run yields is the epoch, each sample once, except the remainder rule's
drop (counted); every rank yields the same number of samples; the next epoch is a fresh run's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
from loader_helpers import indices, loader, same_sample

from lerowds import LeRobotWebDataset
from lerowds.errors import ResumeMismatchError
from lerowds.reader.mix import mix

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers, 2 CPUs

SCRIPT = Path(__file__).with_name("elastic_script.py")
KW = {"shuffle": True, "seed": 7, "episode_pool_size": 2}


def _unbatch(batches) -> list[dict]:
    return [{k: v[j] for k, v in b.items()} for b in batches for j in range(len(b["index"]))]


def _run(make, world: int, num_workers: int, batch_size: int, batches: int | None, state=None):
    """Every rank's first ``batches`` batches (all when None) of a fresh loader; the state rank 0 saves."""
    taken = []
    for rank in range(world):
        ds = make(rank, world)
        if state is not None:
            ds.load_state_dict(state)
        got = list(islice(loader(ds, batch_size=batch_size, num_workers=num_workers), batches))
        taken.append(_unbatch(got))
    return taken, ds


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ((2, 2, 4, 5), (3, 3, 5)),  # growth of ranks and workers, another batch size
        ((3, 0, 5, 4), (1, 2, 7)),  # shrink to one rank, from num_workers=0
        ((4, 3, 3, 2), (2, 0, 4)),  # shrink, to num_workers=0
        ((2, 2, 4, 5), (2, 2, 3)),  # only the batch size changes: each worker continues its stream
    ],
    ids=str,
)
def test_resume_on_another_topology_covers_the_rest_of_the_epoch_once(tabular_converted, old, new) -> None:
    (w0, k0, b0, n), (w1, k1, b1) = old, new

    def make(rank: int, world: int) -> LeRobotWebDataset:
        return LeRobotWebDataset(tabular_converted, rank=rank, world_size=world, **KW)

    one = loader(LeRobotWebDataset(tabular_converted, **KW), batch_size=1, num_workers=0)
    whole = {int(s["index"]): s for s in _unbatch(list(one))}  # the samples' values
    full, _ = _run(make, w0, k0, b0, None)
    epoch_frames = Counter(int(s["index"]) for r in full for s in r)
    consumed, saver = _run(make, w0, k0, b0, n)
    state = saver.state_dict(batches_consumed=n, batch_size=b0, epoch=0, num_workers=k0)
    resumed = []
    for rank in range(w1):
        ds = make(rank, w1)
        ds.load_state_dict(state)
        dl = loader(ds, batch_size=b1, num_workers=k1)
        resumed.append(_unbatch(list(dl)))
        fresh = make(rank, w1)
        fresh.set_epoch(1)  # the next epoch is exactly a fresh run's on the new topology
        assert indices(list(dl)) == indices(list(loader(fresh, batch_size=b1, num_workers=k1)))
    counts = {len(r) for r in resumed}
    assert len(counts) == 1, f"ranks yield different counts: {[len(r) for r in resumed]}"
    for s in (s for r in resumed for s in r):
        assert same_sample(s, whole[int(s["index"])]), int(s["index"])
    before = Counter(int(s["index"]) for r in consumed for s in r)
    after = Counter(int(s["index"]) for r in resumed for s in r)
    assert max((before + after).values()) == 1  # nothing twice
    left = sum(epoch_frames.values()) - sum(before.values())
    assert sum(after.values()) == w1 * counts.pop() == left - left % w1  # "drop": the last R % W' only
    assert set(before) | set(after) <= set(epoch_frames)


def test_a_second_cut_chains_and_the_state_records_the_legs(tabular_converted) -> None:
    """(2 ranks, 2 workers, batch 4) -> (3, 1, 5) -> (1, 3, 6): three legs cover the epoch once."""

    def make(rank: int, world: int) -> LeRobotWebDataset:
        return LeRobotWebDataset(tabular_converted, rank=rank, world_size=world, **KW)

    full, _ = _run(make, 2, 2, 4, None)
    epoch_frames = Counter(int(s["index"]) for r in full for s in r)
    leg0, saver = _run(make, 2, 2, 4, 6)
    state = saver.state_dict(batches_consumed=6, batch_size=4, epoch=0, num_workers=2)
    leg1, saver = _run(make, 3, 1, 5, 3, state)
    state = saver.state_dict(batches_consumed=9, batch_size=5, epoch=0, num_workers=1)
    assert state["elastic"] == [
        {"world_size": 2, "num_workers": 2, "batch_size": 4, "drop_last": False, "batches_consumed": 6}
    ]
    leg2, _ = _run(make, 1, 3, 6, None, state)
    seen = Counter(int(s["index"]) for leg in (leg0, leg1, leg2) for r in leg for s in r)
    assert max(seen.values()) == 1 and set(seen) <= set(epoch_frames)
    consumed_before_leg2 = sum(len(r) for leg in (leg0, leg1) for r in leg)
    left_after_leg1 = 150 - consumed_before_leg2
    dropped_at_leg1 = (150 - sum(len(r) for r in leg0)) % 3  # the only cut that drops (leg 2 has 1 rank)
    assert sum(seen.values()) == 150 - dropped_at_leg1 and left_after_leg1 == len(leg2[0])


def test_resuming_without_the_saved_worker_count_on_another_world_size_is_refused(tabular_converted) -> None:
    state = LeRobotWebDataset(tabular_converted, rank=0, world_size=2).state_dict(
        batches_consumed=3, batch_size=4, epoch=0
    )  # num_workers not given: the consumed samples cannot be known on another world size
    ds = LeRobotWebDataset(tabular_converted, rank=0, world_size=3)
    ds.load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match="saved with world_size=2 but this run has world_size=3"):
        next(iter(ds))


def test_a_mix_resumes_on_another_topology(tabular_converted) -> None:
    """Mix samples are drawn (a source may come round again): the multiset of the mix epoch is covered."""

    def make(rank: int, world: int):
        a = LeRobotWebDataset(tabular_converted, episodes=range(6), **KW)
        b = LeRobotWebDataset(tabular_converted, episodes=range(6, 13), **KW)
        return mix(
            {"a": a, "b": b}, {"a": 0.6, "b": 0.4}, seed=3, samples_per_epoch=200, rank=rank, world_size=world
        )

    def keys(runs) -> Counter:
        return Counter((s["source"], int(s["index"])) for r in runs for s in r)

    full, _ = _run(make, 2, 2, 3, None)
    consumed, saver = _run(make, 2, 2, 3, 11)
    state = saver.state_dict(batches_consumed=11, batch_size=3, epoch=0, num_workers=2)
    resumed, _ = _run(make, 3, 1, 4, None, state)
    assert len({len(r) for r in resumed}) == 1
    got, epoch = keys(consumed) + keys(resumed), keys(full)
    left = 200 - sum(len(r) for r in consumed)
    assert not got - epoch and sum(got.values()) == 200 - left % 3


# ---- a real launch: two processes save, three resume -------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={nproc}",
        "--nnodes=1",
        f"--master_port={_free_port()}",
        str(SCRIPT),
        *args,
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.mark.slow
def test_two_ranks_resumed_as_three_processes(tabular_converted, tmp_path) -> None:
    """2 ranks: 5 batches of 4 from 2 workers each, save; torchrun, 3 processes (gloo, rank and world size
    from the process group) resume (batch 5, 1 worker) to the end of the epoch and through the next one.
    The 2 saving ranks are explicit here (one launch fewer): the rank a process group gives equals the
    explicit one (test_distributed.py), and the topology rows above save and resume on explicit ranks."""
    saved = []
    for rank in range(2):
        ds = LeRobotWebDataset(tabular_converted, rank=rank, world_size=2, **KW)
        saved.append(indices(list(islice(loader(ds, batch_size=4, num_workers=2), 5))))
        if rank == 0:
            state = ds.state_dict(batches_consumed=5, batch_size=4, epoch=0, num_workers=2)
            (tmp_path / "state.json").write_text(json.dumps(state))
    _torchrun(3, "resume", str(tabular_converted), str(tmp_path))
    resumed = [json.loads((tmp_path / f"resume{r}.json").read_text()) for r in range(3)]
    assert all(r["world_size"] == 3 for r in resumed)
    assert all(len(s) == 20 for s in saved)  # 5 batches of 4 per rank
    before = [i for s in saved for i in s]
    after = [i for r in resumed for i in r["epoch0"]]
    assert len({len(r["epoch0"]) for r in resumed}) == 1  # equal per rank: no rank waits at the epoch's end
    assert len(set(before + after)) == len(before + after) == 150 - (150 - 40) % 3
    for r in resumed:  # the next epoch is what a fresh 3-rank run yields
        fresh = LeRobotWebDataset(tabular_converted, rank=r["rank"], world_size=3, **KW)
        fresh.set_epoch(1)
        assert r["epoch1"] == indices(list(loader(fresh, batch_size=5, num_workers=1)))


def test_plain_counters_then_another_batch_size_record_a_leg(tabular_converted) -> None:
    """A state of bare counters resumes on the same setup; saved again after a batch size change, it records
    the earlier batches as a leg of that setup, so a further (elastic) resume still covers the epoch once."""

    def make(rank: int, world: int) -> LeRobotWebDataset:
        return LeRobotWebDataset(tabular_converted, rank=rank, world_size=world, **KW)

    leg0, _ = _run(make, 1, 2, 4, 5)
    leg1, saver = _run(make, 1, 2, 6, 3, {"epoch": 0, "batches_consumed": 5, "batch_size": 4})
    state = saver.state_dict(batches_consumed=8, batch_size=6, epoch=0, num_workers=2)
    assert state["elastic"] == [
        {"world_size": 1, "num_workers": 2, "batch_size": 4, "drop_last": False, "batches_consumed": 5}
    ]
    leg2, _ = _run(make, 2, 0, 5, None, state)
    seen = Counter(int(s["index"]) for leg in (leg0, leg1, leg2) for r in leg for s in r)
    assert max(seen.values()) == 1 and sum(seen.values()) == 150 - (150 - 20 - 18) % 2
