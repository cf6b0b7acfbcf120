"""The episode table (``episodes.parquet``) and each episode's ``<key>.json`` member."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.errors import FormatError
from lerowds.format.names import EPISODES_FILE

CRC32_COLUMN = (
    "crc32"  # episodes.parquet: zlib.crc32 of each episode's span (lets a reader check a ranged read)
)
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


def compact_int(values: np.ndarray) -> np.ndarray:
    """``values`` (integers) in the smallest of int32 / uint32 / int64 that holds them all (read-only).

    A million-episode table is ~17 columns: int64 everywhere cost 136 MB per process. Readers take single
    values with ``int(...)``; sums of int32 columns accumulate in int64 (NumPy's default integer)."""
    values = np.asarray(values)
    if values.dtype in (np.int32, np.uint32) and not values.flags.writeable:
        return values  # already compact (and nobody can change it): no copy
    if values.size:
        lo, hi = int(values.min()), int(values.max())
        dtype = (
            np.int32
            if -(1 << 31) <= lo and hi < (1 << 31)
            else np.uint32
            if 0 <= lo and hi < (1 << 32)
            else np.int64
        )
    else:
        dtype = np.int32
    out = np.ascontiguousarray(values, dtype=dtype)
    if out is values:
        out = out.copy()
    out.flags.writeable = False
    return out


class EpisodeTable:
    """The per-episode table as compact numpy integer columns, plus each episode's task list.

    Tasks are held as one list of distinct strings, an int32 code per (episode, task) and int64 offsets
    (episode ``i``'s codes are ``codes[offsets[i]:offsets[i+1]]``): no Python object per episode.
    ``tasks`` (a tuple of tuples) is built on demand.
    """

    __slots__ = ("columns", "task_codes", "task_offsets", "task_strings")

    def __init__(
        self,
        columns: Mapping[str, np.ndarray],
        tasks: Sequence[Sequence[str]] | None = None,
        *,
        task_strings: Sequence[str] = (),
        task_codes: np.ndarray | None = None,
        task_offsets: np.ndarray | None = None,
    ) -> None:
        self.columns = {name: compact_int(v) for name, v in columns.items()}
        n = len(self.columns["episode_index"]) if "episode_index" in self.columns else 0
        if tasks is not None:
            distinct: dict[str, int] = {}
            codes = [distinct.setdefault(t, len(distinct)) for ts in tasks for t in ts]
            task_strings = tuple(distinct)
            task_codes = np.asarray(codes, dtype=np.int32)
            task_offsets = np.concatenate([[0], np.cumsum([len(ts) for ts in tasks])]).astype(np.int64)
        self.task_strings = tuple(task_strings)
        self.task_codes = np.zeros(0, np.int32) if task_codes is None else np.asarray(task_codes, np.int32)
        self.task_offsets = (
            np.zeros(n + 1, np.int64) if task_offsets is None else np.asarray(task_offsets, np.int64)
        )
        if self.task_offsets.size != n + 1:
            raise FormatError(f"{EPISODES_FILE}: {self.task_offsets.size - 1} task lists for {n} episodes")

    def __len__(self) -> int:
        return len(self.columns["episode_index"])

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise FormatError(f"{EPISODES_FILE}: no column {name!r} (have {sorted(self.columns)})") from None

    def episode_tasks(self, row: int) -> tuple[str, ...]:
        """The tasks of the episode in table row ``row``."""
        codes = self.task_codes[self.task_offsets[row] : self.task_offsets[row + 1]]
        return tuple(self.task_strings[c] for c in codes.tolist())

    @property
    def tasks(self) -> tuple[tuple[str, ...], ...]:
        """Every episode's task list (built on demand: a Python tuple per episode)."""
        return tuple(self.episode_tasks(row) for row in range(len(self)))

    def row_of(self, episode_index: int) -> int:
        """Position of ``episode_index`` in the table."""
        idx = self.columns["episode_index"]
        pos = int(np.searchsorted(idx, episode_index))
        if pos >= len(idx) or idx[pos] != episode_index:
            raise FormatError(f"episode {episode_index} is not in this dataset ({len(idx)} episodes)")
        return pos

    def to_parquet_bytes(self) -> bytes:
        arrays = {k: pa.array(v, type=pa.int64()) for k, v in self.columns.items()}
        strings = pa.array(self.task_strings, type=pa.string()).take(pa.array(self.task_codes, pa.int32()))
        arrays["tasks"] = pa.ListArray.from_arrays(pa.array(self.task_offsets, pa.int32()), strings)
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf, compression="zstd", write_statistics=False)
        return buf.getvalue()

    @classmethod
    def from_parquet_bytes(cls, data: bytes, where: str = EPISODES_FILE) -> EpisodeTable:
        """Parse ``episodes.parquet``, one column at a time (each compacted at once, so Arrow never holds
        the whole table: a million episodes load in ~0.3 CPU-s and ~70 MB)."""
        try:
            f = pq.ParquetFile(pa.BufferReader(data))
            names = f.schema_arrow.names
            missing = [c for c in (*EPISODE_BASE_COLUMNS, "tasks") if c not in names]
            if missing:
                raise FormatError(f"{where}: episode table lacks columns {missing}")
            columns = {name: _int_column(f, name, where) for name in names if name != "tasks"}
            tasks = f.read(columns=["tasks"], use_threads=False).column(0).combine_chunks()
            encoded = tasks.flatten().dictionary_encode()
            out = cls(
                columns,
                task_strings=encoded.dictionary.to_pylist(),
                task_codes=encoded.indices.to_numpy(zero_copy_only=False),
                task_offsets=tasks.offsets.to_numpy().astype(np.int64) - int(tasks.offsets[0].as_py()),
            )
            del f, tasks, encoded
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{where}: unreadable episode table ({e}); re-convert the dataset") from e
        finally:
            pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
        ids = out.columns["episode_index"]
        if ids.size > 1 and not bool((ids[1:] > ids[:-1]).all()):
            raise FormatError(f"{where}: episode_index must be strictly increasing")
        for name, low in (("episode_index", 0), ("length", 1)):
            bad = np.flatnonzero(out.columns[name] < low)
            if bad.size:
                raise FormatError(
                    f"{where}: row {int(bad[0])} (episode {int(ids[bad[0]])}): {name} "
                    f"{int(out.columns[name][bad[0]])} < {low}; re-download or re-convert the dataset"
                )
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EpisodeTable):
            return NotImplemented
        return (
            self.columns.keys() == other.columns.keys()
            and all(np.array_equal(v, other.columns[k]) for k, v in self.columns.items())
            and self.tasks == other.tasks
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EpisodeTable({len(self)} episodes, columns {sorted(self.columns)})"


def _int_column(f: pq.ParquetFile, name: str, where: str) -> np.ndarray:
    """Column ``name`` as compact integers; a float, string or null value (which NumPy would truncate or
    turn into NaN) is a FormatError naming the column."""
    column = f.read(columns=[name], use_threads=False).column(0)
    if not pa.types.is_integer(column.type) or column.null_count:
        what = (
            f"{column.null_count} null values" if pa.types.is_integer(column.type) else f"type {column.type}"
        )
        raise FormatError(
            f"{where}: column {name!r} must hold integers, it has {what}; re-convert the dataset"
        )
    return compact_int(column.to_numpy())


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
