"""Resume state of a conversion, kept in ``OUT/.lerowds/``: the plan and one done-record per finished shard.

``plan.json`` holds what the conversion was asked to do (source, options, shard plan) and everything the final
index needs, so ``--finalize`` works from the output directory alone. ``done/shard-NNNNNN.json`` is written
(atomically) right after its shard was renamed into place: size, sha256 and where every episode's members lie.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerowds.convert.lock import LOCK_NAME
from lerowds.convert.plan import PlannedShard, plan_from_json
from lerowds.errors import ConversionError, FormatError
from lerowds.format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_FILE,
    DatasetIndex,
    EpisodeLocation,
    MemberLocation,
    atomic_write_bytes,
    shard_name,
)

log = logging.getLogger(__name__)

STATE_DIR = ".lerowds"
PLAN_FILE = f"{STATE_DIR}/plan.json"
DONE_DIR = f"{STATE_DIR}/done"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


# ----------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True, slots=True)
class ConversionPlan:
    """What a conversion produces: its source, the options that change the output, and the shard plan."""

    # repo_id, revision, codebase_version, robot_type, fps, total_episodes, total_frames
    source: dict[str, Any]
    options: dict[str, Any]  # episodes (the --episodes text), shard_size, reencode
    dataset: dict[str, Any]  # features, tasks, stats: what the index copies from the source
    shards: tuple[PlannedShard, ...]

    def __post_init__(self) -> None:
        if [s.shard for s in self.shards] != list(range(len(self.shards))):
            raise ValueError(f"shards must be numbered 0..n-1, got {[s.shard for s in self.shards]}")

    @property
    def repo_id(self) -> str:
        return str(self.source["repo_id"])

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(_canonical(self._body())).hexdigest()[:16]

    def _body(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "options": self.options,
            "dataset": self.dataset,
            "shards": [s.to_json() for s in self.shards],
        }

    def to_bytes(self) -> bytes:
        d = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            **self._body(),
        }
        return json.dumps(d, indent=1, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> ConversionPlan:
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT_NAME or d.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {d.get('format')!r} version {d.get('version')!r}")
            return cls(d["source"], d["options"], d["dataset"], plan_from_json(d["shards"]))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConversionError(
                f"{where}: unreadable conversion plan ({e}); delete the output directory and convert again"
            ) from e

    def differences(self, other: ConversionPlan) -> list[str]:
        """What differs between two plans, in words (both values each)."""
        diffs = [
            f"{part} {key}: {a.get(key)!r} here, {b.get(key)!r} requested"
            for part, a, b in (("source", self.source, other.source), ("option", self.options, other.options))
            for key in sorted(set(a) | set(b))
            if a.get(key) != b.get(key)
        ]
        if not diffs and self.dataset != other.dataset:
            diffs.append("the source dataset's metadata (features, tasks or stats) changed")
        if not diffs and self.shards != other.shards:
            diffs.append("the shard plan differs (the source's episodes or file sizes changed)")
        return diffs


def plan_path(output: Path) -> Path:
    return output / PLAN_FILE


def load_plan(output: Path) -> ConversionPlan:
    path = plan_path(output)
    if not path.is_file():
        raise ConversionError(
            f"{output}: no {PLAN_FILE}: no conversion was started here (run `lerowds convert` without --finalize)"
        )
    return ConversionPlan.from_bytes(path.read_bytes(), str(path))


def check_output(output: Path, plan: ConversionPlan) -> bool:
    """Whether ``output`` already holds ``plan`` (a rerun: True) or can take it (False: it is absent, empty,
    or holds only what a run killed before writing its plan left); writes nothing.

    A directory holding another conversion, a finished dataset, or anything else is a ConversionError naming
    both datasets or what differs.
    """
    path = plan_path(output)
    advice = f"pick another --output or delete {output}"
    if path.is_file():
        old = ConversionPlan.from_bytes(path.read_bytes(), str(path))
        if old.fingerprint == plan.fingerprint:
            return True
        diffs = old.differences(plan)
        raise ConversionError(
            f"{output} holds a conversion of {old.repo_id!r} (revision {old.source.get('revision')!r}) that "
            f"differs from this one of {plan.repo_id!r} (revision {plan.source.get('revision')!r}): "
            f"{'; '.join(diffs)}; {advice}"
        )
    if (output / INDEX_FILE).is_file():
        try:
            other = DatasetIndex.from_bytes((output / INDEX_FILE).read_bytes()).repo_id
        except FormatError:
            other = "an unknown dataset"
        raise ConversionError(
            f"{output} holds a finished lerowds dataset of {other!r} without resume state; it cannot take "
            f"a conversion of {plan.repo_id!r}: {advice}"
        )
    if output.exists() and _leftovers(output) is None:
        raise ConversionError(
            f"{output} exists and is not an empty directory nor a lerowds conversion of {plan.repo_id!r}: {advice}"
        )
    return False


def _leftovers(output: Path) -> list[Path] | None:
    """The files of a run killed before it wrote its plan (``.lerowds/`` with lock files, an empty
    ``done/``, temp files of ``plan.json``): deletable ones listed, [] for an empty directory; None when
    ``output`` holds anything else."""
    if not output.is_dir() or any(p.name != STATE_DIR for p in output.iterdir()):
        return None
    state = output / STATE_DIR
    if not state.exists():
        return []
    if not state.is_dir():
        return None
    found = []
    for p in state.iterdir():
        if p.name.startswith(LOCK_NAME) and p.is_file():
            continue
        if p.name == "done" and p.is_dir() and not any(p.iterdir()):
            continue
        if not (p.name.startswith(".plan.json.") and p.name.endswith(".tmp") and p.is_file()):
            return None
        found.append(p)
    return found


def claim_output(output: Path, plan: ConversionPlan) -> bool:
    """Make ``output`` hold ``plan``; return True when it already did (a rerun), False for a fresh start
    (which also clears what a run of it killed before writing its plan left). Raises as ``check_output``."""
    if check_output(output, plan):
        return True
    for stale in _leftovers(output) or []:
        log.info("removing %s, left by a conversion stopped before it wrote its plan", stale)
        stale.unlink(missing_ok=True)
    atomic_write_bytes(plan_path(output), plan.to_bytes())
    return False


# ----------------------------------------------------------------------------------------------- done records
@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """A converted episode: what the episode table needs, and where its members lie in its shard."""

    episode_index: int
    length: int
    tasks: tuple[str, ...]
    dataset_from_index: int
    location: EpisodeLocation

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_index": self.episode_index,
            "length": self.length,
            "tasks": list(self.tasks),
            "dataset_from_index": self.dataset_from_index,
            "offset": self.location.offset,
            "size": self.location.size,
            "members": [[m.name, m.offset, m.size] for m in self.location.members],
            "crc32": self.location.crc32,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EpisodeRecord:
        members = tuple(MemberLocation(str(n), int(o), int(s)) for n, o, s in d["members"])
        return cls(
            int(d["episode_index"]),
            int(d["length"]),
            tuple(d["tasks"]),
            int(d["dataset_from_index"]),
            EpisodeLocation(
                int(d["offset"]), int(d["size"]), members, None if d.get("crc32") is None else int(d["crc32"])
            ),
        )


@dataclass(frozen=True, slots=True)
class DoneRecord:
    """A finished shard: its size and sha256, and its episodes, for the plan with fingerprint ``plan``;
    ``sources``: what it was built from (``identity.source_id``), None in records of older versions."""

    shard: int
    size: int
    sha256: str
    plan: str
    episodes: tuple[EpisodeRecord, ...]
    sources: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.shard < 0 or self.size <= 0 or len(self.sha256) != 64:
            raise ValueError(f"bad done record: shard {self.shard}, size {self.size}, sha256 {self.sha256!r}")

    @property
    def name(self) -> str:
        return shard_name(self.shard)

    @property
    def num_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def to_bytes(self) -> bytes:
        d = {
            "shard": self.shard,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "plan": self.plan,
            "episodes": [e.to_json() for e in self.episodes],
            "sources": self.sources,
        }
        return json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> DoneRecord:
        d = json.loads(data)
        return cls(
            int(d["shard"]),
            int(d["size"]),
            str(d["sha256"]),
            str(d["plan"]),
            tuple(EpisodeRecord.from_json(e) for e in d["episodes"]),
            d.get("sources"),
        )


def done_path(output: Path, shard: int) -> Path:
    return output / DONE_DIR / f"shard-{shard:06d}.json"


def write_done(output: Path, record: DoneRecord) -> None:
    atomic_write_bytes(done_path(output, record.shard), record.to_bytes())


def read_done(output: Path, shard: int) -> DoneRecord | None:
    """The done-record of ``shard``, or None when there is none or it is unreadable (the shard is then redone)."""
    path = done_path(output, shard)
    try:
        return DoneRecord.from_bytes(path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as e:
        log.warning("%s: unreadable done-record (%s); shard %d will be converted again", path, e, shard)
        return None
