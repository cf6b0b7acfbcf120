"""The webdataset ``episode_pool`` stage's order: a streaming pool with uniform swap-remove draws.

Unlike ``PoolOrder`` (order version 2, which needs a consumer's whole segment list up front), this pool
takes episodes from a stream as it has room: it holds up to ``pool_size`` episodes, each emit is uniform
over the frames of the pool not yet emitted (draw ``u`` picks position ``int(u * len(frames))`` of the
list of frames left, which the last entry then fills: swap-remove), and a drained episode is replaced by the
stream's next one. It is order version 1's draw; it is not resumable from a count, as a stream has no index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import numpy as np

from lerowds.checks import check_int
from lerowds.reader.order.ints import bit_generator

POOL_TAG = 0x4C52_504C  # "LRPL": stream tag of ``UniformDraws`` (the webdataset pool stage's draws)
_BLOCK = 4096  # raw draws fetched at once; buffering only, the order does not depend on it

T = TypeVar("T")


class UniformDraws:
    """Consumer ``(seed, epoch, rank, worker)``'s uniform floats in [0, 1): draw ``i`` is raw output ``i`` of
    ``PCG64(SeedSequence([seed, epoch, rank, worker, POOL_TAG]))`` as ``(raw >> 11) * 2**-53``."""

    def __init__(self, seed: int, epoch: int, rank: int, worker: int) -> None:
        for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
            check_int(name, value)
        self._bitgen = bit_generator(seed, epoch, rank, worker, POOL_TAG)
        self._buffer: list[float] = []
        self._pos = 0

    def _refill(self) -> None:
        raw = self._bitgen.random_raw(_BLOCK) >> np.uint64(11)
        self._buffer, self._pos = (raw.astype(np.float64) * 2.0**-53).tolist(), 0

    def take(self, count: int) -> list[float]:
        """The next ``min(count, buffered)`` draws (at least one when ``count > 0``)."""
        if self._pos == len(self._buffer):
            self._refill()
        out = self._buffer[self._pos : self._pos + count]
        self._pos += len(out)
        return out

    def next(self) -> float:
        """The next draw (the hot path of every shuffled emit: no list slicing)."""
        if self._pos == len(self._buffer):
            self._refill()
        u = self._buffer[self._pos]
        self._pos += 1
        return u


def swap_remove_pool(
    items: Iterable[T], length: Callable[[T], int], *, pool_size: int, draws: UniformDraws
) -> Iterator[tuple[T, int]]:
    """``(item, frame)`` for every frame of every item of the stream, in the pool's order (module docstring).

    ``length(item)``: its number of frames. Items are taken from ``items`` only when the pool has room."""
    check_int("pool_size", pool_size, 1)
    source = iter(items)
    held: list[T] = []
    left: list[int] = []
    flat: list[tuple[int, int]] = []  # (slot in held, frame) of every not-yet-emitted frame in the pool
    free: list[int] = []

    def admit() -> bool:
        n = 0
        while not n:  # an item without frames takes no room in the pool (it would never drain)
            item = next(source, None)
            if item is None:
                return False
            n = length(item)
        slot = free.pop() if free else len(held)
        if slot == len(held):
            held.append(item)
            left.append(0)
        held[slot], left[slot] = item, n
        flat.extend((slot, f) for f in range(n))
        return True

    active = 0
    while active < pool_size and admit():
        active += 1
    while flat:
        k = int(draws.next() * len(flat))
        (slot, frame), last = flat[k], flat.pop()
        if k < len(flat):
            flat[k] = last
        yield held[slot], frame
        left[slot] -= 1
        if left[slot] == 0:
            free.append(slot)
            active -= 1
            if admit():
                active += 1
