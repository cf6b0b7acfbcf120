"""``LocalStore``: a converted dataset on local disk, read in place with one pread per member."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lerowds.errors import FormatError
from lerowds.format import (
    ClipRange,
    DatasetIndex,
    EpisodeTable,
    read_local_index,
    read_range,
    video_columns,
)
from lerowds.reader.io.integrity import check_crc32, span_of

__all__ = ["LocalStore"]


class LocalStore:
    """A converted dataset on local disk; members are read with one pread at their offset.

    With ``verify_crc`` (the default) each episode's bytes are checked against the CRC-32 that
    ``episodes.parquet`` stores, once per process, when its parquet member is first read (its admission to
    the pool): a flipped bit on disk is a ``FormatError`` naming the episode and shard, not silently wrong
    values or pixels. Costs one read of the episode's bytes (from the page cache, usually) and their CRC-32.
    Whatever ``verify_crc`` says, each member's tar header must name that episode's member (and camera): a
    table pointing a member at another episode's or camera's bytes is a ``FormatError``, not wrong frames.

    Pickled (into spawned DataLoader workers) as its path and table checksum only: the worker reads the
    index and table again on first use (a million-episode table is ~70 MB) and refuses a changed dataset.
    """

    def __init__(self, root: str | os.PathLike[str], *, verify_crc: bool = True) -> None:
        self.root = Path(root)
        self.verify_crc = verify_crc
        self._index: DatasetIndex | None
        self._table: EpisodeTable | None
        self._index, self._table = read_local_index(self.root)
        self._sha = self._index.episodes_sha256
        self._fds: dict[str, int] = {}
        self._checked: set[int] = set()  # rows this process has admitted (CRC-32 and member headers checked)

    @property
    def index(self) -> DatasetIndex:
        return self._index if self._index is not None else self._reload()[0]

    @property
    def table(self) -> EpisodeTable:
        return self._table if self._table is not None else self._reload()[1]

    def _reload(self) -> tuple[DatasetIndex, EpisodeTable]:
        index, table = read_local_index(self.root)
        if index.episodes_sha256 != self._sha:
            raise FormatError(
                f"{self.root}: the dataset changed on disk after it was opened (episodes.parquet sha256 "
                f"{index.episodes_sha256[:12]}..., was {self._sha[:12]}...); restart the run on the new dataset"
            )
        self._index, self._table = index, table
        return index, table

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

    def _admit(self, row: int, path: str) -> None:
        """First read of ``row`` in this process: its CRC-32 (with ``verify_crc``), then its members' tar
        headers (always: a few hundred bytes, read from the page cache)."""
        span = span_of(self.table, tuple(s.name for s in self.index.shards), self.index.video_keys, row)
        fd = self._fd(path)
        if self.verify_crc:
            try:
                check_crc32(fd, span, span.offset)
            except ValueError as e:
                raise FormatError(
                    f"{path}: {e}: the shard is corrupt on disk; run `lerowds verify {self.root}`, then "
                    "convert or download that shard again"
                ) from None
        span.check_headers(lambda off, size: read_range(path, span.offset + off, size, fd=fd))
        self._checked.add(row)

    def parquet_bytes(self, row: int) -> bytes:
        path = self._shard_path(row)
        if row not in self._checked:
            self._admit(row, path)
        offset, size = int(self.table["parquet_offset"][row]), int(self.table["parquet_size"][row])
        data = os.pread(self._fd(path), size, offset)
        if len(data) != size:
            episode = int(self.table["episode_index"][row])
            raise FormatError(
                f"{path}: episode {episode}: short read of its parquet member at offset {offset} "
                f"(wanted {size} bytes, got {len(data)}); the shard is truncated: run `lerowds verify`"
            )
        return data

    def prefetch(self, rows: Sequence[int], *, workers: int = 1) -> None:
        """Local shards are read in place: nothing to fetch ahead."""

    def clip(self, row: int, video_key: str) -> ClipRange:
        off_col, size_col = video_columns(video_key)
        return ClipRange(self._shard_path(row), int(self.table[off_col][row]), int(self.table[size_col][row]))

    def release(self, row: int) -> None:
        """Local shards need no cleanup when an episode leaves the pool."""

    def close(self) -> None:
        """Close the shard file descriptors (reopened on the next read)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __getstate__(self) -> dict[str, object]:
        # file descriptors do not cross process boundaries; the index and table are read again there
        return {
            "root": self.root,
            "verify_crc": self.verify_crc,
            "_sha": self._sha,
            "_index": None,
            "_table": None,
            "_fds": {},
            "_checked": set(),
        }
