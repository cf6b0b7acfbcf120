"""The resume state a trainer saves: a few integers plus the configuration that must match on load."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerowds.checks import check_int
from lerowds.errors import ConfigError, OrderVersionError, ResumeMismatchError
from lerowds.reader.env import Consumer
from lerowds.reader.order.pool import ORDER_VERSION
from lerowds.reader.resume.batches import resume_plan
from lerowds.reader.resume.elastic import ElasticEpoch, Leg, Remainder, Topology

logger = logging.getLogger(__name__)

# Compared first, in this order, so the message names the field that decides (kind, then the order's inputs).
# Every other recorded field must match too, a field recorded on one side only included; world_size and
# num_workers may change: the epoch continues elastically (elastic.py).
FIRST = (
    "kind",
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
TOPOLOGY = ("world_size", "num_workers")
_ABSENT = "(not recorded)"
# Settings added after states were first saved, with the value every earlier state was saved under: a saved
# config that lacks one was saved with this value (e.g. the per-sample order, before run mode existed).
ADDED_LATER = {"run_length": 1, "shuffle_buffer": 0}
# Earlier order versions whose sample stream is the current version's under one setting: version -> (setting,
# value). Version 3 changed run mode's order only (a segment's runs in ascending order): a version-2 state saved
# with run_length=1 (or before run mode) resumes exactly as before.
SAME_ORDER_WHEN = {2: ("run_length", 1)}


def _kind(config: Mapping[str, Any]) -> Any:
    """What stream a configuration belongs to: its ``kind``, or for a state saved before ``kind`` was
    recorded, what its fields say (a mix records its sources, a dataset its fingerprint)."""
    if "kind" in config:
        return config["kind"]
    return "mix" if "mix_sources" in config else "dataset" if "dataset" in config else None


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def _belongs_to(config: Mapping[str, Any]) -> str:
    if _kind(config) == "mix":
        return f"a mix of sources {config.get('mix_sources')!r}"
    if "dataset" in config:
        return f"dataset {config['dataset']!r}"
    return "a stream"


def check_config(saved: Mapping[str, Any], now: Mapping[str, Any]) -> None:
    """Refuse ``saved`` (a state's ``config``) unless every field but the topology equals ``now``'s, nested
    per-source fields of a mix included; the message names the first field that differs and both values. An
    empty ``saved`` is a trainer's plain counters: nothing recorded to compare."""
    if not saved:
        return
    version = check_order_version(saved)
    a, b = _flat(saved), _flat(now)
    if version != ORDER_VERSION:  # an earlier version whose order is this one's (SAME_ORDER_WHEN)
        old = [k for k, v in a.items() if k.rpartition(".")[2] == "order_version" and v == version]
        a.update(dict.fromkeys(old, ORDER_VERSION))
    for key in b.keys() - a.keys():
        if key.rpartition(".")[2] in ADDED_LATER:
            a[key] = ADDED_LATER[key.rpartition(".")[2]]
    a["kind"], b["kind"] = _kind(saved), _kind(now)
    if a["kind"] != b["kind"]:
        raise ResumeMismatchError(
            f"resume state was saved with kind={a['kind']!r} ({_belongs_to(saved)}) but this run has "
            f"kind={b['kind']!r} ({_belongs_to(now)}): a state loads only into the kind of stream and the "
            "sources it was saved from"
        )
    keys = [k for k in FIRST if k in a or k in b] + list(b) + [k for k in a if k not in b]
    for key in dict.fromkeys(keys):
        if key in TOPOLOGY:
            continue
        if (key in a) != (key in b) or a[key] != b[key]:
            was, has = (repr(d[key]) if key in d else _ABSENT for d in (a, b))
            raise ResumeMismatchError(f"resume state was saved with {key}={was} but this run has {key}={has}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def check_order_version(config: Mapping[str, Any]) -> Any:
    """Refuse a state saved under another order version (a saved ``config`` without one is version 1), unless
    that version's order is this one's for the settings it was saved with (``SAME_ORDER_WHEN``); return the
    saved version."""
    if not config:
        return ORDER_VERSION  # a trainer's plain counters: nothing recorded to compare
    saved = config.get("order_version", 1)
    if saved == ORDER_VERSION:
        return saved
    restart = (
        "Finish this epoch with the lerowds version that saved it, or start the next epoch (set "
        "batches_consumed to 0 and epoch to the next one)"
    )
    same = SAME_ORDER_WHEN.get(saved) if isinstance(saved, int) else None
    if same is not None:
        name, value = same
        values = {k: v for k, v in _flat(config).items() if k.rpartition(".")[2] == name} or {
            name: ADDED_LATER[name]
        }
        bad = {k: v for k, v in values.items() if v != value}
        if not bad:
            return saved
        key, got = next(iter(bad.items()))
        raise OrderVersionError(
            f"resume state was saved under sample-order version {saved!r} with {key}={got!r}, but this lerowds "
            f"samples in order version {ORDER_VERSION}, whose run mode emits an episode's runs in ascending "
            f"order (see docs/ORDER.md): resuming would not continue the saved run's sample stream "
            f"({name}={value!r} states still resume). {restart}"
        )
    raise OrderVersionError(
        f"resume state was saved under sample-order version {saved!r} but this lerowds samples in order "
        f"version {ORDER_VERSION} (see docs/ORDER.md): resuming would not continue the saved run's "
        f"sample stream. {restart}"
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
        for name, low in (("epoch", 0), ("batches_consumed", 0), ("batch_size", 1)):
            check_int(f"resume state's {name}", getattr(self, name), low)
            object.__setattr__(self, name, int(getattr(self, name)))  # a NumPy integer becomes an int
        if not isinstance(self.drop_last, (bool, np.bool_)):
            raise ConfigError(f"resume state's drop_last must be True or False, got {self.drop_last!r}")
        object.__setattr__(self, "drop_last", bool(self.drop_last))
        if not isinstance(self.config, Mapping):
            raise ConfigError(
                f"resume state's config must be a dict (what state_dict() saved), got {_short(self.config)}"
            )
        for name, low in (("world_size", 1), ("num_workers", 0)):
            if self.config.get(name) is not None:
                check_int(f"resume state's config {name}", self.config[name], low)

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "batches_consumed": self.batches_consumed,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "config": dict(self.config),
        } | ({"elastic": [leg.to_dict() for leg in self.legs]} if self.legs else {})

    @classmethod
    def from_dict(cls, state: Any) -> ResumeState:
        """The state ``state_dict()`` returned (or a trainer's bare counters); a malformed one is a
        ``ConfigError`` naming the field, the bad value and what is expected."""
        if not isinstance(state, Mapping):
            raise ConfigError(
                'a resume state must be a dict like {"epoch": e, "batches_consumed": n, "batch_size": b} '
                f"(what state_dict() returns), got {_short(state)} ({type(state).__name__})"
            )
        missing = [k for k in ("batches_consumed", "batch_size") if k not in state]
        if missing:
            raise ResumeMismatchError(
                f"resume state lacks {missing}; save at least "
                '{"epoch": e, "batches_consumed": n, "batch_size": b}'
            )
        legs = state.get("elastic") or ()
        if not isinstance(legs, (list, tuple)):
            raise ConfigError(
                f"resume state's elastic must be a list of legs (what state_dict() saved), got {_short(legs)}"
            )
        config = state.get("config")
        return cls(
            epoch=state.get("epoch", 0),
            batches_consumed=state["batches_consumed"],
            batch_size=state["batch_size"],
            drop_last=state.get("drop_last", False),
            config={} if config is None else config,
            legs=tuple(Leg.from_dict(d, f"resume state's elastic leg {i}") for i, d in enumerate(legs)),
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
        now = Topology(world, workers, self.batch_size, self.drop_last)
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
    consumer: Consumer,
    *,
    first_counts: Callable[[int, int], Sequence[int]],
    remainder: Remainder,
) -> ElasticEpoch | None:
    """The elastic continuation of ``state``'s epoch on ``consumer``'s world size and worker (or thread)
    count; None when the plain exact resume applies (one leg, saved on this world size and worker count, or
    no topology recorded). Worker 0 logs what is left."""
    world_size, num_workers = consumer.world_size, consumer.num_workers
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
    elastic = ElasticEpoch(
        first_counts, legs, world_size=world_size, num_workers=num_workers, remainder=remainder
    )
    if consumer.worker == 0:
        logger.info(
            "epoch %d resumed on %d rank(s) x %d worker(s): %s",
            state.epoch,
            world_size,
            num_workers,
            elastic.describe(),
        )
    return elastic
