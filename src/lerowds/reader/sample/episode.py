"""One episode's tabular rows in RAM: numpy columns parsed once from its parquet member."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.errors import FormatError


@dataclass(frozen=True, slots=True)
class EpisodeRows:
    """Tabular rows of one episode. ``columns`` maps a feature to an array of shape (length, *shape);
    image-dtype features map to an object array of encoded image bytes (decoded only when emitted)."""

    episode_index: int
    length: int
    columns: dict[str, np.ndarray]
    image_keys: tuple[str, ...]

    @property
    def nbytes(self) -> int:
        total = 0
        for key, col in self.columns.items():
            total += sum(len(b) for b in col) if key in self.image_keys else col.nbytes
        return total


def _column_to_numpy(col: pa.ChunkedArray, key: str, where: str) -> np.ndarray:
    arr = col.combine_chunks()
    typ = arr.type
    if pa.types.is_fixed_size_list(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ):
        n = len(arr)
        flat = arr.flatten()
        inner = _column_to_numpy(pa.chunked_array([flat]), key, where)
        if n and len(inner) % n:
            raise FormatError(f"{where}: column {key!r} has ragged lists; lerowds needs fixed shapes")
        return inner.reshape((n, -1) + inner.shape[1:]) if n else inner.reshape((0,) + inner.shape[1:])
    if pa.types.is_boolean(typ):
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        if arr.null_count:
            raise FormatError(f"{where}: column {key!r} has {arr.null_count} null values")
        return arr.to_numpy(zero_copy_only=False)
    raise FormatError(f"{where}: column {key!r} has unsupported type {typ}")


def parse_episode_rows(
    data: bytes, *, episode_index: int, length: int, image_keys: tuple[str, ...], where: str
) -> EpisodeRows:
    """Parse an episode's ``<key>.parquet`` member; the row count must equal ``length``."""
    try:
        # ParquetFile.read without threads: a third of read_table's CPU time for one small member
        table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except (pa.ArrowException, OSError) as e:
        raise FormatError(f"{where}: episode {episode_index}: unreadable parquet member ({e})") from e
    if table.num_rows != length:
        raise FormatError(
            f"{where}: episode {episode_index} has {table.num_rows} rows, index says {length}; re-convert it"
        )
    columns: dict[str, np.ndarray] = {}
    image_keys = tuple(image_keys) + tuple(
        f.name
        for f in table.schema
        if f.name not in image_keys and pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0
    )
    for key in table.column_names:
        col = table.column(key)
        if key in image_keys:
            struct = col.combine_chunks()
            payload = struct.field("bytes") if pa.types.is_struct(struct.type) else struct
            values = payload.to_pylist()
            if any(v is None for v in values):
                raise FormatError(
                    f"{where}: episode {episode_index}: image feature {key!r} has rows without bytes"
                )
            obj = np.empty(len(values), dtype=object)
            obj[:] = values
            columns[key] = obj
        else:
            columns[key] = _column_to_numpy(col, key, where)
    ep = columns.get("episode_index")
    if ep is not None and len(ep) and not np.all(ep == episode_index):
        raise FormatError(
            f"{where}: member of episode {episode_index} holds rows of episodes {np.unique(ep)}"
        )
    return EpisodeRows(episode_index, length, columns, image_keys)
