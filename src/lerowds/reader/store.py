"""Where a converted dataset's bytes come from: its index, episode table, and episode members by offset."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lerowds.errors import ConfigError, FormatError
from lerowds.format import (
    DatasetIndex,
    EpisodeTable,
    read_local_index,
    video_columns,
)


@dataclass(frozen=True, slots=True)
class ClipRef:
    """A clip as a byte range of a local file (a shard, or a cached download)."""

    path: str
    offset: int
    size: int

    def describe(self) -> str:
        return f"{self.path}@{self.offset}+{self.size}"


class EpisodeStore(Protocol):
    """The reader's view of a dataset: metadata, and per-episode member bytes / clip ranges."""

    index: DatasetIndex
    table: EpisodeTable

    def parquet_bytes(self, row: int) -> bytes: ...

    def clip(self, row: int, video_key: str) -> ClipRef: ...

    def release(self, row: int) -> None: ...


class LocalStore:
    """A converted dataset on local disk; members are read with one pread at their offset."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.index, self.table = read_local_index(self.root)
        self._fds: dict[str, int] = {}

    def _shard_path(self, row: int) -> str:
        shard = int(self.table["shard"][row])
        return str(self.root / self.index.shards[shard].name)

    def _fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                raise FormatError(
                    f"{path}: shard listed in the index is missing; re-convert or re-download it"
                ) from None
            self._fds[path] = fd
        return fd

    def parquet_bytes(self, row: int) -> bytes:
        path = self._shard_path(row)
        offset, size = int(self.table["parquet_offset"][row]), int(self.table["parquet_size"][row])
        data = os.pread(self._fd(path), size, offset)
        if len(data) != size:
            episode = int(self.table["episode_index"][row])
            raise FormatError(
                f"{path}: episode {episode}: short read of its parquet member at offset {offset} "
                f"(wanted {size} bytes, got {len(data)}); the shard is truncated: run `lerowds verify`"
            )
        return data

    def clip(self, row: int, video_key: str) -> ClipRef:
        off_col, size_col = video_columns(video_key)
        return ClipRef(self._shard_path(row), int(self.table[off_col][row]), int(self.table[size_col][row]))

    def release(self, row: int) -> None:
        """Local shards need no cleanup when an episode leaves the pool."""

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_fds"] = {}  # file descriptors do not cross process boundaries
        return state


def open_store(source: str | os.PathLike[str]) -> EpisodeStore:
    """Open a converted dataset from a local directory (remote sources: see ``lerowds.reader.remote``)."""
    text = os.fspath(source)
    if "://" in text and not text.startswith("file://"):
        raise ConfigError(
            f"source {text!r}: remote sources are not supported by this build yet; "
            "download the converted dataset and pass its local directory"
        )
    if text.startswith("file://"):
        text = text[len("file://") :]
    if not Path(text).is_dir():
        raise FormatError(f"source {text!r} is not a directory holding a converted lerowds dataset")
    return LocalStore(text)
