"""Which epoch an iteration is: advances by itself each time the dataset is iterated again.

The difficulty is DataLoader workers. Without ``persistent_workers`` every epoch forks fresh copies of the
dataset from the main process, whose own copy is never iterated, so a plain counter never moves. With
``persistent_workers`` the copies live on and the main process's ``set_epoch`` never reaches them.

``EpochClock`` is one small shared array owned by the dataset object (inherited by forked or spawned
DataLoader workers): ``[epoch, last_token, last_count, fresh]``. An iteration is identified by
``(token, count)`` — the DataLoader iterator's base seed (shared by all its workers, new for every
non-persistent iterator) and how many times this copy has been iterated (grows for persistent workers).
The first worker to see a new identity advances the epoch; its siblings read the same value. ``set_epoch``
writes the epoch and marks it fresh so the next iteration uses it as is.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing import context as mp_context
from typing import Any

_NO_TOKEN = -(2**63)
_NO_COUNT = -1  # no iteration seen yet: the first (token, count) is always a new identity


def _shared(values: list[int]) -> Any:
    """A locked shared int64 array that forked *and* spawned (or forkserver) workers can use.

    Its lock comes from the spawn context: a lock of the default (fork) context cannot be pickled into a
    ``DataLoader(multiprocessing_context="spawn")`` worker, while a spawn-context lock is also inherited
    by forked ones.
    """
    return mp.get_context("spawn").Array("q", values)


class EpochClock:
    """The epoch of the next new iteration of one dataset object, shared with its DataLoader workers."""

    def __init__(self, epoch: int = 0) -> None:
        self._arr = _shared([epoch, _NO_TOKEN, _NO_COUNT, 1])
        self._iterations = 0  # how many times *this copy* started an iteration

    def set(self, epoch: int) -> None:
        """Make the next iteration (of any copy) use ``epoch``."""
        with self._arr.get_lock():
            self._arr[0] = epoch
            self._arr[3] = 1

    def peek(self) -> int:
        return int(self._arr[0])

    def begin(self, token: int | None) -> int:
        """Called once per iteration start by each copy; returns that iteration's epoch."""
        token = _NO_TOKEN if token is None else int(token) & ((1 << 63) - 1)
        count = self._iterations
        self._iterations += 1
        with self._arr.get_lock():
            same = self._arr[1] == token and self._arr[2] == count
            if not same:
                if not self._arr[3]:
                    self._arr[0] += 1
                self._arr[1], self._arr[2], self._arr[3] = token, count, 0
            return int(self._arr[0])

    def advance_past(self, epoch: int) -> int:
        """``epoch`` turned out to be complete already (resumed at its very end): move on to ``epoch + 1``."""
        with self._arr.get_lock():
            if self._arr[0] == epoch:
                self._arr[0] = epoch + 1
            return int(self._arr[0])

    def __getstate__(self) -> dict[str, Any]:
        if mp_context.get_spawning_popen() is None:
            # Pickled outside process creation (e.g. deepcopy or a user's pickle): a shared lock cannot
            # travel, so the copy gets its own clock at the same epoch.
            return {"epoch": self.peek(), "fresh": bool(self._arr[3]), "iterations": self._iterations}
        return {"arr": self._arr, "iterations": self._iterations}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._iterations = state["iterations"]
        if "arr" in state:
            self._arr = state["arr"]
        else:
            self._arr = _shared([state["epoch"], _NO_TOKEN, _NO_COUNT, int(state["fresh"])])
