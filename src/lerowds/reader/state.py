"""The resume state a trainer saves: a few integers plus the configuration that must match on load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lerowds.errors import OrderVersionError, ResumeMismatchError
from lerowds.reader.pool import ORDER_VERSION
from lerowds.reader.resume import resume_plan

# Fields that change which frames a consumer owns or their order: a resume across a change is inexact.
MUST_MATCH = (
    "seed",
    "world_size",
    "num_workers",
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

    def __post_init__(self) -> None:
        for name in ("epoch", "batches_consumed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ResumeMismatchError(f"resume state: {name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ResumeMismatchError(
                f"resume state: batch_size must be an integer >= 1, got {self.batch_size!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches_consumed": self.batches_consumed,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "config": dict(self.config),
        }

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
        )

    def check_config(self, current: Mapping[str, Any]) -> None:
        """Raise naming the first field that differs between the saved and the current configuration."""
        check_order_version(self.config)
        for name in MUST_MATCH:
            if name not in self.config or name not in current:
                continue  # not recorded on one side (e.g. a trainer's plain counters)
            saved, now = self.config[name], current[name]
            if name == "num_workers" and (saved is None or now is None):
                continue  # known only inside DataLoader workers; checked there
            if saved != now:
                hint = (
                    " (elastic resume to another world size or worker count is not supported: finish the "
                    "epoch with the old setup, or start the next epoch with the new one)"
                    if name in ("world_size", "num_workers")
                    else ""
                )
                raise ResumeMismatchError(
                    f"resume state was saved with {name}={saved!r} but this run has {name}={now!r}{hint}"
                )


@dataclass(frozen=True, slots=True)
class WorkerStep:
    """What one physical DataLoader worker does in the resumed epoch."""

    role: int  # the original worker whose stream it continues
    skip: int  # samples of that stream already consumed
    epoch_complete: bool


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
