"""Run mode (``run_length=r``, ``shuffle_buffer=S``): the pool draws runs of ``r`` consecutive frames, a bounded
buffer of ``S`` samples reorders them. Pure integer math, like the pool it builds on.

**Runs.** Each segment ``[start, stop)`` of a consumer is cut into runs ``[start + i*r, min(start + (i+1)*r,
stop))``: runs never cross a segment (so never an episode) end, the last run of a segment may be shorter.
The pool (``PoolOrder``) orders *units* instead of frames: it runs on the segments' run counts (segment ``i``
holds ``ceil(len_i / r)`` units), with the same windows, byte budget and keys (the key counter is a unit's
position in the consumer's list). **Ascending runs** (order version 3): the ``n``-th unit of segment ``i``
the pool emits is run ``n`` of segment ``i`` (``relabel``), so an episode's runs come in frame order,
interleaved with the other segments' as the pool's keys say, and its open decoder reads on from one run to
the next without a seek. Every run, so every frame, comes exactly once. With ``r = 1`` the runs are the
frames, nothing is relabelled, and the order is the pool's own (unchanged since version 2).

**Arrival positions.** The runs' samples, laid end to end in run order, are the consumer's samples in
*arrival* order: sample ``j`` is its ``j``-th.

**Buffer.** Sample ``j`` gets ``key_j = (j << 32) + S * (mix64(base + (j + 1) * 0x9E3779B97F4A7C15) >> 32)``
(``base``: ``SeedSequence([seed, epoch, rank, worker, BUFFER_TAG])``'s first word; the pool's key function with
lifetime ``[j, j + S)``) and the consumer emits its samples in ascending ``(key, j)``. Since
``j << 32 <= key_j < (j + S) << 32``, sample ``j`` can be emitted once samples ``<= key_j >> 32`` have arrived:
the buffer holds at most ``S`` samples (plus the run being decoded). ``S = 0`` emits in arrival order.

**Resume after k emits.** Samples ``j < k - S`` are emitted (their keys are below ``k << 32``, and at most
``k`` keys are), samples ``j >= k + S`` are not (``k`` keys are below ``(k + S) << 32``): sorting the keys of
``[k - S, k + S)`` gives the emitted set. The stream restarts at the run holding arrival position
``max(0, k - S)`` and rebuilds only samples not yet emitted: at most ``S + r`` samples decoded again. Finding
that run is integer work over the runs before it (vectorised, ``PoolOrder.chunks`` relabelled); with ``r = 1``
it is the pool's own skip. After the pool's skip, a segment's next run is the number of its units already
emitted (what the pool's ``Admit`` says is left).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.order.events import Admit, Emit, Evict, PoolEvent
from lerowds.reader.order.lifetimes import frame_keys
from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.segments import Segment, SegmentArray

BUFFER_TAG = 0x4C52_5342  # "LRSB": SeedSequence tag of the shuffle buffer's keys
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class EmitRun:
    """Build frames ``frames`` (ascending, in ``[start, start + r)``) of episode ``episode`` from one decode;
    frame ``start``'s sample has arrival position ``first``. ``index``: the pool segment it comes from."""

    index: int
    episode: int
    start: int
    frames: tuple[int, ...]
    first: int


def frame_runs(events: Iterable[PoolEvent], first: int = 0) -> Iterator[Any]:
    """``r = 1``: each ``Emit`` as a run of its one frame (``first``: the first emit's arrival position); the
    pool's other events as they are."""
    j = first
    for ev in events:
        if isinstance(ev, Emit):
            yield EmitRun(ev.index, ev.episode, ev.frame, (ev.frame,), j)
            j += 1
        else:
            yield ev


def run_units(segments: SegmentArray, run_length: int) -> SegmentArray:
    """The segments as the pool sees them in run mode: segment ``i`` holds units ``[0, ceil(len_i / r))``."""
    n = -(-segments.lengths // run_length)
    return SegmentArray(segments.episode, np.zeros_like(n), n)


def relabel(seg: np.ndarray, emitted: np.ndarray) -> np.ndarray:
    """Ascending runs: the run of each emitted unit, ``seg`` being the units' segments in emission order and
    ``emitted`` the units of each segment emitted before them (updated in place): the ``n``-th emission of
    segment ``i`` is its run ``n``."""
    seg = np.asarray(seg, dtype=np.int64)
    order = np.argsort(seg, kind="stable")
    s = seg[order]
    first = np.flatnonzero(np.concatenate([[True], s[1:] != s[:-1]])) if s.size else np.zeros(0, np.int64)
    rank = np.arange(s.size) - np.repeat(first, np.diff(np.append(first, s.size)))
    run = np.empty_like(seg)
    run[order] = emitted[s] + rank
    emitted += np.bincount(seg, minlength=emitted.size)
    return run


class BufferKeys:
    """Consumer ``(seed, epoch, rank, worker)``'s shuffle-buffer keys for a buffer of ``size`` samples."""

    def __init__(self, size: int, *, seed: int, epoch: int, rank: int, worker: int) -> None:
        check_int("shuffle_buffer", size)
        for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
            check_int(name, value)
        self.size = size
        words = [int(seed), int(epoch), int(rank), int(worker), BUFFER_TAG]
        self._base = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]

    def keys(self, positions: np.ndarray) -> np.ndarray:
        """``key_j`` of each arrival position ``j`` (uint64)."""
        j = np.asarray(positions, dtype=np.int64)
        if j.size and int(j.max()) + self.size >= 1 << 32:
            raise ConfigError(
                f"a consumer may buffer at most 2**32 - shuffle_buffer samples, got {int(j.max())}"
            )
        return frame_keys(j, self._base, j, np.full(j.size, self.size, dtype=np.uint64))

    def emitted(self, k: int, n: int) -> tuple[int, frozenset[int]]:
        """After ``k`` of ``n`` samples emitted: ``lo`` (every sample before it is out) and the emitted
        positions at or after it."""
        check_int("k", k)
        if k > n:
            raise ConfigError(f"cannot skip {k} samples: this consumer has {n}")
        lo, hi = max(0, k - self.size), min(n, k + self.size)
        js = np.arange(lo, hi, dtype=np.int64)
        order = np.lexsort((js, self.keys(js)))
        return lo, frozenset(js[order[: k - lo]].tolist())


def shuffle_buffer(items: Iterable[tuple[int, T]], keys: Callable[[np.ndarray], np.ndarray]) -> Iterator[T]:
    """Stage: ``(j, x)`` in ascending ``j`` in, each ``x`` out in ascending ``(key_j, j)``; an item leaves as soon as
    no later arrival can come before it (``key_j >> 32 <= `` the last ``j`` in), so at most ``S`` wait."""
    heap: list[tuple[int, int, T]] = []
    for j, x in items:
        key = int(keys(np.asarray([j]))[0])
        if not heap and key >> 32 <= j:  # S = 0, or a zero draw: straight through
            yield x
            continue
        heapq.heappush(heap, (key, j, x))  # (key, j) is unique: x is never compared
        while heap and heap[0][0] >> 32 <= j:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


class RunOrder:
    """One consumer's run stream (module docstring): ``start_at(j)`` then ``events()``."""

    def __init__(
        self,
        segments: Sequence[Segment] | SegmentArray,
        *,
        run_length: int,
        shuffle_buffer: int = 0,
        **pool: Any,
    ) -> None:
        check_int("run_length", run_length, 1)
        self.run_length = run_length
        ids = {k: pool[k] for k in ("seed", "epoch", "rank", "worker")}
        self.buffer = BufferKeys(shuffle_buffer, **ids) if shuffle_buffer else None
        self._segs = SegmentArray.of(segments)
        self._units = self._segs if run_length == 1 else run_units(self._segs, run_length)
        self._pool = pool
        self._order = PoolOrder(self._units, **pool)
        self._first = 0  # arrival position of the next run's first frame
        self._lo, self._done = 0, frozenset[int]()

    @property
    def pool(self) -> tuple[int, ...]:
        """Segments in the pool now (their indices in the consumer's list)."""
        return self._order.pool

    @property
    def total(self) -> int:
        """Samples of the consumer."""
        return self._segs.num_frames

    @property
    def buffer_keys(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The shuffle buffer's key function (None without a buffer: samples leave in arrival order)."""
        return None if self.buffer is None else self.buffer.keys

    def seek(self, emitted: int) -> None:
        """Resume after ``emitted`` samples out of the buffer (integers only): start at the first sample not
        out, leaving out the later ones already out (at most ``S``)."""
        if self.buffer is None:
            self.start_at(emitted)
        else:
            self.start_at(*self.buffer.emitted(emitted, self.total))

    def start_at(self, lo: int, emitted: frozenset[int] = frozenset()) -> None:
        """Start at arrival position ``lo`` (integers only), leaving out the positions in ``emitted``."""
        check_int("lo", lo)
        if lo > self.total:
            raise ConfigError(f"cannot start at sample {lo}: this consumer has {self.total}")
        if self.run_length == 1:
            self._order.skip(lo)
            self._first = lo
        else:
            runs, self._first = self._locate(lo)
            self._order.skip(runs)
        self._lo, self._done = lo, emitted

    def _run_lengths(self, seg: np.ndarray, unit: np.ndarray) -> np.ndarray:
        start = self._segs.start[seg] + unit * self.run_length
        return np.minimum(start + self.run_length, self._segs.stop[seg]) - start

    def _locate(self, lo: int) -> tuple[int, int]:
        """``(runs before, arrival position of its first frame)`` of the run holding position ``lo``."""
        count = runs = 0
        emitted = np.zeros(len(self._segs), dtype=np.int64)
        if lo:
            for seg, _ in PoolOrder(self._units, **self._pool).chunks(lo // self.run_length + 1):
                if not seg.size:
                    continue
                cum = np.cumsum(self._run_lengths(seg, relabel(seg, emitted)))
                if count + int(cum[-1]) > lo:
                    i = int(np.searchsorted(cum, lo - count, side="right"))
                    return runs + i, count + (int(cum[i - 1]) if i else 0)
                count, runs = count + int(cum[-1]), runs + seg.size
        return runs, count

    def events(self) -> Iterator[Any]:
        """The pool's ``Admit`` / ``Evict`` events, and an ``EmitRun`` per run with samples still to build."""
        r, lo, done = self.run_length, self._lo, self._done
        starts, stops = self._segs.start, self._segs.stop
        j = self._first
        emitted: dict[int, int] = {}  # r > 1: segment -> its runs emitted so far (its next run)
        for ev in self._order.events():
            if isinstance(ev, Admit) and r > 1:  # after a skip, a segment may be partly emitted
                emitted[ev.index] = ev.segment.num_frames - len(ev.frames)
            elif isinstance(ev, Evict):
                emitted.pop(ev.index, None)
            if not isinstance(ev, Emit):
                yield ev
                continue
            if r == 1:
                start = ev.frame
            else:
                run = emitted[ev.index]
                emitted[ev.index] = run + 1
                start = int(starts[ev.index]) + run * r
            stop = min(start + r, int(stops[ev.index]))
            first, j = j, j + stop - start
            frames: tuple[int, ...] = tuple(range(start, stop))
            if first < lo or done:
                frames = tuple(f for f in frames if first + f - start >= lo and first + f - start not in done)
            if frames:
                yield EmitRun(ev.index, ev.episode, start, frames, first)
