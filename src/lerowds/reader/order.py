"""Sample order as pure math: episode permutation, rank/worker split of frames, pool emission order.

Everything is a function of integers ``(seed, epoch, rank, worker, counters)``. Random numbers come from
``np.random.PCG64(np.random.SeedSequence([...ints, TAG]))`` and only its raw 64-bit outputs
(``random_raw``) are used, never ``Generator`` methods: NumPy keeps SeedSequence and the PCG64 bit stream
fixed across versions and platforms, so the order does not depend on NumPy's sampling algorithms, on
hash randomization, on block sizes or on time.

* episode order: keys = ``random_raw(n)`` of ``SeedSequence([seed, epoch, EPISODE_TAG])``; the
  permutation is ``argsort(keys, kind="stable")``.
* pool order: draw ``i`` (the i-th shuffled emit of a consumer) uses raw output ``i`` of
  ``SeedSequence([seed, epoch, rank, worker, POOL_TAG])``: ``u = (raw >> 11) * 2**-53`` in [0, 1), and
  the pick is ``int(u * n)`` among the ``n`` frames still in the pool (bias below ``n / 2**53``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lerowds.errors import ConfigError

EPISODE_TAG = 0x4C52_4550  # "LREP": stream tag of the episode permutation
POOL_TAG = 0x4C52_504C  # "LRPL": stream tag of the pool draws
_BLOCK = 4096  # raw draws fetched at once; buffering only, the order does not depend on it
_SHIFT = 32  # pool entries are coded ``index << _SHIFT | frame``
_MASK = (1 << _SHIFT) - 1

Remainder = Literal["drop", "repeat"]


def _check_int(name: str, value: int, low: int = 0) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _bit_generator(*words: int) -> np.random.PCG64:
    return np.random.PCG64(np.random.SeedSequence([int(w) for w in words]))


def episode_order(num_episodes: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Positions ``0..num_episodes-1`` in this epoch's order (identity when not ``shuffle``), int64."""
    _check_int("num_episodes", num_episodes)
    _check_int("seed", seed)
    _check_int("epoch", epoch)
    if not shuffle:
        return np.arange(num_episodes, dtype=np.int64)
    keys = _bit_generator(seed, epoch, EPISODE_TAG).random_raw(num_episodes)
    return np.argsort(keys, kind="stable").astype(np.int64)


@dataclass(frozen=True, slots=True)
class Segment:
    """Frames ``[start, stop)`` of episode ``episode`` (a dataset episode index) that a consumer owns."""

    episode: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.episode < 0 or not 0 <= self.start < self.stop:
            raise ConfigError(
                f"Segment needs episode >= 0 and 0 <= start < stop, got episode={self.episode} "
                f"start={self.start} stop={self.stop}"
            )

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class RankPlan:
    """One rank's share of an epoch: contiguous frames of the global sequence, cut into segments."""

    segments: tuple[Segment, ...]
    num_frames: int  # frames this rank owns; the same on every rank
    total_frames: int  # frames in the epoch's sequence before dropping/repeating
    dropped: int  # frames no rank sees this epoch (remainder="drop"): the sequence's last ones
    repeated: int  # frames seen twice this epoch (remainder="repeat"): the sequence's first ones

    def __post_init__(self) -> None:
        owned = sum(s.num_frames for s in self.segments)
        if owned != self.num_frames:
            raise ConfigError(f"RankPlan segments hold {owned} frames but num_frames={self.num_frames}")


def rank_frame_count(total_frames: int, *, world_size: int, remainder: Remainder = "drop") -> int:
    """Frames every rank owns: ``N // W`` with "drop", ``ceil(N / W)`` with "repeat"."""
    _check_int("total_frames", total_frames)
    _check_int("world_size", world_size, 1)
    if remainder not in ("drop", "repeat"):
        raise ConfigError(f"remainder must be 'drop' or 'repeat', got {remainder!r}")
    if world_size > total_frames:
        raise ConfigError(
            f"world_size={world_size} ranks but only {total_frames} frames: every rank needs at least one "
            "frame; use fewer ranks or more episodes"
        )
    return total_frames // world_size if remainder == "drop" else -(-total_frames // world_size)


def _worker_range(total: int, num_workers: int, worker: int) -> tuple[int, int]:
    _check_int("num_workers", num_workers, 1)
    if not 0 <= worker < num_workers:
        raise ConfigError(f"worker must be in [0, {num_workers}), got {worker!r}")
    q, r = divmod(total, num_workers)
    lo = worker * q + min(worker, r)
    return lo, lo + q + (worker < r)


def consumer_sample_count(
    total_frames: int, *, world_size: int, num_workers: int, worker: int, remainder: Remainder = "drop"
) -> int:
    """Samples consumer ``(any rank, worker)`` yields in an epoch; the same for every rank and seed."""
    per_rank = rank_frame_count(total_frames, world_size=world_size, remainder=remainder)
    lo, hi = _worker_range(per_rank, num_workers, worker)
    return hi - lo


def _cut(ids: np.ndarray, lens: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> list[Segment]:
    """Segments covering frames ``[lo, hi)`` of the sequence whose episodes end at ``ends``."""
    if hi <= lo:
        return []
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, hi, side="left"))
    out = []
    for i in range(first, last + 1):
        begin = int(ends[i] - lens[i])
        start, stop = max(lo, begin) - begin, min(hi, int(ends[i])) - begin
        if start < stop:
            out.append(Segment(int(ids[i]), start, stop))
    return out


def rank_plan(
    lengths: Sequence[int],
    episode_ids: Sequence[int] | None = None,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    world_size: int,
    rank: int,
    remainder: Remainder = "drop",
) -> RankPlan:
    """Rank ``rank``'s frames: episodes in ``episode_order`` laid end to end, cut in ``world_size`` equal parts.

    ``episode_ids[i]`` (default ``i``) is the dataset episode index of the episode of ``lengths[i]``.
    "drop" leaves out the sequence's last ``N % W`` frames, "repeat" wraps around to its start.
    """
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    ids = np.arange(lens.size, dtype=np.int64) if episode_ids is None else np.asarray(episode_ids, np.int64)
    if ids.shape != lens.shape:
        raise ConfigError(f"got {lens.size} episode lengths but {ids.size} episode ids")
    if lens.size and lens.min() < 0:
        raise ConfigError(
            f"episode lengths must be >= 0, got {int(lens.min())} for episode {ids[lens.argmin()]}"
        )
    if ids.size and (ids.min() < 0 or np.unique(ids).size != ids.size):
        raise ConfigError(f"episode ids must be distinct and >= 0, got {ids.tolist()[:20]}...")
    _check_int("rank", rank)
    total = int(lens.sum())
    per_rank = rank_frame_count(total, world_size=world_size, remainder=remainder)
    if rank >= world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
    order = episode_order(lens.size, seed=seed, epoch=epoch, shuffle=shuffle)
    o_ids, o_lens = ids[order], lens[order]
    ends = np.cumsum(o_lens)
    lo, hi = rank * per_rank, (rank + 1) * per_rank
    segments = _cut(o_ids, o_lens, ends, lo, min(hi, total))  # then the wrapped part ("repeat"), < total
    segments += _cut(o_ids, o_lens, ends, max(lo, total) - total, hi - total)
    excess = world_size * per_rank - total
    return RankPlan(tuple(segments), per_rank, total, dropped=max(-excess, 0), repeated=max(excess, 0))


def worker_segments(rank_segments: Sequence[Segment], *, num_workers: int, worker: int) -> list[Segment]:
    """Worker ``worker``'s contiguous part of the rank's frames; parts differ by at most one frame (maybe 0)."""
    lo, hi = _worker_range(sum(s.num_frames for s in rank_segments), num_workers, worker)
    out, begin = [], 0
    for seg in rank_segments:
        end = begin + seg.num_frames
        start, stop = max(lo, begin), min(hi, end)
        if start < stop:
            out.append(Segment(seg.episode, seg.start + start - begin, seg.start + stop - begin))
        begin = end
    return out


# ---- pool emission order ----------------------------------------------------------------------------


class UniformDraws:
    """Consumer ``(seed, epoch, rank, worker)``'s uniform floats in [0, 1): draw ``i`` is raw output ``i`` of
    ``PCG64(SeedSequence([seed, epoch, rank, worker, POOL_TAG]))`` as ``(raw >> 11) * 2**-53``."""

    def __init__(self, seed: int, epoch: int, rank: int, worker: int) -> None:
        for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
            _check_int(name, value)
        self._bitgen = _bit_generator(seed, epoch, rank, worker, POOL_TAG)
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


@dataclass(frozen=True, slots=True)
class Admit:
    """Segment ``index`` (its position in the consumer's list) enters the pool; ``frames`` remain to emit."""

    index: int
    segment: Segment
    frames: Sequence[int]  # ascending; ``range(start, stop)`` unless the pool was rebuilt by a skip


@dataclass(frozen=True, slots=True)
class Emit:
    """Emit frame ``frame`` of episode ``episode`` (from pool segment ``index``)."""

    index: int
    episode: int
    frame: int


@dataclass(frozen=True, slots=True)
class Evict:
    """Segment ``index`` (of episode ``episode``) has no frame left and leaves the pool."""

    index: int
    episode: int


PoolEvent = Admit | Emit | Evict


class PoolOrder:
    """Emission state of one consumer: which segments are in the pool and which of their frames remain.

    The pool holds up to ``pool_size`` segments, admitted in list order (initially filled, then refilled
    as segments drain). With ``byte_budget`` (and ``sizes``, the bytes each segment holds while in the
    pool) a segment is admitted only while the pool's bytes stay within the budget — or into an empty
    pool, so one oversized episode still passes alone: admission waits for eviction. With ``shuffle``
    each emit is uniform over all not-yet-emitted frames in the pool (swap-remove in one flat list);
    without, the oldest segment is emitted in frame order.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        *,
        pool_size: int,
        seed: int,
        epoch: int,
        rank: int,
        worker: int,
        shuffle: bool,
        sizes: Sequence[int] | None = None,
        byte_budget: int | None = None,
    ) -> None:
        _check_int("pool_size", pool_size, 1)
        self._segments = tuple(segments)
        if byte_budget is not None:
            _check_int("byte_budget", byte_budget, 1)
            if sizes is None or len(sizes) != len(self._segments):
                raise ConfigError(
                    f"byte_budget needs one size per segment, got {None if sizes is None else len(sizes)} "
                    f"sizes for {len(self._segments)} segments"
                )
        self._pool_size = pool_size
        self._budget = byte_budget
        self._sizes = tuple(int(x) for x in sizes) if sizes is not None else (0,) * len(self._segments)
        self._held = 0  # bytes of the segments in the pool
        self._shuffle = shuffle
        self._draws = UniformDraws(seed, epoch, rank, worker)
        self._flat: list[int] = []  # shuffle: codes ``index << _SHIFT | frame`` of the pool's frames left
        self._left = [s.num_frames for s in self._segments]  # frames left per segment index
        self._pool: dict[int, None] = {}  # segment indices in the pool, in admission order
        self._next = 0  # next segment index to admit
        self._emitted = 0
        self._total = sum(self._left)
        self._fill()

    @property
    def emitted(self) -> int:
        return self._emitted

    @property
    def total(self) -> int:
        return self._total

    @property
    def held_bytes(self) -> int:
        """Bytes of the segments now in the pool (by ``sizes``)."""
        return self._held

    @property
    def pool(self) -> tuple[int, ...]:
        """Indices of the segments in the pool, oldest first."""
        return tuple(self._pool)

    def remaining_frames(self, index: int) -> Sequence[int]:
        """Frames of segment ``index`` not yet emitted, ascending."""
        seg, left = self._segments[index], self._left[index]
        if left == seg.num_frames or not self._shuffle:
            return range(seg.stop - left, seg.stop)
        return tuple(sorted(c & _MASK for c in self._flat if c >> _SHIFT == index))

    def _fill(self) -> list[int]:
        """Admit the next segments while the pool has room (count, and bytes with a budget)."""
        admitted = []
        while (
            self._next < len(self._segments)
            and len(self._pool) < self._pool_size
            and (self._budget is None or not self._pool or self._held + self._sizes[self._next] <= self._budget)
        ):
            admitted.append(self._admit())
        return admitted

    def _drop(self, index: int) -> None:
        del self._pool[index]
        self._held -= self._sizes[index]

    def _admit(self) -> int:
        index, seg = self._next, self._segments[self._next]
        self._next += 1
        self._pool[index] = None
        self._held += self._sizes[index]
        if self._shuffle:
            base = index << _SHIFT
            self._flat.extend(range(base + seg.start, base + seg.stop))
        return index

    def _pick(self) -> tuple[int, int]:
        if not self._shuffle:
            index = next(iter(self._pool))
            return index, self._segments[index].stop - self._left[index]
        u = self._draws.next()
        flat = self._flat
        k = int(u * len(flat))  # u < 1 - 2**-53 keeps k < len(flat) in IEEE rounding
        code, last = flat[k], flat.pop()
        if k < len(flat):
            flat[k] = last
        return code >> _SHIFT, code & _MASK

    def events(self) -> Iterator[PoolEvent]:
        """``Admit`` for every segment now in the pool, then the emits and pool changes to the end."""
        for index in self._pool:
            yield Admit(index, self._segments[index], self.remaining_frames(index))
        while self._pool:
            index, frame = self._pick()
            self._emitted += 1
            seg = self._segments[index]
            yield Emit(index, seg.episode, frame)
            self._left[index] -= 1
            if self._left[index] == 0:
                self._drop(index)
                yield Evict(index, seg.episode)
                for admitted in self._fill():
                    new = self._segments[admitted]
                    yield Admit(admitted, new, range(new.start, new.stop))

    def skip(self, count: int) -> None:
        """Advance past ``count`` emits (and the pool changes they cause) on integers only."""
        _check_int("skip", count)
        if count > self._total - self._emitted:
            raise ConfigError(
                f"cannot skip {count} emits: this consumer has {self._total - self._emitted} frames left "
                f"of {self._total}"
            )
        if self._shuffle:
            self._skip_shuffled(count)
            return
        while count:
            index = next(iter(self._pool))
            take = min(count, self._left[index])
            self._left[index] -= take
            self._emitted += take
            count -= take
            if self._left[index] == 0:
                self._drop(index)
                self._fill()

    def _skip_shuffled(self, count: int) -> None:
        flat, left, drop, fill = self._flat, self._left, self._drop, self._fill
        pop = flat.pop
        while count:
            chunk = self._draws.take(count)
            count -= len(chunk)
            self._emitted += len(chunk)
            for u in chunk:
                k = int(u * len(flat))
                code, last = flat[k], pop()
                if k < len(flat):
                    flat[k] = last
                index = code >> _SHIFT
                left[index] -= 1
                if not left[index]:
                    drop(index)
                    fill()


def pool_order(
    segments: Sequence[Segment],
    *,
    pool_size: int,
    seed: int,
    epoch: int,
    rank: int,
    worker: int,
    shuffle: bool,
    skip: int = 0,
) -> Iterator[PoolEvent]:
    """The pool events of consumer ``(rank, worker)``; ``skip=k`` resumes after the first ``k`` emits.

    The stream starts with ``Admit`` for each segment in the pool (after a skip, with the frames still to
    emit), then ``Emit``; a drained segment gives ``Evict`` followed by ``Admit`` of the next one. The
    ``Emit`` events with ``skip=k`` are exactly those of the un-skipped stream after its first ``k``.
    """
    order = PoolOrder(
        segments, pool_size=pool_size, seed=seed, epoch=epoch, rank=rank, worker=worker, shuffle=shuffle
    )
    order.skip(skip)  # eager: bad arguments raise here, not at the first next()
    return order.events()
