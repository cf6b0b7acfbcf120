"""Which epoch an iteration is: advances by itself each time the dataset is iterated again.

The difficulty is DataLoader workers. Without ``persistent_workers`` every epoch forks fresh copies of the
dataset from the main process, whose own copy is never iterated, so a plain counter never moves. With
``persistent_workers`` the copies live on and the main process's ``set_epoch`` never reaches them.

``EpochClock`` is one small shared array (``shared.SharedArray``) owned by the dataset object (inherited by forked or spawned
DataLoader workers): ``[epoch, last_token, last_count, fresh]``. An iteration is identified by
``(token, count)`` — the DataLoader iterator's base seed (shared by all its workers, new for every
non-persistent iterator) and how many times this copy has been iterated (grows for persistent workers).
The first worker to see a new identity advances the epoch; its siblings read the same value. ``set_epoch``
writes the epoch and marks it fresh so the next iteration uses it as is.
"""

from __future__ import annotations

from typing import Any

from lerowds.reader.shared import SharedArray, pickled_for_a_new_process

_NO_TOKEN = -(2**63)
_NO_COUNT = -1  # no iteration seen yet: the first (token, count) is always a new identity
_FIELDS = ("epoch", "token", "count", "fresh")


class EpochClock:
    """The epoch of the next new iteration of one dataset object, shared with its DataLoader workers."""

    def __init__(self, epoch: int = 0) -> None:
        self._arr = SharedArray(_FIELDS, values=[epoch, _NO_TOKEN, _NO_COUNT, 1])
        self._iterations = 0  # how many times *this copy* started an iteration

    def set(self, epoch: int) -> None:
        """Make the next iteration (of any copy) use ``epoch``."""
        with self._arr.lock:
            self._arr.set("epoch", epoch)
            self._arr.set("fresh", 1)

    def peek(self) -> int:
        return int(self._arr.get("epoch"))

    def begin(self, token: int | None) -> int:
        """Called once per iteration start by each copy; returns that iteration's epoch."""
        token = _NO_TOKEN if token is None else int(token) & ((1 << 63) - 1)
        count = self._iterations
        self._iterations += 1
        arr = self._arr
        with arr.lock:
            if arr.get("token") != token or arr.get("count") != count:
                if not arr.get("fresh"):
                    arr.add("epoch", 1)
                arr.set("token", token)
                arr.set("count", count)
                arr.set("fresh", 0)
            return int(arr.get("epoch"))

    def advance_past(self, epoch: int) -> int:
        """``epoch`` turned out to be complete already (resumed at its very end): move on to ``epoch + 1``."""
        with self._arr.lock:
            if self._arr.get("epoch") == epoch:
                self._arr.set("epoch", epoch + 1)
            return int(self._arr.get("epoch"))

    def __getstate__(self) -> dict[str, Any]:
        # Shared with a new process; any other copy (deepcopy, a user's pickle) gets its own clock at the
        # same epoch, which has seen no iteration yet.
        return {"arr": self._arr, "iterations": self._iterations, "private": not pickled_for_a_new_process()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._iterations = state["iterations"]
        self._arr = state["arr"]
        if state["private"]:
            self._arr.set("token", _NO_TOKEN)
            self._arr.set("count", _NO_COUNT)
