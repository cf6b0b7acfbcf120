"""Numbers shared by a dataset object and its copies in DataLoader workers: one mechanism for all of them.

``SharedArray`` is a table of named fields × slots in shared memory (``multiprocessing.Array`` of the spawn
context, with its lock). It travels with the object that holds it: inherited by forked workers, pickled by
reference into spawned (or forkserver) ones — a lock of the default fork context cannot be pickled into a
spawned worker, while a spawn-context one is also inherited by forked ones. Pickled any other way (deepcopy,
a user's ``pickle.dumps``) it becomes a private copy with the same values, since shared memory cannot travel
through bytes.

Writers either own a slot (one writer per slot: no lock, a plain store) or hold ``lock`` around a
read-modify-write. ``ProcessSlots`` hands each process a slot of its own for counters written from many
processes (the remote store's), and folds the slots of finished processes into slot 0.

Used by ``EpochClock`` (below), ``extras.stats.StatsBoard`` and the remote store's counters (``io.remote``).
No torch here: ``io/`` imports it.

``EpochClock``: which epoch an iteration is; it advances by itself each time the dataset is iterated
again. The difficulty is DataLoader workers. Without ``persistent_workers`` every epoch forks fresh copies
of the dataset from the main process, whose own copy is never iterated, so a plain counter never moves.
With ``persistent_workers`` the copies live on and the main process's ``set_epoch`` never reaches them. So
the clock is one small ``SharedArray`` owned by the dataset object (inherited by forked or spawned
DataLoader workers): ``[epoch, last_token, last_count, fresh]``. An iteration is identified by
``(token, count)`` — the DataLoader iterator's base seed (shared by all its workers, new for every
non-persistent iterator) and how many times this copy has been iterated (grows for persistent workers).
The first worker to see a new identity advances the epoch; its siblings read the same value. ``set_epoch``
writes the epoch and marks it fresh so the next iteration uses it as is.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Iterator, Sequence
from multiprocessing import context as mp_context
from typing import Any

from lerowds.checks import check_int

__all__ = ["EpochClock", "ProcessSlots", "SharedArray", "pickled_for_a_new_process"]

_CTX = mp.get_context("spawn")
_TYPECODES = ("q", "d")  # int64, float64


def pickled_for_a_new_process() -> bool:
    """True while ``multiprocessing`` pickles a process's arguments (spawn, forkserver): shared memory may
    travel by reference then, and only then."""
    return mp_context.get_spawning_popen() is not None


class SharedArray:
    """``slots`` rows of named ``fields`` (int64 with typecode "q", float64 with "d"), zero unless ``values``."""

    def __init__(
        self,
        fields: Sequence[str],
        *,
        slots: int = 1,
        typecode: str = "q",
        values: Sequence[float] | None = None,
    ) -> None:
        if typecode not in _TYPECODES:
            raise ValueError(f"typecode must be one of {_TYPECODES}, got {typecode!r}")
        check_int("slots", slots, 1)
        if len(set(fields)) != len(fields) or not fields:
            raise ValueError(f"fields must be distinct names, at least one, got {tuple(fields)}")
        self.fields = tuple(fields)
        self.slots, self.typecode = slots, typecode
        self._index = {name: i for i, name in enumerate(self.fields)}
        size = slots * len(self.fields)
        if values is not None and len(values) != size:
            raise ValueError(
                f"values must hold {size} numbers ({slots} slots x {len(fields)}), got {len(values)}"
            )
        self._arr = _CTX.Array(typecode, size if values is None else list(values))
        self.raw = self._arr.get_obj()  # unlocked ctypes view for hot paths (see ``index``)

    @property
    def lock(self) -> Any:
        """The cross-process lock (reentrant) to hold around read-modify-writes several processes do."""
        return self._arr.get_lock()

    def index(self, field: str, slot: int = 0) -> int:
        """Position of ``field`` of ``slot`` in ``raw``."""
        try:
            i = self._index[field]
        except KeyError:
            raise KeyError(f"no field {field!r} (have {self.fields})") from None
        if not 0 <= slot < self.slots:
            raise IndexError(f"slot must be in [0, {self.slots}), got {slot}")
        return slot * len(self.fields) + i

    def get(self, field: str, slot: int = 0) -> Any:
        return self.raw[self.index(field, slot)]

    def set(self, field: str, value: float, slot: int = 0) -> None:
        self.raw[self.index(field, slot)] = value

    def add(self, field: str, value: float, slot: int = 0) -> None:
        """Not atomic: the slot's only writer, or a holder of ``lock``, may add."""
        self.raw[self.index(field, slot)] += value

    def row(self, slot: int) -> dict[str, Any]:
        n = len(self.fields)
        return dict(zip(self.fields, self.raw[slot * n : (slot + 1) * n]))

    def rows(self) -> Iterator[dict[str, Any]]:
        return (self.row(s) for s in range(self.slots))

    def totals(self) -> dict[str, Any]:
        """Each field summed over the slots."""
        out = dict.fromkeys(self.fields, 0)
        for row in self.rows():
            for name, value in row.items():
                out[name] += value
        return out

    def reset(self) -> None:
        self.raw[:] = [0] * len(self.raw)

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = {"fields": self.fields, "slots": self.slots, "typecode": self.typecode}
        if pickled_for_a_new_process():
            state["arr"] = self._arr
        else:  # a private copy: shared memory and its lock cannot travel through bytes
            state["values"] = list(self.raw)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "arr" in state:
            self.fields, self.slots, self.typecode = state["fields"], state["slots"], state["typecode"]
            self._index = {name: i for i, name in enumerate(self.fields)}
            self._arr = state["arr"]
            self.raw = self._arr.get_obj()
        else:
            self.__init__(  # type: ignore[misc]
                state["fields"], slots=state["slots"], typecode=state["typecode"], values=state["values"]
            )


class ProcessSlots:
    """Counters that any process holding a copy may add to: each process writes a slot of its own.

    Slot 0 holds what finished processes counted (``release`` folds a process's slot into it) and what is
    added while every other slot is taken; slots ``1..`` belong to one live process each (a slot whose
    process died without ``release`` is folded and reused when slots run out). ``totals`` sums them all.
    """

    _OWNER = "_owner"

    def __init__(self, fields: Sequence[str], *, slots: int = 256) -> None:
        self.fields = tuple(fields)
        self._shared = SharedArray((*self.fields, self._OWNER), slots=slots, typecode="q")
        self._local()

    def _local(self) -> None:
        self._pid = os.getpid()
        self._slot: int | None = None  # this process's slot, once claimed
        self._thread_lock = threading.Lock()  # the threads of this process share its slot

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # a forked copy: the slot and the thread lock are the parent's
            self._local()

    def _claim(self) -> int:
        """A free slot for this process (0, shared under the lock, when every slot is taken)."""
        shared, pid = self._shared, os.getpid()
        with shared.lock:
            owners = [shared.get(self._OWNER, s) for s in range(shared.slots)]
            for s in range(1, shared.slots):
                if owners[s] == 0:
                    shared.set(self._OWNER, pid, s)
                    return s
            for s in range(1, shared.slots):
                if not _alive(owners[s]):
                    self._fold(s)
                    shared.set(self._OWNER, pid, s)
                    return s
        return 0

    def _fold(self, slot: int) -> None:
        """Move ``slot``'s counts into slot 0 (the caller holds the lock)."""
        for name in self.fields:
            self._shared.add(name, self._shared.get(name, slot), 0)
            self._shared.set(name, 0, slot)

    def add(self, field: str, value: int = 1) -> None:
        self._check_process()
        with self._thread_lock:
            if self._slot is None:
                self._slot = self._claim()
            if self._slot:
                self._shared.add(field, value, self._slot)
                return
        with self._shared.lock:  # every slot taken: the shared slot 0, under the lock
            self._shared.add(field, value, 0)

    def mine(self) -> dict[str, int]:
        """This process's counts since it last released its slot."""
        self._check_process()
        with self._thread_lock:
            if not self._slot:
                return dict.fromkeys(self.fields, 0)
            row = self._shared.row(self._slot)
        return {name: int(row[name]) for name in self.fields}

    def release(self) -> None:
        """This process is done counting for now: fold its slot into slot 0 and free it."""
        self._check_process()
        with self._thread_lock:
            slot, self._slot = self._slot, None
            if slot:
                with self._shared.lock:
                    self._fold(slot)
                    self._shared.set(self._OWNER, 0, slot)

    def totals(self) -> dict[str, int]:
        """Every process's counts, summed."""
        with self._shared.lock:
            totals = self._shared.totals()
        return {name: int(totals[name]) for name in self.fields}

    def __getstate__(self) -> dict[str, Any]:
        return {"fields": self.fields, "shared": self._shared}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.fields, self._shared = state["fields"], state["shared"]
        self._local()


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a signal-0 probe; a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ----------------------------------------------------------------------------------------------- epochs
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
