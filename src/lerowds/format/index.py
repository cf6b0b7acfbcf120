"""The dataset index (``index.json``) and loading a converted dataset's index and episode table."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lerowds.errors import FormatError
from lerowds.format.index_json import EpisodeIds, cut_episode_lists, nonfinite_stats, null_as_nan
from lerowds.format.layout import check_layout, check_shard_name
from lerowds.format.names import EPISODES_FILE, FORMAT_NAME, FORMAT_VERSION, INDEX_FILE, SHARDS_DIR
from lerowds.format.table import EpisodeTable

MAX_SIZE = 1 << 62  # bytes of a shard (and frames): larger is not a real dataset, and sums stay in int64


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One shard as the index lists it."""

    name: str
    size: int
    sha256: str
    episodes: Sequence[int]  # ``EpisodeIds`` when read from an index
    num_frames: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "episodes": list(self.episodes),
            "num_frames": self.num_frames,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = INDEX_FILE) -> ShardRecord:
        """A shard record of ``index.json``: its name must be the format's (nothing outside ``shards/`` is
        ever opened) and its size and frame count integers."""
        name = check_shard_name(d["name"], where)
        size, frames = d["size"], d["num_frames"]
        for what, value in (("size", size), ("num_frames", frames)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_SIZE:
                raise FormatError(
                    f"{where}: shard {name}: {what} must be an integer in [0, 2**62), got {value!r}"
                )
        return cls(name, size, d["sha256"], EpisodeIds(d["episodes"]), frames)


@dataclass(frozen=True, slots=True)
class DatasetIndex:
    """Everything a reader needs without opening a shard. Serialised as ``index.json``."""

    repo_id: str
    revision: str | None
    codebase_version: str
    fps: int
    features: dict[str, Any]
    tasks: tuple[str, ...]  # position = task_index
    stats: dict[str, Any]
    total_episodes: int
    total_frames: int
    shards: tuple[ShardRecord, ...]
    episodes_sha256: str
    robot_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise FormatError(f"index: fps must be > 0, got {self.fps}")

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": {
                "repo_id": self.repo_id,
                "revision": self.revision,
                "codebase_version": self.codebase_version,
                "robot_type": self.robot_type,
            },
            "fps": self.fps,
            "features": self.features,
            "tasks": list(self.tasks),
            "stats": self.stats,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "episodes_table": {"path": EPISODES_FILE, "sha256": self.episodes_sha256},
            "shards": [s.to_json() for s in self.shards],
            "options": self.options,
        }

    def to_bytes(self) -> bytes:
        """``index.json``: strict JSON (a NaN or infinite statistic is written as ``null``, see
        ``nonfinite_stats``; anything else non-finite is a ValueError)."""
        d = {**self.to_json(), "stats": nonfinite_stats(self.stats)[0]}
        text = json.dumps(d, indent=1, sort_keys=False, ensure_ascii=False, allow_nan=False)
        return (text + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = INDEX_FILE) -> DatasetIndex:
        try:
            data, episode_lists = cut_episode_lists(data)
            d = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError, DeprecationWarning) as e:
            raise FormatError(
                f"{where}: not valid JSON ({e}); the conversion may be incomplete, rerun it"
            ) from e
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise FormatError(
                f"{where}: not a lerowds index (format={d.get('format') if isinstance(d, dict) else d!r})"
            )
        if d.get("version") != FORMAT_VERSION:
            raise FormatError(
                f"{where}: lerowds format version {d.get('version')!r}, this lerowds reads version "
                f"{FORMAT_VERSION}: upgrade lerowds or re-convert the dataset"
            )
        try:
            src = d["source"]
            return cls(
                repo_id=src["repo_id"],
                revision=src.get("revision"),
                codebase_version=src["codebase_version"],
                robot_type=src.get("robot_type"),
                fps=int(d["fps"]),
                features=d["features"],
                tasks=tuple(d["tasks"]),
                stats=null_as_nan(d.get("stats") or {}),
                total_episodes=int(d["total_episodes"]),
                total_frames=int(d["total_frames"]),
                shards=_shards(d["shards"], episode_lists, where),
                episodes_sha256=d["episodes_table"]["sha256"],
                options=d.get("options") or {},
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise FormatError(f"{where}: malformed lerowds index, missing or bad field {e}") from e

    def frame_size(self, key: str) -> tuple[int, int] | None:
        """(height, width) the features declare for camera ``key`` (``names`` give the order; HWC unless the
        shape reads as CHW); None when the feature declares no 3-axis shape."""
        ft = self.features.get(key)
        shape = ft.get("shape") if isinstance(ft, Mapping) else None
        names = ft.get("names") if isinstance(ft, Mapping) else None
        if (
            not isinstance(shape, (list, tuple))
            or len(shape) != 3
            or not all(isinstance(v, int) for v in shape)
        ):
            return None
        if isinstance(names, (list, tuple)) and len(names) == 3 and "height" in names and "width" in names:
            return int(shape[list(names).index("height")]), int(shape[list(names).index("width")])
        if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):  # channels first
            return int(shape[1]), int(shape[2])
        return int(shape[0]), int(shape[1])

    def fingerprint(self) -> str:
        """A short id of the dataset's content (its episode table and shard checksums)."""
        h = hashlib.sha256(self.episodes_sha256.encode())
        for s in self.shards:
            h.update(s.sha256.encode())
        return h.hexdigest()[:16]


def _shards(items: Any, episode_lists: list[np.ndarray], where: str) -> tuple[ShardRecord, ...]:
    shards = tuple(
        ShardRecord.from_json({**s, "episodes": episode_lists[i]}, where) for i, s in enumerate(items)
    )
    seen: set[str] = set()
    for s in shards:
        if s.name in seen:
            raise FormatError(
                f"{where}: shard {s.name} is listed twice; re-download or re-convert the dataset"
            )
        seen.add(s.name)
    return shards


# ----------------------------------------------------------------------------------------------- reading
def read_local_index(root: str | os.PathLike[str]) -> tuple[DatasetIndex, EpisodeTable]:
    """Load ``index.json`` and ``episodes.parquet`` of a converted dataset on local disk."""
    root = Path(root)
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        hint = (
            "a conversion is still running or was interrupted: rerun `lerowds convert` with the same arguments"
            if (root / SHARDS_DIR).is_dir()
            else "convert a LeRobot v3 dataset with `lerowds convert --repo-id ORG/NAME --output DIR`"
        )
        raise FormatError(f"{root}: no {INDEX_FILE}, not a finished lerowds dataset ({hint})")
    index = DatasetIndex.from_bytes(index_path.read_bytes(), str(index_path))
    table_bytes = (root / EPISODES_FILE).read_bytes() if (root / EPISODES_FILE).is_file() else None
    if table_bytes is None:
        raise FormatError(f"{root}: {EPISODES_FILE} is missing; re-convert the dataset")
    return index, check_episode_table(index, table_bytes, str(root / EPISODES_FILE))


def check_episode_table(index: DatasetIndex, table_bytes: bytes, where: str) -> EpisodeTable:
    """Parse ``episodes.parquet`` after checking it against the sha256 that ``index.json`` lists for it."""
    if hashlib.sha256(table_bytes).hexdigest() != index.episodes_sha256:
        raise FormatError(f"{where}: checksum does not match {INDEX_FILE}; re-convert the dataset")
    table = EpisodeTable.from_parquet_bytes(table_bytes, where)
    problems = shard_problems(index, table) + total_problems(index, table)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise FormatError(f"{where}: {problems[0]}{more}; re-convert or re-download the dataset")
    check_layout(
        table, [s.size for s in index.shards], [s.name for s in index.shards], index.video_keys, where
    )
    return table


def total_problems(index: DatasetIndex, table: EpisodeTable) -> list[str]:
    """Where the index's ``total_episodes`` / ``total_frames`` disagree with the episode table's."""
    problems = []
    if index.total_episodes != len(table):
        problems.append(
            f"{INDEX_FILE} says total_episodes={index.total_episodes}, {EPISODES_FILE} has {len(table)} episodes"
        )
    frames = int(np.asarray(table["length"], np.int64).sum()) if len(table) else 0
    if index.total_frames != frames:
        problems.append(
            f"{INDEX_FILE} says total_frames={index.total_frames}, the lengths in {EPISODES_FILE} sum to {frames}"
        )
    return problems


def shard_problems(index: DatasetIndex, table: EpisodeTable) -> list[str]:
    """Where the episode table and the index's shard list disagree (e.g. a shard dropped from index.json):
    every row's shard must be listed, holding exactly the episodes the index lists for it."""
    shard = np.asarray(table["shard"], dtype=np.int64)
    episodes = np.asarray(table["episode_index"], dtype=np.int64)
    n = len(index.shards)
    outside = np.flatnonzero((shard < 0) | (shard >= n))
    if outside.size:
        row = int(outside[0])
        problem = (
            f"episode {int(episodes[row])} lies in shard number {int(shard[row])}, but {INDEX_FILE} lists "
            f"{n} shards ({outside.size} such episodes): {INDEX_FILE} and {EPISODES_FILE} disagree"
        )
        return [problem]
    order = np.lexsort((episodes, shard))
    counts = np.bincount(shard, minlength=n)
    lens = np.fromiter((len(r.episodes) for r in index.shards), dtype=np.int64, count=n)
    if np.array_equal(counts, lens):  # the common case, vectorized: compare all shards at once
        flat = np.fromiter(
            itertools.chain.from_iterable(r.episodes for r in index.shards), np.int64, int(lens.sum())
        )
        seg = np.repeat(np.arange(n), lens)
        if np.array_equal(flat[np.lexsort((flat, seg))], episodes[order]):
            return []
    ends = np.cumsum(counts)
    problems = []
    for i, record in enumerate(index.shards):
        have = episodes[order[(ends[i - 1] if i else 0) : ends[i]]]
        listed = np.sort(np.asarray(record.episodes, dtype=np.int64))
        if not np.array_equal(have, listed):
            problems.append(
                f"{record.name}: {INDEX_FILE} lists episodes {_few(listed)} in it, {EPISODES_FILE} "
                f"{_few(have)}"
            )
    return problems


def _few(values: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in values[:6])
    return f"[{shown}{', ...' if len(values) > 6 else ''}] ({len(values)})"
