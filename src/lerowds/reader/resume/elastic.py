"""Elastic resume: continue an epoch exactly on another world size, worker count or batch size.

An epoch runs in **legs**: a leg is a stretch of training under one topology (world size ``W``, DataLoader
workers ``K``, batch size ``B``, ``drop_last``). In every leg each consumer ``(rank, worker)`` yields one
**stream**, and every rank's workers yield the same counts (so every rank yields the same number of
batches). Leg 0's streams are the fresh epoch's (``order.rank_plan`` → ``worker_segments`` → pool order).
A leg ends after the trainer consumed ``n`` of its batches; which samples each stream gave is
``resume.resume_plan`` of the DataLoader's round-robin: integers only.

The next leg's streams are **slices** of the previous leg's streams, a pure function of integers:

* same ``(W, K)`` (only ``B`` or ``drop_last`` changed, or nothing): consumer ``(r, p)`` continues stream
  ``(r, role)`` after the samples it gave, as ``resume_plan`` says — with the same ``B`` this replays the
  uninterrupted run batch for batch.
* otherwise the **cut**: the samples not yet consumed, in canonical order (rank-major, then worker; each
  stream's rest in its own order), are cut into ``W'`` equal contiguous rank shares and each of those into
  ``K'`` contiguous worker shares (sizes differ by at most one, like ``worker_segments``). The remainder
  rule holds for the rest of the epoch: "drop" leaves out the sequence's last ``R % W'`` samples; "repeat"
  gives the first ``W' * ceil(R / W') - R`` samples a second time (positions wrap around).

So over all ranks the rest of the epoch is every not-yet-consumed sample once (modulo that remainder), in
the order the old streams would have emitted it. A continuation stream opens the old streams it slices
one after another (replaying each to its start on integers, as an exact resume does) and closes each at
the slice's end. Samples a DataLoader had prefetched but the trainer never took are not consumed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Literal, TypeVar

import numpy as np

from lerowds.checks import check_bool, check_choice, check_int
from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.resume.batches import resume_plan, worker_batch_counts

logger = logging.getLogger(__name__)
T = TypeVar("T")
Remainder = Literal["drop", "repeat"]


@dataclass(frozen=True, slots=True)
class Topology:
    """What a leg ran under: ranks, DataLoader workers (0 and 1 are the same single stream), batching."""

    world_size: int
    num_workers: int
    batch_size: int = 1
    drop_last: bool = False

    def __post_init__(self) -> None:
        for name, low in (("world_size", 1), ("num_workers", 0), ("batch_size", 1)):
            check_int(f"topology: {name}", getattr(self, name), low)

    @property
    def streams(self) -> int:
        """Streams per rank: ``num_workers``, or 1 for ``num_workers=0``."""
        return max(int(self.num_workers), 1)

    @property
    def split(self) -> tuple[int, int]:
        """``(world_size, streams)``: what decides the streams (batching only decides what is consumed)."""
        return int(self.world_size), self.streams

    @property
    def key(self) -> tuple[int, int, int, bool]:
        """What must be equal for two runs to batch one epoch identically."""
        return int(self.world_size), self.streams, int(self.batch_size), bool(self.drop_last)


@dataclass(frozen=True, slots=True)
class Leg:
    """A finished leg: its topology and the batches the trainer consumed in it."""

    topology: Topology
    batches_consumed: int

    def __post_init__(self) -> None:
        check_int("leg: batches_consumed", self.batches_consumed, 0)

    def to_dict(self) -> dict[str, Any]:
        t = self.topology
        return {
            "world_size": t.world_size,
            "num_workers": t.num_workers,
            "batch_size": t.batch_size,
            "drop_last": t.drop_last,
            "batches_consumed": self.batches_consumed,
        }

    @classmethod
    def from_dict(cls, d: Any, what: str = "resume state's elastic leg") -> Leg:
        lows = {"world_size": 1, "num_workers": 0, "batch_size": 1, "batches_consumed": 0}
        if not isinstance(d, Mapping) or not lows.keys() <= set(d):
            raise ResumeMismatchError(f"{what} needs {', '.join(lows)}; got {d!r}")
        for name, low in lows.items():
            check_int(f"{what} {name}", d[name], low)
        drop_last = check_bool(f"{what} drop_last", d.get("drop_last", False))
        return cls(
            Topology(d["world_size"], d["num_workers"], d["batch_size"], drop_last), d["batches_consumed"]
        )


@dataclass(frozen=True, slots=True)
class Slice:
    """Samples ``[start, stop)`` of stream ``(rank, worker)`` of leg ``leg``."""

    leg: int
    rank: int
    worker: int
    start: int
    stop: int


def consumed_counts(counts: Sequence[int], topology: Topology, batches_consumed: int) -> list[int]:
    """Samples each worker's stream gave the trainer after ``batches_consumed`` batches (every rank alike)."""
    plan = resume_plan(
        counts,
        batch_size=topology.batch_size,
        batches_consumed=batches_consumed,
        drop_last=topology.drop_last,
    )
    if plan.epoch_complete:
        batches = worker_batch_counts(counts, batch_size=topology.batch_size, drop_last=topology.drop_last)
        return [min(b * topology.batch_size, c) for b, c in zip(batches, counts)]
    out = [0] * len(counts)
    for source, skip in zip(plan.sources, plan.skips):
        out[source] = skip
    return out


def share(total: int, parts: int, part: int) -> tuple[int, int]:
    """Part ``part`` of ``total`` items cut in ``parts`` contiguous pieces differing by at most one."""
    q, r = divmod(total, parts)
    lo = part * q + min(part, r)
    return lo, lo + q + (part < r)


def per_rank(remaining: int, world_size: int, remainder: Remainder) -> int:
    """Samples each rank yields of ``remaining``: ``R // W'`` ("drop") or ``ceil(R / W')`` ("repeat")."""
    check_choice("remainder", remainder, ("drop", "repeat"))
    return remaining // world_size if remainder == "drop" else -(-remaining // world_size)


@dataclass(frozen=True, slots=True)
class Transition:
    """How leg ``leg``'s streams slice leg ``leg - 1``'s: per-worker counts and each consumer's slices."""

    leg: int
    counts: tuple[int, ...]  # samples of each worker's stream in this leg (the same on every rank)
    remaining: int  # samples of the epoch not consumed when this leg began (over all ranks)
    dropped: int
    repeated: int
    cut: bool  # the topology's (W, K) changed: a cut; else every consumer continues one old stream
    _slices: Callable[[int, int], tuple[Slice, ...]]

    def slices(self, rank: int, worker: int) -> tuple[Slice, ...]:
        return self._slices(rank, worker)


def transition(
    leg: int, counts: Sequence[int], ended: Leg, world_size: int, num_workers: int, remainder: Remainder
) -> Transition:
    """Leg ``leg`` under ``(world_size, num_workers)`` after leg ``leg - 1`` (streams of ``counts`` per worker)
    ``ended`` with its ``batches_consumed``. A pure function of these integers."""
    old = ended.topology
    if len(counts) != old.streams:
        raise ConfigError(f"leg {leg - 1} has {old.streams} streams per rank but {len(counts)} counts")
    consumed = consumed_counts(counts, old, ended.batches_consumed)
    rest = [c - d for c, d in zip(counts, consumed)]
    remaining = old.world_size * sum(rest)
    streams = max(int(num_workers), 1)
    plan = resume_plan(
        counts, batch_size=old.batch_size, batches_consumed=ended.batches_consumed, drop_last=old.drop_last
    )
    if plan.epoch_complete or remaining == 0:  # drop_last tails are not continued: the epoch is over
        return Transition(leg, (0,) * streams, remaining, 0, 0, False, lambda r, w: ())
    if (world_size, streams) == old.split:
        roles = [plan.for_worker(p) for p in range(streams)]

        def continued(rank: int, worker: int) -> tuple[Slice, ...]:
            role, skip = roles[worker]
            return (Slice(leg - 1, rank, role, skip, counts[role]),) if skip < counts[role] else ()

        new_counts = tuple(counts[role] - skip for role, skip in roles)
        return Transition(leg, new_counts, remaining, 0, 0, False, continued)

    each = per_rank(remaining, world_size, remainder)
    new_counts = tuple(b - a for a, b in (share(each, streams, w) for w in range(streams)))
    excess = world_size * each - remaining
    ends = np.cumsum(np.asarray(rest, dtype=np.int64))
    per_old_rank = int(ends[-1])

    def locate(lo: int, hi: int) -> Iterator[Slice]:
        """The slices of canonical positions ``[lo, hi)`` (``hi <= remaining``)."""
        while lo < hi:
            rank, offset = divmod(lo, per_old_rank)
            w = int(np.searchsorted(ends, offset, side="right"))  # first stream ending after offset
            begin = int(ends[w]) - rest[w]
            take = min(hi - lo, int(ends[w]) - offset)
            start = consumed[w] + offset - begin
            yield Slice(leg - 1, rank, w, start, start + take)
            lo += take

    def cut(rank: int, worker: int) -> tuple[Slice, ...]:
        if not 0 <= rank < world_size or not 0 <= worker < streams:
            raise ConfigError(
                f"consumer ({rank}, {worker}) is outside {world_size} ranks x {streams} workers"
            )
        a, b = share(each, streams, worker)
        lo, hi = rank * each + a, rank * each + b
        out: list[Slice] = []
        while lo < hi:  # "repeat" wraps around to the sequence's start (several times if R < W')
            base = lo - lo % remaining
            stop = min(hi, base + remaining)
            out += locate(lo - base, stop - base)
            lo = stop
        return tuple(out)

    return Transition(leg, new_counts, remaining, max(-excess, 0), max(excess, 0), True, cut)


class ElasticEpoch:
    """All legs of one epoch: ``first_counts(W, K)`` gives leg 0's per-worker counts; ``legs`` the finished
    legs (the last one is the one the saved counters end in); the run now has ``world_size`` × ``num_workers``."""

    def __init__(
        self,
        first_counts: Callable[[int, int], Sequence[int]],
        legs: Sequence[Leg],
        *,
        world_size: int,
        num_workers: int,
        remainder: Remainder,
    ) -> None:
        if not legs:
            raise ConfigError("an elastic epoch needs at least one finished leg")
        self.legs = tuple(legs)
        counts = [int(c) for c in first_counts(*legs[0].topology.split)]
        self.transitions: list[Transition] = []
        nexts = [leg.topology.split for leg in legs[1:]] + [(world_size, max(num_workers, 1))]
        for i, (ended, (w, k)) in enumerate(zip(legs, nexts)):
            total = sum(
                worker_batch_counts(
                    counts, batch_size=ended.topology.batch_size, drop_last=ended.topology.drop_last
                )
            )
            if ended.batches_consumed > total:
                raise ResumeMismatchError(
                    f"resume state: batches_consumed={ended.batches_consumed} but this epoch has {total} batches "
                    f"in leg {i} ({ended.topology})"
                )
            if i + 1 < len(legs) and ended.batches_consumed == total:
                raise ResumeMismatchError(f"resume state: leg {i} finished the epoch but more legs follow")
            step = transition(i + 1, counts, ended, w, k, remainder)
            self.transitions.append(step)
            counts = list(step.counts)

    @property
    def current(self) -> Transition:
        """The leg this run continues with."""
        return self.transitions[-1]

    @property
    def complete(self) -> bool:
        """Nothing is left for this run: start the next epoch."""
        return sum(self.current.counts) == 0

    def stream(
        self, rank: int, worker: int, open_first: Callable[[int, int, int], Iterator[T]]
    ) -> Iterator[T]:
        """Consumer ``(rank, worker)``'s samples in this run; ``open_first(rank, worker, skip)`` opens leg 0's
        stream ``(rank, worker)`` after its first ``skip`` samples."""
        return self._chain(self.current.slices(rank, worker), 0, open_first)

    def _open(
        self, leg: int, rank: int, worker: int, skip: int, open_first: Callable[..., Iterator[T]]
    ) -> Iterator[T]:
        if leg == 0:
            return open_first(rank, worker, skip)
        return self._chain(self.transitions[leg - 1].slices(rank, worker), skip, open_first)

    def _chain(
        self, slices: Sequence[Slice], skip: int, open_first: Callable[..., Iterator[T]]
    ) -> Iterator[T]:
        for s in slices:
            size = s.stop - s.start
            if skip >= size:
                skip -= size
                continue
            it = self._open(s.leg, s.rank, s.worker, s.start + skip, open_first)
            want, got = size - skip, 0
            try:
                for item in islice(it, want):
                    got += 1
                    yield item
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()  # now, not at garbage collection: the store is shared by the next slice
            if got < want:
                raise ConfigError(
                    f"elastic resume: stream (rank {s.rank}, worker {s.worker}) of leg {s.leg} ended after "
                    f"{s.start + skip + got} samples, expected {s.stop}"
                )
            skip = 0

    def describe(self) -> str:
        """One log line: what was left and how the remainder rule applied."""
        t, now = self.current, self.legs[-1].topology
        rule = f", dropped {t.dropped}" if t.dropped else f", repeated {t.repeated}" if t.repeated else ""
        return (
            f"{t.remaining} samples of the epoch left after {sum(leg.batches_consumed for leg in self.legs)} "
            f"batches (saved under {now.world_size} rank(s) x {now.num_workers} worker(s), batch size "
            f"{now.batch_size}){rule}: each rank yields {sum(t.counts)}"
        )
