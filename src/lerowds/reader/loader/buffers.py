"""Preallocated batch buffers, reused only once nothing outside the pool refers to them.

A ``BufferSet`` holds one batch: a tensor of shape ``(batch_size, *sample_shape)`` per tensor key,
allocated on first use (optionally in pinned memory) and filled row by row as samples arrive; keys in
``to_float`` (uint8 cameras) are converted to float32 / 255 as they are written. Batches
handed to the user are *views* of these tensors. A ``BufferPool`` reuses a set only when every storage's
use count is back to what the pool alone holds (``torch._C._storage_Use_Count``, calibrated on the set
itself): a batch the user keeps (in a list, as a view, through ``.numpy()``) is never overwritten; the
pool forgets such a set (leaving it to the user) and allocates another, so its own size stays bounded.
With pinned memory, a set also waits for a CUDA event recorded after the user received the batch, so an
asynchronous copy enqueued from it has finished before it is refilled. Without the use-count probe (some
CPU builds of older torch lack it) a handed-out set is never reused: correct, with fresh memory per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from lerowds.errors import ConfigError

_use_count = getattr(torch._C, "_storage_Use_Count", None)
_255 = np.float32(255.0)  # float32 / float32: IEEE division, bit-identical to torch's ``div_(255.0)``


def storage_refs(t: torch.Tensor) -> int:
    """How many tensors/storages refer to ``t``'s memory (-1 if torch cannot tell)."""
    if _use_count is None:
        return -1
    return int(_use_count(t.untyped_storage()._cdata))


class BufferSet:
    """One batch's preallocated tensors, filled row by row; non-tensor values are collated per batch."""

    def __init__(self, batch_size: int, pin_memory: bool, to_float: frozenset[str] = frozenset()) -> None:
        self.batch_size, self.pin_memory, self.to_float = batch_size, pin_memory, to_float
        self.tensors: dict[str, torch.Tensor] = {}
        self._baseline: dict[str, int] = {}
        self.others: dict[str, list[Any]] = {}
        self.rows = 0
        self.handed = False  # a view of it went to the user (or to a device copy) since it was filled
        self.event: Any = None  # CUDA event after which pinned memory is no longer read by a copy

    def ensure(self, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The buffer of ``key`` for rows of ``shape`` and ``dtype`` (allocated, or reallocated if changed)."""
        buf = self.tensors.get(key)
        if buf is None or tuple(buf.shape[1:]) != shape or buf.dtype != dtype:
            pin = self.pin_memory and torch.Size(shape).numel() > 0
            buf = torch.empty((self.batch_size, *shape), dtype=dtype, pin_memory=pin)
            self.tensors[key] = buf
            self._baseline[key] = storage_refs(buf)
        return buf

    def put(self, sample: Mapping[str, Any]) -> None:
        """Write ``sample`` into the next row."""
        i = self.rows
        if i == 0:
            self.others = {}
        elif sample.keys() != self._keys:
            raise ConfigError(
                f"samples of one batch have different keys: {sorted(self._keys)} vs {sorted(sample.keys())}"
            )
        for key, value in sample.items():
            if isinstance(value, torch.Tensor):
                convert = key in self.to_float and value.dtype == torch.uint8
                dtype = torch.float32 if convert else value.dtype
                buf = self.tensors.get(key)
                if buf is None or buf.shape[1:] != value.shape or buf.dtype != dtype:
                    if i > 0:
                        raise ConfigError(
                            f"cannot batch {key!r}: samples have shape/dtype {tuple(buf.shape[1:])} "  # type: ignore[union-attr]
                            f"{buf.dtype} and {tuple(value.shape)} {value.dtype}"  # type: ignore[union-attr]
                        )
                    buf = self.ensure(key, tuple(value.shape), dtype)  # first use, or another shape
                if convert:  # frames_to_tensor's values (uint8 -> float32, / 255) in one pass, GIL released
                    np.divide(value.numpy(), _255, out=buf[i].numpy(), dtype=np.float32)
                else:
                    buf[i].copy_(value)
            else:
                self.others.setdefault(key, []).append(value)
        if i == 0:
            self._keys = sample.keys()
        self.rows = i + 1

    @property
    def full(self) -> bool:
        return self.rows == self.batch_size

    def batch(self) -> dict[str, Any]:
        """The filled rows as a batch dict: views of the buffers, other values through ``default_collate``."""
        n = self.rows
        out: dict[str, Any] = {}
        for key in self._keys:
            if key in self.tensors:
                out[key] = self.tensors[key][:n]
            else:
                out[key] = default_collate(self.others[key])
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def free(self) -> bool:
        """Nothing outside the set refers to its memory any more (and a pinned copy from it has finished)."""
        if not self.handed:
            return True
        for key, t in self.tensors.items():
            refs = storage_refs(t)
            if refs < 0 or refs > self._baseline[key]:
                return False
        return self.event is None or bool(self.event.query())


class BufferPool:
    """The buffer sets of one producer: a free one is reused; at most ``capacity`` are kept."""

    def __init__(
        self, batch_size: int, *, pin_memory: bool, capacity: int, to_float: frozenset[str] = frozenset()
    ) -> None:
        self.batch_size, self.pin_memory, self.capacity = batch_size, pin_memory, capacity
        self.to_float = to_float
        self._sets: list[BufferSet] = []
        self._busy: set[int] = set()  # ids of sets being filled or waiting to be handed out
        self._lock = threading.Lock()
        self.allocated = 0  # sets ever allocated (a test checks that a plain loop stops allocating)

    def acquire(self) -> BufferSet:
        with self._lock:
            for s in self._sets:
                if id(s) not in self._busy and s.free():
                    break
            else:
                idle = [s for s in self._sets if id(s) not in self._busy]
                if len(self._sets) >= self.capacity and idle:
                    self._sets.remove(idle[0])  # the user keeps that batch: it is theirs now
                s = BufferSet(self.batch_size, self.pin_memory, self.to_float)
                self._sets.append(s)
                self.allocated += 1
            self._busy.add(id(s))
            s.rows, s.handed, s.event = 0, False, None
            return s

    def handed_out(self, s: BufferSet, event: Any = None) -> None:
        """``s`` went to the user (or into a device copy ending at ``event``): reusable once released."""
        with self._lock:
            s.handed, s.event = True, event
            self._busy.discard(id(s))

    def release(self, s: BufferSet) -> None:
        """``s`` was filled but not handed out (a dropped last batch): free at once."""
        with self._lock:
            s.handed, s.event = False, None
            self._busy.discard(id(s))

    def reset(self) -> None:
        """A new iteration: sets left busy by a stopped one (queued, never handed out) are free again."""
        with self._lock:
            self._busy.clear()

    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes() for s in self._sets)
