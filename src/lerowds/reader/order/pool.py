"""Pool emission order (order version 2, unchanged in 3): a sliding window of segments whose frames carry random keys.

A consumer owns segments ``0 .. m-1`` (its share of the epoch, in list order). Its **pool** is a window of
consecutive segments: when segment ``j`` is admitted the pool is ``[lo_j, j]``, where ``lo_j`` is the
smallest index that keeps the window within ``pool_size`` segments and, with ``byte_budget``, within the
budget (``sizes``; one segment alone may exceed it). Segments are admitted in list order, one per time
unit, and a segment leaves when the window moves past it:

* admission time ``a_j = 0`` for the first window (``j <= h``, ``h`` = the last ``j`` with ``lo_j = 0``),
  else ``a_j = j``;
* eviction time ``b_i = e(i)``, the first ``j`` with ``lo_j > i``; segments of the last window leave one
  per unit after it: ``b_i = m + i - lo_{m-1}``. When the first window is also the last (the whole share
  fits in the pool) every segment lives ``[0, m)``: the order is then a uniform shuffle of the share.

Frame ``f`` of segment ``i`` (the ``c``-th frame of the consumer's list, counting from 0) gets the key
``(a_i << 32) + (b_i - a_i) * (r >> 32)`` with ``r = mix64(base + (c + 1) * 0x9E3779B97F4A7C15 mod 2**64)``,
``mix64`` SplitMix64's finalizer and ``base`` the first 64-bit word of
``SeedSequence([seed, epoch, rank, worker, KEY_TAG]).generate_state``: uniform in the segment's lifetime
``[a_i, b_i)``, in integers only. The consumer emits its frames in ascending ``(key, segment, frame)``:
every frame exactly once (a sort is a permutation); the frames held are always those of one window (at
most ``pool_size`` segments and ``byte_budget`` bytes); emission is spread over every segment of the
pool, about ``length / lifetime`` frames of a segment per time unit. The stream after ``k`` emits is
found without replaying them: the ``k``-th frame lies in the lifetime of the segment holding the
consumer's ``k``-th frame in list order, so only the keys of segments alive then are computed (about two
pools' frames). Without ``shuffle`` the oldest segment is emitted in frame order, the pool refilled in
list order as segments drain (count and budget as above).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from lerowds.errors import ConfigError
from lerowds.reader.order.events import Admit, Emit, Evict, PoolEvent
from lerowds.reader.order.lifetimes import (
    KEY_TAG,
    check_int,
    frame_keys,
    key_base,
    lifetimes,
    mix64,
    ordered_fill,
    pool_windows,
    window_bounds,
)
from lerowds.reader.order.segments import Segment, SegmentArray

__all__ = [  # the pool math and event types are re-exported: their old home was this module
    "KEY_TAG",
    "ORDER_VERSION",
    "Admit",
    "Emit",
    "Evict",
    "PoolEvent",
    "PoolOrder",
    "key_base",
    "lifetimes",
    "mix64",
    "pool_order",
    "pool_windows",
    "window_bounds",
]

# 1: lerowds before the windowed pool (uniform swap-remove draws over the pool's frames). 2: the windowed pool.
# 3: run mode (run_length > 1) emits a segment's runs in ascending order (order/runs.py, ``relabel``); the pool's
# keys, and so the per-sample order (run_length=1), are version 2's: resume/state.py loads such version-2 states.
ORDER_VERSION = 3
_CHUNK_FRAMES = 1 << 16  # frames emitted per computed chunk (about); buffering only, not part of the order


class PoolOrder:
    """Emission state of one consumer: which segments are in the pool and which of their frames remain.

    See the module docstring for the order (``ORDER_VERSION``). ``skip(k)`` costs about two pools' frames
    of integer work, wherever ``k`` lands; ``events()`` then streams the rest.
    """

    def __init__(
        self,
        segments: Sequence[Segment] | SegmentArray,
        *,
        pool_size: int,
        seed: int,
        epoch: int,
        rank: int,
        worker: int,
        shuffle: bool,
        sizes: Sequence[int] | np.ndarray | None = None,
        byte_budget: int | None = None,
    ) -> None:
        check_int("pool_size", pool_size, 1)
        segs = SegmentArray.of(segments)
        m = len(segs)
        if byte_budget is not None:
            check_int("byte_budget", byte_budget, 1)
            if sizes is None or len(sizes) != m:
                raise ConfigError(
                    f"byte_budget needs one size per segment, got {None if sizes is None else len(sizes)} "
                    f"sizes for {m} segments"
                )
        if m >= 1 << 30:
            raise ConfigError(f"a consumer may own at most 2**30 segments, got {m}")
        self._segs = segs
        self._lengths = segs.lengths
        self._first = np.concatenate([[0], np.cumsum(self._lengths)])
        self._total = int(self._first[-1])
        self._sizes = np.zeros(m, np.int64) if sizes is None else np.asarray(sizes, dtype=np.int64)
        self._pool_size, self._budget, self._shuffle = pool_size, byte_budget, bool(shuffle)
        self._base = key_base(seed, epoch, rank, worker)
        self._lo = pool_windows(m, pool_size=pool_size, sizes=self._sizes, byte_budget=byte_budget)
        self._admit, self._evict = lifetimes(self._lo)
        self._units = int(self._evict[-1]) if m else 0
        span = int(np.ceil(_CHUNK_FRAMES * self._units / max(self._total, 1)))
        self._span = max(1, span, int((np.arange(m) - self._lo).max(initial=0)) + 1)
        # emission state: ``emitted`` frames out; the pool and the frames left of its partly emitted segments
        self._emitted = 0
        self._admitted = 0  # segments admitted so far (list order)
        self._left: dict[int, int] = {}  # segment -> frames left, for the segments in the pool
        self._chunk: tuple[list[int], list[int], list[int]] = ([], [], [])  # segment, frame, key
        self._pos = 0  # next position in the chunk
        self._next_unit = 0  # where the next chunk starts
        self._target: int | None = 0  # a seek not done yet (done when the state is first looked at)

    # -------------------------------------------------------------------------------------- properties
    @property
    def emitted(self) -> int:
        return self._emitted

    @property
    def total(self) -> int:
        return self._total

    @property
    def held_bytes(self) -> int:
        """Bytes of the segments now in the pool (by ``sizes``)."""
        self._settle()
        return int(sum(int(self._sizes[i]) for i in self._left))

    @property
    def pool(self) -> tuple[int, ...]:
        """Indices of the segments in the pool, oldest first."""
        self._settle()
        return tuple(sorted(self._left))

    @property
    def windows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lo, admit, evict)`` per segment: its pool's first segment when admitted, and its lifetime."""
        return self._lo, self._admit, self._evict

    def remaining_frames(self, index: int) -> Sequence[int]:
        """Frames of segment ``index`` not yet emitted, ascending."""
        self._settle()
        seg = self._segs[index]
        if index >= self._admitted:
            return range(seg.start, seg.stop)
        left = self._left.get(index, 0)
        if left == 0 or left == seg.num_frames:
            return range(seg.stop - left, seg.stop)
        if not self._shuffle:
            return range(seg.stop - left, seg.stop)
        _, frame, key = self._keys(index, index + 1)
        cursor = self._cursor()
        if cursor is None:  # pragma: no cover - a partly emitted segment implies frames left
            return range(seg.stop, seg.stop)
        k_key, k_seg, k_frame = cursor
        later = (key > k_key) | ((key == k_key) & ((index > k_seg) | ((index == k_seg) & (frame >= k_frame))))
        return tuple(frame[later].tolist())

    # -------------------------------------------------------------------------------------- keys
    def _keys(self, s0: int, s1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(segment, frame, key)`` of every frame of segments ``[s0, s1)``, in (segment, frame) order."""
        n = self._lengths[s0:s1]
        c0, c1 = int(self._first[s0]), int(self._first[s1])
        seg = np.repeat(np.arange(s0, s1, dtype=np.int64), n)
        counter = np.arange(c0, c1, dtype=np.int64)
        frame = counter - np.repeat(self._first[s0:s1] - self._segs.start[s0:s1], n)
        a = self._admit[s0:s1].astype(np.uint64)
        width = self._evict[s0:s1].astype(np.uint64) - a
        return seg, frame, frame_keys(counter, self._base, np.repeat(a, n), np.repeat(width, n))

    @staticmethod
    def _emission_order(key: np.ndarray) -> np.ndarray:
        """Positions sorted by ``(key, position)``: ties (rare) keep (segment, frame) order."""
        order = np.argsort(key)
        sorted_key = key[order]
        if sorted_key.size > 1 and bool((sorted_key[1:] == sorted_key[:-1]).any()):
            order = order[np.lexsort((order, sorted_key))]
        return order

    def _chunk_between(self, t0: int, t1: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Frames with keys in ``[t0 << 32, t1 << 32)`` in emission order, and how many frames come before."""
        s0 = int(np.searchsorted(self._evict, t0, side="right"))
        s1 = int(np.searchsorted(self._admit, t1, side="left"))
        seg, frame, key = self._keys(s0, s1)
        lo_key, hi_key = np.uint64(t0) << np.uint64(32), np.uint64(t1) << np.uint64(32)
        before = int(self._first[s0]) + int(np.count_nonzero(key < lo_key))
        keep = (key >= lo_key) & (key < hi_key)
        seg, frame, key = seg[keep], frame[keep], key[keep]
        order = self._emission_order(key)
        return before, seg[order], frame[order], key[order]

    def _load(self, t0: int, t1: int, skip: int = 0) -> int:
        before, seg, frame, key = self._chunk_between(t0, t1)
        self._chunk = (seg[skip:].tolist(), frame[skip:].tolist(), key[skip:].tolist())
        self._pos, self._next_unit = 0, t1
        return before

    def _cursor(self) -> tuple[int, int, int] | None:
        """``(key, segment, frame)`` of the next frame to emit (loading chunks as needed), None at the end."""
        if not self._shuffle:
            return None
        while self._pos == len(self._chunk[0]):
            if self._next_unit >= self._units:
                return None
            self._load(self._next_unit, min(self._next_unit + self._span, self._units))
        seg, frame, key = self._chunk
        return key[self._pos], seg[self._pos], frame[self._pos]

    # -------------------------------------------------------------------------------------- seeking
    def _seek(self, k: int) -> None:
        """Set the state to "``k`` frames emitted"; the work is done when the state is next looked at."""
        self._emitted, self._target = k, k

    def _settle(self) -> None:
        if self._target is not None:
            k, self._target = self._target, None
            self._do_seek(k)

    def _do_seek(self, k: int) -> None:
        """Compute the state after ``k`` emits (integer work of about two pools' frames)."""
        self._emitted = k
        m = len(self._segs)
        if k >= self._total:
            self._admitted, self._left, self._chunk, self._pos = m, {}, ([], [], []), 0
            self._next_unit = self._units
            return
        j = int(np.searchsorted(self._first, k, side="right")) - 1  # the segment holding list frame k
        if not self._shuffle:
            self._admitted = self._no_shuffle_fill(j)
            self._left = {j: int(self._first[j + 1]) - k}
            self._left.update({i: int(self._lengths[i]) for i in range(j + 1, self._admitted)})
            return
        t0, t1 = int(self._admit[j]), int(self._evict[j])
        s0 = int(np.searchsorted(self._evict, t0, side="right"))
        s1 = int(np.searchsorted(self._admit, t1, side="left"))
        seg, frame, key = self._keys(s0, s1)  # every frame of the segments alive during j's lifetime
        order = self._emission_order(key)
        r = k - int(self._first[s0])  # the first r of these (in emission order) are out; the rest are not
        rest = order[r:]
        next_key = int(key[rest[0]])
        self._admitted = int(np.searchsorted(self._admit, next_key >> 32, side="right"))
        left = np.bincount(seg[rest] - s0, minlength=s1 - s0)
        self._left = {s0 + i: int(n) for i, n in enumerate(left.tolist()) if n and s0 + i < self._admitted}
        rest = rest[key[rest] < np.uint64(t1) << np.uint64(32)]  # the rest of the chunk ending at t1
        self._chunk = (seg[rest].tolist(), frame[rest].tolist(), key[rest].tolist())
        self._pos, self._next_unit = 0, t1

    def _no_shuffle_fill(self, c: int) -> int:
        """Without shuffle: the pool is ``[c, g)`` while segment ``c`` drains; ``g`` = the end of its fill."""
        at = np.asarray([c], dtype=np.int64)
        return int(ordered_fill(at, len(self._segs), self._pool_size, self._sizes, self._budget)[0])

    def skip(self, count: int) -> None:
        """Advance past ``count`` emits (and the pool changes they cause) on integers only."""
        check_int("skip", count)
        if count > self._total - self._emitted:
            raise ConfigError(
                f"cannot skip {count} emits: this consumer has {self._total - self._emitted} frames left "
                f"of {self._total}"
            )
        if count:
            self._seek(self._emitted + count)

    # -------------------------------------------------------------------------------------- streaming
    def events(self) -> Iterator[PoolEvent]:
        """``Admit`` for every segment now in the pool, then the emits and pool changes to the end."""
        self._settle()
        segs = self._segs
        for index in self.pool:
            yield Admit(index, segs[index], self.remaining_frames(index))
        if self._shuffle:
            yield from self._shuffled_events()
        else:
            yield from self._ordered_events()

    def _admit_next(self) -> Admit:
        index = self._admitted
        self._admitted += 1
        seg = self._segs[index]
        self._left[index] = seg.num_frames
        return Admit(index, seg, range(seg.start, seg.stop))

    def _shuffled_events(self) -> Iterator[PoolEvent]:
        episodes, admit, left = self._segs.episode, self._admit, self._left
        m = len(self._segs)
        next_admit = int(admit[self._admitted]) << 32 if self._admitted < m else None
        while True:
            cursor = self._cursor()
            if cursor is None:
                return
            key, index, frame = cursor
            while next_admit is not None and next_admit <= key:
                yield self._admit_next()
                next_admit = int(admit[self._admitted]) << 32 if self._admitted < m else None
            self._pos += 1
            self._emitted += 1
            episode = int(episodes[index])
            yield Emit(index, episode, frame)
            left[index] -= 1
            if not left[index]:
                del left[index]
                yield Evict(index, episode)

    def _ordered_events(self) -> Iterator[PoolEvent]:
        segs, left = self._segs, self._left
        while left:
            index = min(left)
            seg = segs[index]
            for frame in range(seg.stop - left[index], seg.stop):
                left[index] -= 1
                self._emitted += 1
                yield Emit(index, seg.episode, frame)
            del left[index]
            yield Evict(index, seg.episode)
            fill = self._no_shuffle_fill(index + 1) if index + 1 < len(segs) else self._admitted
            while self._admitted < fill:
                yield self._admit_next()

    def chunks(self, frames: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rest of the stream as arrays ``(segment index, frame)`` in emission order (no events), for
        dry runs such as ``lerowds plan``; ``frames``: about how many the caller wants (sizes the chunks
        only). Consumes the state like ``events()``."""
        self._settle()
        if not self._shuffle:
            for index in sorted(self._left):
                seg = self._segs[index]
                frames_left = np.arange(seg.stop - self._left[index], seg.stop, dtype=np.int64)
                yield np.full(frames_left.size, index, dtype=np.int64), frames_left
            for index in range(self._admitted, len(self._segs)):
                seg = self._segs[index]
                yield np.full(seg.num_frames, index, dtype=np.int64), np.arange(seg.start, seg.stop)
            self._seek(self._total)
            return
        seg, frame, _ = self._chunk
        yield np.asarray(seg[self._pos :], dtype=np.int64), np.asarray(frame[self._pos :], dtype=np.int64)
        span = self._span
        if frames is not None:
            span = max(1, int(np.ceil(frames * self._units / max(self._total, 1))))
        t = self._next_unit
        while t < self._units:
            _, seg_a, frame_a, _ = self._chunk_between(t, min(t + span, self._units))
            yield seg_a, frame_a
            t += span
            span = self._span
        self._seek(self._total)


def pool_order(
    segments: Sequence[Segment] | SegmentArray, *, skip: int = 0, **options: Any
) -> Iterator[PoolEvent]:
    """The pool events of consumer ``(rank, worker)``; ``skip=k`` resumes after the first ``k`` emits.

    ``options``: those of ``PoolOrder`` (``pool_size``, ``seed``, ``epoch``, ``rank``, ``worker``,
    ``shuffle``, optionally ``sizes`` and ``byte_budget``). The stream starts with ``Admit`` for each segment
    in the pool (after a skip, with the frames still to emit), then ``Emit``s; an ``Admit`` comes right
    before the first emit at or after its segment's admission time, an ``Evict`` right after its segment's
    last emit. The ``Emit`` events with ``skip=k`` are exactly those of the un-skipped stream after its
    first ``k``.
    """
    order = PoolOrder(segments, **options)
    order.skip(skip)  # eager: bad arguments raise here, not at the first next()
    return order.events()
