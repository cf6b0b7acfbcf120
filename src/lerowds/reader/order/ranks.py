"""Sample order as pure math: episode permutation, rank/worker split of frames, pool emission order.

Everything is a function of integers ``(seed, epoch, rank, worker, counters)``. Random numbers come from
``np.random.PCG64(np.random.SeedSequence([...ints, TAG]))`` (only its raw 64-bit outputs, ``random_raw``)
or from a counter-based hash keyed by such a SeedSequence (``lerowds.reader.order.pool``), never from
``Generator`` methods: NumPy keeps SeedSequence and the PCG64 bit stream fixed across versions and
platforms, so the order does not depend on NumPy's sampling algorithms, hash randomization, block sizes,
floating point or time.

* episode order: keys = ``random_raw(n)`` of ``SeedSequence([seed, epoch, EPISODE_TAG])``; the
  permutation is ``argsort(keys, kind="stable")``.
* rank and worker split: the episodes laid end to end in that order, cut into ``world_size`` equal runs of
  frames, each cut into ``num_workers`` near-equal runs (``SegmentArray``: numpy columns, cut with
  ``searchsorted``).
* pool order: ``lerowds.reader.order.pool`` (``ORDER_VERSION`` 2: a sliding window of episodes whose frames carry
  counter-based random keys; any point of an epoch is reached in O(pool frames)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.order.ints import bit_generator
from lerowds.reader.order.segments import Segment, SegmentArray, cut

EPISODE_TAG = 0x4C52_4550  # "LREP": stream tag of the episode permutation

Remainder = Literal["drop", "repeat"]


def episode_order(num_episodes: int, *, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Positions ``0..num_episodes-1`` in this epoch's order (identity when not ``shuffle``), int64."""
    check_int("num_episodes", num_episodes)
    check_int("seed", seed)
    check_int("epoch", epoch)
    if not shuffle:
        return np.arange(num_episodes, dtype=np.int64)
    keys = bit_generator(seed, epoch, EPISODE_TAG).random_raw(num_episodes)
    order = np.argsort(keys)  # NumPy's fast sort; equal keys (~n^2 / 2^65 likely) need the stable one
    sorted_keys = keys[order]
    if sorted_keys.size > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        order = np.argsort(keys, kind="stable")
    return order.astype(np.int64, copy=False)


@dataclass(frozen=True, slots=True)
class RankPlan:
    """One rank's share of an epoch: contiguous frames of the global sequence, cut into segments."""

    segments: SegmentArray  # a read-only sequence of ``Segment``
    num_frames: int  # frames this rank owns; the same on every rank
    total_frames: int  # frames in the epoch's sequence before dropping/repeating
    dropped: int  # frames no rank sees this epoch (remainder="drop"): the sequence's last ones
    repeated: int  # frames seen twice this epoch (remainder="repeat"): the sequence's first ones

    def __post_init__(self) -> None:
        owned = SegmentArray.of(self.segments).num_frames
        if owned != self.num_frames:
            raise ConfigError(f"RankPlan segments hold {owned} frames but num_frames={self.num_frames}")


def rank_frame_count(total_frames: int, *, world_size: int, remainder: Remainder = "drop") -> int:
    """Frames every rank owns: ``N // W`` with "drop", ``ceil(N / W)`` with "repeat"."""
    check_int("total_frames", total_frames)
    check_int("world_size", world_size, 1)
    if remainder not in ("drop", "repeat"):
        raise ConfigError(f"remainder must be 'drop' or 'repeat', got {remainder!r}")
    if world_size > total_frames:
        raise ConfigError(
            f"world_size={world_size} ranks but only {total_frames} frames: every rank needs at least one "
            "frame; use fewer ranks or more episodes"
        )
    return total_frames // world_size if remainder == "drop" else -(-total_frames // world_size)


def _worker_range(total: int, num_workers: int, worker: int) -> tuple[int, int]:
    check_int("num_workers", num_workers, 1)
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


def rank_plan(
    lengths: Sequence[int], episode_ids: Sequence[int] | None = None, *, rank: int, **options: Any
) -> RankPlan:
    """Rank ``rank``'s frames: episodes in ``episode_order`` laid end to end, cut in ``world_size`` equal parts.

    ``options``: those of ``rank_plans`` (``seed``, ``epoch``, ``shuffle``, ``world_size``, ``remainder``).
    ``episode_ids[i]`` (default ``i``) is the dataset episode index of the episode of ``lengths[i]``.
    "drop" leaves out the sequence's last ``N % W`` frames, "repeat" wraps around to its start.
    """
    check_int("rank", rank)
    return rank_plans(lengths, episode_ids, ranks=[rank], **options)[0]


def rank_plans(
    lengths: Sequence[int],
    episode_ids: Sequence[int] | None = None,
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    world_size: int,
    ranks: Sequence[int] | None = None,
    remainder: Remainder = "drop",
) -> list[RankPlan]:
    """``rank_plan`` of each of ``ranks`` (default: all), sharing one episode permutation."""
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    ids = np.arange(lens.size, dtype=np.int64) if episode_ids is None else np.asarray(episode_ids, np.int64)
    if ids.shape != lens.shape:
        raise ConfigError(f"got {lens.size} episode lengths but {ids.size} episode ids")
    if lens.size and lens.min() < 0:
        raise ConfigError(
            f"episode lengths must be >= 0, got {int(lens.min())} for episode {ids[lens.argmin()]}"
        )
    if ids.size and (ids.min() < 0 or not _distinct(ids)):
        raise ConfigError(f"episode ids must be distinct and >= 0, got {ids.tolist()[:20]}...")
    total = int(lens.sum())
    per_rank = rank_frame_count(total, world_size=world_size, remainder=remainder)
    ranks = range(world_size) if ranks is None else ranks
    for rank in ranks:
        check_int("rank", rank)
        if rank >= world_size:
            raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")
    order = episode_order(lens.size, seed=seed, epoch=epoch, shuffle=shuffle)
    o_ids, o_lens = ids[order], lens[order]
    ends = np.cumsum(o_lens)
    begins, zero = ends - o_lens, np.zeros_like(o_lens)
    excess = world_size * per_rank - total
    plans = []
    for rank in ranks:
        lo, hi = rank * per_rank, (rank + 1) * per_rank
        head = cut(o_ids, zero, begins, ends, lo, min(hi, total))  # then the wrapped part ("repeat"), < total
        wrap = cut(o_ids, zero, begins, ends, max(lo, total) - total, hi - total)
        segments = head if not len(wrap) else _concat(head, wrap)
        plans.append(RankPlan(segments, per_rank, total, dropped=max(-excess, 0), repeated=max(excess, 0)))
    return plans


def _distinct(ids: np.ndarray) -> bool:
    """Ids are distinct: strictly increasing (the table's order, checked in O(n)), else by sorting."""
    if ids.size < 2 or bool((ids[1:] > ids[:-1]).all()):
        return True
    return bool(np.unique(ids).size == ids.size)


def _concat(a: SegmentArray, b: SegmentArray) -> SegmentArray:
    return SegmentArray(*(np.concatenate([x, y]) for x, y in zip(a.columns(), b.columns())))


def worker_segments(
    rank_segments: Sequence[Segment] | SegmentArray, *, num_workers: int, worker: int
) -> SegmentArray:
    """Worker ``worker``'s contiguous part of the rank's frames; parts differ by at most one frame (maybe 0).

    Returns a ``SegmentArray`` (a read-only sequence of ``Segment``)."""
    segs = SegmentArray.of(rank_segments)
    ends = np.cumsum(segs.lengths)
    lo, hi = _worker_range(int(ends[-1]) if len(ends) else 0, num_workers, worker)
    return cut(segs.episode, segs.start, ends - segs.lengths, ends, lo, hi)
