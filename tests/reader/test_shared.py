"""One mechanism for numbers shared across processes (``reader.shared``): what DataLoader workers write, started
with fork or with spawn, the main process reads; any other copy is private."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lerowds.reader.extras.stats import StatsBoard
from lerowds.reader.shared import EpochClock, ProcessSlots, SharedArray

WORKERS = 2
PER_WORKER = 3


class Counting(IterableDataset):
    """Each worker counts on the three users of ``SharedArray``: stats, remote-style counters, the epoch."""

    def __init__(self) -> None:
        self.board = StatsBoard()
        self.counters = ProcessSlots(("requests", "bytes"), slots=8)
        self.clock = EpochClock(0)
        self.table = SharedArray(("seen",), slots=WORKERS)

    def __iter__(self):
        info = get_worker_info()
        worker = 0 if info is None else info.id
        epoch = self.clock.begin(None if info is None else info.seed - info.id)  # as the dataset does
        slot = self.board.slot(worker)
        for i in range(PER_WORKER):
            slot.sample_done()
            self.counters.add("requests")
            self.counters.add("bytes", 10 * (worker + 1))
            self.table.add("seen", 1, worker)
            yield torch.tensor([worker, i, epoch, os.getpid()])
        self.counters.release()


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_counts_reach_the_main_process(context: str) -> None:
    ds = Counting()
    dl = DataLoader(ds, batch_size=None, num_workers=WORKERS, multiprocessing_context=context)
    for epoch in range(2):
        rows = [r.tolist() for r in dl]
        assert sorted((w, i) for w, i, _, _ in rows) == [
            (w, i) for w in range(WORKERS) for i in range(PER_WORKER)
        ]
        assert {e for _, _, e, _ in rows} == {epoch}  # both workers saw one clock advance per iteration
        assert os.getpid() not in {pid for *_, pid in rows}
    n = 2 * WORKERS * PER_WORKER  # two epochs
    assert ds.board.snapshot()["samples"] == n
    assert ds.counters.totals() == {"requests": n, "bytes": 2 * PER_WORKER * (10 + 20)}
    assert [row["seen"] for row in ds.table.rows()] == [2 * PER_WORKER] * WORKERS
    assert ds.clock.peek() == 1


def test_other_copies_are_private() -> None:
    ds = Counting()
    ds.counters.add("requests", 5)
    ds.board.slot(3).add("fetch_bytes", 7)
    ds.clock.set(4)
    for other in (copy.deepcopy(ds), pickle.loads(pickle.dumps(ds))):
        assert other.counters.totals()["requests"] == 5 and other.board.snapshot()["fetch_bytes"] == 0
        assert other.board.slot(3).get("fetch_bytes") == 7 and other.clock.peek() == 4  # values copied
        other.counters.add("requests", 100)
        other.board.slot(3).add("fetch_bytes", 100)
        other.clock.set(9)
    assert ds.counters.totals()["requests"] == 5
    assert ds.board.slot(3).get("fetch_bytes") == 7 and ds.clock.peek() == 4


def _count_and_die(counters: ProcessSlots, n: int) -> None:
    counters.add("requests", n)
    os._exit(0)  # no release: the slot stays taken by a dead process


def test_process_slots_are_reused_and_keep_every_count() -> None:
    counters = ProcessSlots(("requests",), slots=2)  # slot 0 (shared) and one slot to own
    ctx = multiprocessing.get_context("fork")
    for n in (1, 10, 100):  # each child finds the previous child's slot taken by a dead process and folds it
        p = ctx.Process(target=_count_and_die, args=(counters, n))
        p.start()
        p.join(30)
        assert p.exitcode == 0
    assert counters.totals() == {"requests": 111}
    counters.add("requests", 1000)  # the main process takes the slot now (its last owner is dead)
    assert counters.mine() == {"requests": 1000}
    counters.release()
    assert counters.mine() == {"requests": 0} and counters.totals() == {"requests": 1111}


def test_shared_array_rejects_bad_fields_and_slots() -> None:
    arr = SharedArray(("a", "b"), slots=2)
    with pytest.raises(KeyError, match="no field 'c'"):
        arr.add("c", 1)
    with pytest.raises(IndexError, match=r"slot must be in \[0, 2\), got 2"):
        arr.get("a", 2)
    with pytest.raises(ValueError, match="fields must be distinct"):
        SharedArray(("a", "a"))
    with pytest.raises(ValueError, match="typecode"):
        SharedArray(("a",), typecode="f")
