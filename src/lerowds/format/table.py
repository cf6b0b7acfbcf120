"""The episode table (``episodes.parquet``) and each episode's ``<key>.json`` member."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.errors import FormatError
from lerowds.format.names import EPISODES_FILE

CRC32_COLUMN = "crc32"  # episodes.parquet: zlib.crc32 of each episode's span (lets a reader check a ranged read)
EPISODE_BASE_COLUMNS = (
    "episode_index",
    "length",
    "dataset_from_index",
    "shard",
    "offset",
    "size",
    "json_offset",
    "json_size",
    "parquet_offset",
    "parquet_size",
)


def video_columns(video_key: str) -> tuple[str, str]:
    return f"video/{video_key}/offset", f"video/{video_key}/size"


@dataclass(frozen=True)
class EpisodeTable:
    """The per-episode table as numpy columns (int64), plus each episode's task list."""

    columns: dict[str, np.ndarray]
    tasks: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.columns["episode_index"])

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise FormatError(f"{EPISODES_FILE}: no column {name!r} (have {sorted(self.columns)})") from None

    def row_of(self, episode_index: int) -> int:
        """Position of ``episode_index`` in the table."""
        idx = self.columns["episode_index"]
        pos = int(np.searchsorted(idx, episode_index))
        if pos >= len(idx) or idx[pos] != episode_index:
            raise FormatError(f"episode {episode_index} is not in this dataset ({len(idx)} episodes)")
        return pos

    def to_parquet_bytes(self) -> bytes:
        arrays = {k: pa.array(v, type=pa.int64()) for k, v in self.columns.items()}
        arrays["tasks"] = pa.array([list(t) for t in self.tasks], type=pa.list_(pa.string()))
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf, compression="zstd", write_statistics=False)
        return buf.getvalue()

    @classmethod
    def from_parquet_bytes(cls, data: bytes, where: str = EPISODES_FILE) -> EpisodeTable:
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{where}: unreadable episode table ({e}); re-convert the dataset") from e
        columns = {
            name: table.column(name).to_numpy().astype(np.int64, copy=False)
            for name in table.column_names
            if name != "tasks"
        }
        missing = [c for c in EPISODE_BASE_COLUMNS if c not in columns]
        if missing:
            raise FormatError(f"{where}: episode table lacks columns {missing}")
        tasks = tuple(tuple(t) for t in table.column("tasks").to_pylist())
        if np.any(np.diff(columns["episode_index"]) <= 0):
            raise FormatError(f"{where}: episode_index must be strictly increasing")
        return cls(columns, tasks)


# ----------------------------------------------------------------------------------------------- episode json
def episode_metadata(
    episode_index: int,
    length: int,
    tasks: Sequence[str],
    dataset_from_index: int,
    fps: int,
    videos: Mapping[str, Mapping[str, Any]],
    *,
    task_indices: Sequence[int] = (),
    image_keys: Sequence[str] = (),
) -> bytes:
    """The ``<key>.json`` member: small, self-describing metadata of one episode.

    ``tasks[i]`` is the string of task index ``task_indices[i]``, so a sample's ``task`` can be resolved
    from the episode alone (e.g. in a webdataset pipeline without the index).
    """
    if task_indices and len(task_indices) != len(tasks):
        raise ValueError(f"task_indices {list(task_indices)} must pair with tasks {list(tasks)}")
    d = {
        "episode_index": episode_index,
        "length": length,
        "tasks": list(tasks),
        "task_indices": [int(i) for i in task_indices],
        "image_keys": list(image_keys),
        "dataset_from_index": dataset_from_index,
        "fps": fps,
        "videos": {k: dict(v) for k, v in videos.items()},
    }
    return json.dumps(d, ensure_ascii=False, sort_keys=True).encode()
