"""The resume state a trainer saves: a few integers plus the configuration that must match on load."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lerowds.checks import check_int
from lerowds.errors import ConfigError, OrderVersionError, ResumeMismatchError
from lerowds.reader.env import Consumer
from lerowds.reader.order.pool import ORDER_VERSION
from lerowds.reader.resume.batches import resume_plan
from lerowds.reader.resume.elastic import ElasticEpoch, Leg, Remainder, Topology

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Fields that change which frames a consumer owns or their order: a resume across a change is inexact.
# world_size and num_workers may change: the epoch continues elastically (elastic.py).
MUST_MATCH = (
    "seed",
    "episode_pool_size",
    "pool_byte_budget",
    "shuffle",
    "remainder",
    "dataset",
    "num_frames",
    "episodes",
    "order_version",
)


def check_order_version(config: Mapping[str, Any]) -> None:
    """Refuse a state saved under another order version (a saved ``config`` without one is version 1)."""
    if not config:
        return  # a trainer's plain counters: nothing recorded to compare
    saved = config.get("order_version", 1)
    if saved != ORDER_VERSION:
        raise OrderVersionError(
            f"resume state was saved under sample-order version {saved!r} but this lerowds samples in order "
            f"version {ORDER_VERSION} (see docs/ORDER.md): resuming would not continue the saved run's "
            "sample stream. Finish this epoch with the lerowds version that saved it, or start the next "
            "epoch (set batches_consumed to 0 and epoch to the next one)"
        )


@dataclass(frozen=True, slots=True)
class ResumeState:
    """``{"epoch", "batches_consumed", "batch_size"}`` (what a trainer counts) and optional ``config``."""

    epoch: int
    batches_consumed: int
    batch_size: int
    drop_last: bool = False
    config: Mapping[str, Any] = field(default_factory=dict)
    legs: tuple[Leg, ...] = ()  # earlier legs of this epoch under other topologies (elastic resume)

    def __post_init__(self) -> None:
        for name in ("epoch", "batches_consumed"):
            check_int(f"resume state: {name}", getattr(self, name), 0, error=ResumeMismatchError)
        check_int("resume state: batch_size", self.batch_size, 1, error=ResumeMismatchError)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches_consumed": self.batches_consumed,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "config": dict(self.config),
        } | ({"elastic": [leg.to_dict() for leg in self.legs]} if self.legs else {})

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ResumeState:
        missing = [k for k in ("batches_consumed", "batch_size") if k not in state]
        if missing:
            raise ResumeMismatchError(
                f"resume state lacks {missing}; save at least "
                '{"epoch": e, "batches_consumed": n, "batch_size": b}'
            )
        return cls(
            epoch=int(state.get("epoch", 0)),
            batches_consumed=int(state["batches_consumed"]),
            batch_size=int(state["batch_size"]),
            drop_last=bool(state.get("drop_last", False)),
            config=dict(state.get("config") or {}),
            legs=tuple(Leg.from_dict(d) for d in state.get("elastic") or ()),
        )

    def check_config(self, current: Mapping[str, Any]) -> None:
        """Raise naming the first field that differs between the saved and the current configuration."""
        check_order_version(self.config)
        for name in MUST_MATCH:
            if name not in self.config or name not in current:
                continue  # not recorded on one side (e.g. a trainer's plain counters)
            saved, now = self.config[name], current[name]
            if saved != now:
                raise ResumeMismatchError(
                    f"resume state was saved with {name}={saved!r} but this run has {name}={now!r}"
                )

    def all_legs(self) -> tuple[Leg, ...] | None:
        """Every leg of the epoch, the last one ending at ``batches_consumed``; None when the state does not
        record its world size and worker count (then only a resume on the same topology is possible)."""
        world, workers = self.config.get("world_size"), self.config.get("num_workers")
        if world is None or workers is None:
            return None
        earlier = sum(leg.batches_consumed for leg in self.legs)
        if self.batches_consumed < earlier:
            raise ResumeMismatchError(
                f"resume state: batches_consumed={self.batches_consumed} is less than the {earlier} batches of "
                "its earlier legs; batches_consumed counts every batch of the epoch, across resumes"
            )
        now = Topology(int(world), int(workers), self.batch_size, self.drop_last)
        return self.legs + (Leg(now, self.batches_consumed - earlier),)

    def legs_for_save(
        self,
        *,
        epoch: int,
        world_size: int,
        num_workers: int | None,
        batch_size: int,
        drop_last: bool,
        batches_consumed: int,
    ) -> tuple[Leg, ...]:
        """The earlier legs a state saved now (after this state was loaded) records."""
        if epoch != self.epoch:
            return ()
        legs = self.all_legs()
        if legs is None:  # resumed as the same topology (the only way without a recorded one)
            if (batch_size, drop_last) == (self.batch_size, self.drop_last):
                return ()
            if num_workers is None:
                raise ConfigError(
                    f"pass num_workers= to state_dict: this run resumed a state saved with batch_size="
                    f"{self.batch_size} and now saves batch_size={batch_size}; the earlier batches are "
                    "recorded with the DataLoader's worker count"
                )
            before = Topology(world_size, num_workers, self.batch_size, self.drop_last)
            return (Leg(before, self.batches_consumed),)
        if num_workers is None:
            raise ConfigError(
                "pass num_workers= (the DataLoader's) to state_dict: this run resumed an epoch saved with "
                f"num_workers={self.config.get('num_workers')!r}, and an elastic resume needs both"
            )
        now = Topology(world_size, num_workers, batch_size, drop_last)
        if now.key == legs[-1].topology.key:
            return self.legs  # the same leg goes on
        if batches_consumed < self.batches_consumed:
            raise ConfigError(
                f"batches_consumed={batches_consumed} but this run resumed at {self.batches_consumed}: "
                "batches_consumed counts every batch of the epoch, across resumes"
            )
        return legs


@dataclass(frozen=True, slots=True)
class WorkerStep:
    """What one physical DataLoader worker does in the resumed epoch."""

    role: int  # the original worker whose stream it continues
    skip: int  # samples of that stream already consumed
    epoch_complete: bool


def state_to_save(
    resume: ResumeState | None,
    *,
    epoch: int,
    world_size: int,
    config: Mapping[str, Any],
    batches_consumed: int,
    batch_size: int,
    num_workers: int | None,
    drop_last: bool,
) -> dict[str, Any]:
    """A dataset's or a mix's ``state_dict``: the trainer's counters, the configuration, and the earlier
    legs of the epoch when it was resumed (``resume``, the state loaded into it, if any)."""
    legs = (
        ()
        if resume is None
        else resume.legs_for_save(
            epoch=epoch,
            world_size=world_size,
            num_workers=num_workers,
            batch_size=batch_size,
            drop_last=drop_last,
            batches_consumed=batches_consumed,
        )
    )
    state = ResumeState(
        epoch=epoch,
        batches_consumed=batches_consumed,
        batch_size=batch_size,
        drop_last=drop_last,
        config=config,
        legs=legs,
    )
    return state.to_dict()


def plan_for_worker(state: ResumeState, worker_counts: Sequence[int], worker: int) -> WorkerStep:
    """The resumed epoch's step for physical worker ``worker`` given every worker's sample count."""
    saved = state.config.get("num_workers")
    actual = len(worker_counts)  # num_workers=0 and 1 are the same single stream
    if saved is not None and max(int(saved), 1) != actual:
        raise ResumeMismatchError(
            f"resume state was saved with num_workers={saved!r} but this DataLoader has "
            f"num_workers={actual if actual > 1 else '0 or 1'}"
        )
    plan = resume_plan(
        worker_counts,
        batch_size=state.batch_size,
        batches_consumed=state.batches_consumed,
        drop_last=state.drop_last,
    )
    role, skip = plan.for_worker(worker)
    return WorkerStep(role, skip, plan.epoch_complete)


def elastic_epoch(
    state: ResumeState,
    *,
    world_size: int,
    num_workers: int,
    first_counts: Callable[[int, int], Sequence[int]],
    remainder: Remainder,
) -> ElasticEpoch | None:
    """The elastic continuation of ``state``'s epoch on ``world_size`` x ``num_workers``; None when the plain
    exact resume applies (one leg, saved on this world size and worker count, or no topology recorded)."""
    legs = state.all_legs()
    if legs is None:
        saved = state.config.get("world_size")
        if saved is not None and saved != world_size:
            raise ResumeMismatchError(
                f"resume state was saved with world_size={saved!r} but this run has world_size={world_size}; "
                "an elastic resume also needs the saved num_workers: pass num_workers= to state_dict"
            )
        return None
    if len(legs) == 1 and legs[0].topology.split == (world_size, max(num_workers, 1)):
        return None
    return ElasticEpoch(
        first_counts, legs, world_size=world_size, num_workers=num_workers, remainder=remainder
    )


def resume_elastically(
    state: ResumeState,
    consumer: Consumer,
    *,
    first_counts: Callable[[int, int], Sequence[int]],
    remainder: Remainder,
    open_stream: Callable[[int, Consumer, int], Iterator[T]],
    advance: Callable[[int], int],
) -> Iterator[T] | None:
    """``consumer``'s samples for the rest of ``state``'s epoch when it resumes elastically, else None.

    ``open_stream(epoch, consumer, skip)`` opens a consumer's stream of a fresh epoch after ``skip`` samples;
    ``advance(epoch)`` moves the epoch clock past a finished epoch and returns the next one.
    """
    elastic = elastic_epoch(
        state,
        world_size=consumer.world_size,
        num_workers=consumer.num_workers,
        first_counts=first_counts,
        remainder=remainder,
    )
    if elastic is None:
        return None
    if consumer.worker == 0:
        logger.info(
            "epoch %d resumed on %d rank(s) x %d worker(s): %s",
            state.epoch,
            consumer.world_size,
            consumer.num_workers,
            elastic.describe(),
        )
    if elastic.complete:
        return open_stream(advance(state.epoch), consumer, 0)
    first = elastic.legs[0].topology

    def open_first(rank: int, worker: int, skip: int) -> Iterator[T]:
        return open_stream(state.epoch, Consumer(rank, first.world_size, worker, first.streams), skip)

    return elastic.stream(consumer.rank, consumer.worker, open_first)
