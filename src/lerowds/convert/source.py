"""Open a LeRobot v3 dataset, on local disk or from the Hub, and load its metadata.

Only metadata is read here (``meta/info.json``, ``meta/tasks.parquet``, ``meta/episodes/*/*.parquet``,
``meta/stats.json``); data and video files are opened later, one episode at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.convert.card import source_card_metadata
from lerowds.errors import SourceError

log = logging.getLogger(__name__)

INFO_FILE = "meta/info.json"
TASKS_FILE = "meta/tasks.parquet"
STATS_FILE = "meta/stats.json"
EPISODES_GLOB = "meta/episodes/*/*.parquet"
V2_EPISODES_FILE = "meta/episodes.jsonl"
UPGRADE_HINT = (
    "convert it to v3.0 with lerobot first: `python -m lerobot.datasets.v30.convert_dataset_v21_to_v30 "
    "--repo-id={repo_id}` (a v2.0 dataset needs `python -m lerobot.datasets.v21.convert_dataset_v20_to_v21 "
    "--repo-id={repo_id}` before that)"
)


@dataclass(frozen=True, slots=True)
class VideoRef:
    """An episode's segment of one camera's mp4: ``path`` (relative to the root), from/to timestamps in s."""

    path: str
    from_timestamp: float
    to_timestamp: float

    def __post_init__(self) -> None:
        if not self.to_timestamp > self.from_timestamp >= 0:
            raise SourceError(
                f"{self.path}: bad segment [{self.from_timestamp}, {self.to_timestamp}): "
                "need 0 <= from_timestamp < to_timestamp"
            )


@dataclass(frozen=True, slots=True)
class SourceEpisode:
    """One episode as the v3 episode metadata describes it."""

    episode_index: int
    length: int
    tasks: tuple[str, ...]
    dataset_from_index: int
    data_path: str
    videos: tuple[tuple[str, VideoRef], ...] = ()  # (video_key, segment), in feature order

    def __post_init__(self) -> None:
        if self.episode_index < 0:
            raise SourceError(f"episode_index must be >= 0, got {self.episode_index}")
        if self.length < 1:
            raise SourceError(f"episode {self.episode_index}: length must be >= 1, got {self.length}")

    def video(self, video_key: str) -> VideoRef:
        for key, ref in self.videos:
            if key == video_key:
                return ref
        raise KeyError(video_key)


@dataclass(frozen=True)
class SourceDataset:
    """A LeRobot v3 dataset's metadata; ``root`` is where its files are (a local dir or a Hub snapshot)."""

    root: Path
    repo_id: str
    revision: str | None
    info: dict[str, Any]
    tasks: tuple[str, ...]  # position = task_index
    stats: dict[str, Any]
    episodes: tuple[SourceEpisode, ...]  # sorted by episode_index
    card: dict[str, Any] = field(default_factory=dict, compare=False)  # README.md metadata (license, tags)
    # fetched on demand (--max-source-disk): data/video file -> (size, Hub content id); empty: files under root
    remote_files: dict[str, tuple[int, str]] = field(default_factory=dict, compare=False)
    _by_index: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_index.update({e.episode_index: i for i, e in enumerate(self.episodes)})
        if len(self._by_index) != len(self.episodes):
            raise SourceError(f"{self.root / 'meta/episodes'}: duplicate episode_index values")

    @property
    def fps(self) -> int:
        return fps_of(self.info, self.root)

    @property
    def codebase_version(self) -> str:
        return str(self.info.get("codebase_version"))

    @property
    def robot_type(self) -> str | None:
        return self.info.get("robot_type")

    @property
    def features(self) -> dict[str, Any]:
        return dict(self.info["features"])

    @property
    def video_keys(self) -> tuple[str, ...]:
        return video_keys_of(self.info)

    @property
    def total_frames(self) -> int:
        return sum(e.length for e in self.episodes)

    def episode(self, episode_index: int) -> SourceEpisode:
        try:
            return self.episodes[self._by_index[episode_index]]
        except KeyError:
            raise SourceError(
                f"episode {episode_index} is not in {self.repo_id} ({len(self.episodes)} episodes)"
            ) from None

    def files_for(self, episode_indices: Iterable[int]) -> list[str]:
        """Relative paths of the data and video files the given episodes need, sorted."""
        files: set[str] = set()
        for i in episode_indices:
            ep = self.episode(i)
            files.add(ep.data_path)
            files.update(ref.path for _, ref in ep.videos)
        return sorted(files)

    def file_size(self, rel: str) -> int:
        """The size of a data or video file (from the Hub's listing when it is fetched on demand)."""
        if rel in self.remote_files:
            return self.remote_files[rel][0]
        try:
            return (self.root / rel).stat().st_size
        except FileNotFoundError:
            raise SourceError(f"{self.root / rel}: missing") from None

    def file_ids(self) -> dict[str, tuple[int, int, int]]:
        """The identity (``identity.FileId``) of files fetched on demand: size and the Hub's content id, which
        stay the same when a freed file is fetched again (a stat's times would not)."""
        digest = lambda oid: int(hashlib.sha256(oid.encode()).hexdigest()[:15], 16)
        return {rel: (size, digest(oid), 0) for rel, (size, oid) in self.remote_files.items()}

    def check_files(self, episode_indices: Iterable[int]) -> None:
        """Raise SourceError naming the data/video files the given episodes need but that are missing."""
        here = lambda f: f in self.remote_files or (self.root / f).is_file()
        missing = [f for f in self.files_for(episode_indices) if not here(f)]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise SourceError(
                f"{self.repo_id}: missing source file(s) under {self.root}: {', '.join(missing[:5])}{more}"
            )


# ----------------------------------------------------------------------------------------------- info
def fps_of(info: Mapping[str, Any], root: Path) -> int:
    fps = info.get("fps")
    if not isinstance(fps, (int, float)) or fps <= 0 or float(fps) != int(fps):
        raise SourceError(f"{root / INFO_FILE}: fps must be a positive integer, got {fps!r}")
    return int(fps)


def video_keys_of(info: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(k for k, f in info["features"].items() if f.get("dtype") == "video")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SourceError(f"{path}: not valid JSON ({e}); the file is truncated or corrupt") from e


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a parquet file; a missing or unreadable file is a SourceError naming it."""
    try:
        # no Arrow thread pool: metadata files are small, and a single-threaded parent can fork workers cheaply
        return pq.read_table(path, columns=list(columns) if columns is not None else None, use_threads=False)
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{path}: unreadable parquet ({e}); the file is truncated or corrupt") from e


def load_info(root: Path, repo_id: str) -> dict[str, Any]:
    """``meta/info.json``, after checking that the dataset is LeRobot v3."""
    if not (root / INFO_FILE).is_file():
        if (root / "meta").is_dir() or (root / "data").is_dir():
            raise SourceError(f"{root}: no {INFO_FILE}: not a LeRobot dataset, or an incomplete download")
        raise SourceError(f"{root}: no {INFO_FILE}: not a LeRobot dataset directory")
    info = _read_json(root / INFO_FILE)
    if not isinstance(info, dict):
        raise SourceError(f"{root / INFO_FILE}: expected a JSON object, got {type(info).__name__}")
    version = str(info.get("codebase_version", "?"))
    if version.startswith(("v1.", "v2.")) or (root / V2_EPISODES_FILE).is_file():
        said = f"a LeRobot {version} dataset" if not version.startswith("v3.") else f"marked {version} but"
        raise SourceError(
            f"{root}: {repo_id} is {said} in the v2.x layout ({INFO_FILE} with codebase_version v2.x, one file "
            "per episode: data/chunk-XXX/episode_XXXXXX.parquet, videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4, "
            f"and {V2_EPISODES_FILE}); lerowds reads the v3.0 layout only (many episodes per "
            "data/chunk-XXX/file-XXX.parquet and videos/<video_key>/chunk-XXX/file-XXX.mp4, "
            f"meta/episodes/chunk-XXX/file-XXX.parquet): {UPGRADE_HINT.format(repo_id=repo_id)}"
        )
    if not version.startswith("v3."):
        raise SourceError(f"{root / INFO_FILE}: codebase_version {version!r} is not a LeRobot v3 dataset")
    for key in ("features", "data_path"):
        if key not in info:
            raise SourceError(f"{root / INFO_FILE}: missing field {key!r}")
    if video_keys_of(info) and not info.get("video_path"):
        raise SourceError(
            f"{root / INFO_FILE}: has video features but video_path is {info.get('video_path')!r}"
        )
    fps_of(info, root)
    return info


def load_tasks(root: Path) -> tuple[str, ...]:
    """``meta/tasks.parquet``: the task string of every task_index (a pandas-indexed table in lerobot)."""
    path = root / TASKS_FILE
    table = read_parquet(path)
    if "task_index" not in table.column_names:
        raise SourceError(f"{path}: no task_index column (have {table.column_names})")
    name = _task_column(table, path)
    pairs = sorted(zip(table.column("task_index").to_pylist(), table.column(name).to_pylist()))
    if [i for i, _ in pairs] != list(range(len(pairs))):
        raise SourceError(f"{path}: task_index must be 0..{len(pairs) - 1}, got {[i for i, _ in pairs]}")
    return tuple(str(t) for _, t in pairs)


def _task_column(table: pa.Table, path: Path) -> str:
    meta = table.schema.metadata or {}
    if b"pandas" in meta:
        index_columns = json.loads(meta[b"pandas"]).get("index_columns", [])
        named = [c for c in index_columns if isinstance(c, str) and c in table.column_names]
        if named:
            return named[0]
    if "task" in table.column_names:
        return "task"
    strings = [
        f.name
        for f in table.schema
        if f.name != "task_index" and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]
    if len(strings) != 1:
        raise SourceError(
            f"{path}: cannot tell which column holds the task strings (have {table.column_names})"
        )
    return strings[0]


def load_stats(root: Path) -> dict[str, Any]:
    path = root / STATS_FILE
    if not path.is_file():
        log.warning("%s: missing; the index will carry no stats", path)
        return {}
    stats = _read_json(path)
    if not isinstance(stats, dict):
        raise SourceError(f"{path}: expected a JSON object, got {type(stats).__name__}")
    return stats


def load_episodes(root: Path, info: Mapping[str, Any]) -> tuple[SourceEpisode, ...]:
    """Every episode of ``meta/episodes/*/*.parquet``, sorted by episode_index."""
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise SourceError(f"{root}: no {EPISODES_GLOB} files (incomplete download?)")
    vkeys = video_keys_of(info)
    columns = [
        "episode_index",
        "tasks",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
    ]
    for k in vkeys:
        columns += [
            f"videos/{k}/{c}" for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
        ]
    episodes: list[SourceEpisode] = []
    for path in files:
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as e:
            raise SourceError(f"{path}: unreadable parquet ({e}); the file is truncated or corrupt") from e
        missing = [c for c in columns if c not in names]
        if missing:
            raise SourceError(f"{path}: episode metadata lacks columns {missing}")
        for row in read_parquet(path, columns).to_pylist():
            episodes.append(_episode_from_row(row, info, vkeys, path))
    episodes.sort(key=lambda e: e.episode_index)
    total = info.get("total_episodes")
    if total is not None and len(episodes) != total:
        raise SourceError(
            f"{root / 'meta/episodes'}: lists {len(episodes)} episodes but {INFO_FILE} says total_episodes={total} "
            "(a missing or truncated meta/episodes file?)"
        )
    return tuple(episodes)


def _episode_from_row(
    row: Mapping[str, Any], info: Mapping[str, Any], vkeys: Sequence[str], path: Path
) -> SourceEpisode:
    try:
        data_path = info["data_path"].format(
            chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]
        )
        videos = tuple(
            (
                k,
                VideoRef(
                    info["video_path"].format(
                        video_key=k,
                        chunk_index=row[f"videos/{k}/chunk_index"],
                        file_index=row[f"videos/{k}/file_index"],
                    ),
                    float(row[f"videos/{k}/from_timestamp"]),
                    float(row[f"videos/{k}/to_timestamp"]),
                ),
            )
            for k in vkeys
        )
        return SourceEpisode(
            episode_index=int(row["episode_index"]),
            length=int(row["length"]),
            tasks=tuple(str(t) for t in row["tasks"] or ()),
            dataset_from_index=int(row["dataset_from_index"]),
            data_path=data_path,
            videos=videos,
        )
    except (TypeError, ValueError, KeyError) as e:
        raise SourceError(f"{path}: bad episode row {row.get('episode_index')!r}: {e!r}") from e
    except SourceError as e:
        raise SourceError(f"{path}: episode {row.get('episode_index')!r}: {e}") from e


def load_local(root: str | Path, repo_id: str, revision: str | None = None) -> SourceDataset:
    """Load a v3 dataset's metadata from a local directory."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"--root {root}: no such directory")
    info = load_info(root, repo_id)
    return SourceDataset(
        root=root,
        repo_id=repo_id,
        revision=revision,
        info=info,
        tasks=load_tasks(root),
        stats=load_stats(root),
        episodes=load_episodes(root, info),
        card=source_card_metadata(root),
    )
