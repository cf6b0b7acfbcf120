"""Writing tar shards deterministically, and where each member and episode lies inside them."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lerowds.errors import FormatError
from lerowds.format.names import FILE_MODE, TAR_BLOCK

if TYPE_CHECKING:
    from typing_extensions import Self

COPY_CHUNK = 1 << 20  # FileSlices are copied through a buffer of this size (hashed while it is in cache)
PARALLEL_HASH_MIN = 1 << 16  # pieces this large are sha256-hashed on a second thread


@dataclass(frozen=True, slots=True)
class ClipRange:
    """Where a clip lies: ``size`` bytes at ``offset`` in the file at ``path`` (a tar member, read raw)."""

    path: str
    offset: int
    size: int

    def __post_init__(self) -> None:
        if self.offset < 0 or self.size <= 0:
            raise ValueError(
                f"clip range needs offset >= 0 and size > 0, got offset={self.offset} size={self.size}"
            )

    def __str__(self) -> str:
        return f"{self.path}@{self.offset}+{self.size}"


@dataclass(frozen=True, slots=True)
class FileSlices:
    """A member's content given as ``head`` bytes followed by byte ``ranges`` (offset, size) of the file
    ``path``: ``ShardWriter`` copies the ranges at write time, without holding the member in memory."""

    head: bytes
    path: str
    ranges: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.head) + sum(size for _, size in self.ranges)

    def chunks(self, buffer: bytearray) -> Iterator[bytes | memoryview]:
        """The content in pieces: ``head``, then each range read into ``buffer`` (valid until the next piece)."""
        yield self.head
        view = memoryview(buffer)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for offset, size in self.ranges:
                end = offset + size
                while offset < end:
                    want = min(len(view), end - offset)
                    got = os.preadv(fd, [view[:want]], offset)
                    if got != want:
                        raise FormatError(
                            f"{self.path}: short read at byte {offset} (wanted {want}, got {got}): the file "
                            "shrank while being copied; check the source and rerun"
                        )
                    yield view[:want]
                    offset += want
        finally:
            os.close(fd)

    def read(self) -> bytes:
        """The whole content in memory."""
        return b"".join(bytes(c) for c in self.chunks(bytearray(COPY_CHUNK)))


@dataclass(frozen=True, slots=True)
class MemberLocation:
    """Where a member's data lies inside its tar: byte offset of the data (after headers) and its size."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class EpisodeLocation:
    """Byte span of one episode's sample (from its first header to the end of its last member's padding)."""

    offset: int
    size: int
    members: tuple[MemberLocation, ...]
    crc32: int | None = None  # zlib.crc32 of the whole span, headers and padding included

    def member(self, name: str) -> MemberLocation:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


class ShardWriter:
    """Write one tar shard deterministically (fixed mtime/owner/mode) to a temp file; ``commit`` renames it.

    Members are written directly (header from ``tarfile.TarInfo.tobuf``, data, NUL padding) and the archive
    ends like ``tarfile`` ends it (two NUL blocks, then NULs up to a 10 KiB record): a plain GNU tar, without
    tarfile's 16 KiB copy loop. Use as a context manager: on an exception the temp file is removed and the
    final name never appears.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.fchmod(fd, FILE_MODE)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._sha256 = hashlib.sha256()
        self._offset = 0
        self._done = False
        self._buffer = bytearray(COPY_CHUNK)
        # sha256 of large pieces runs on a second thread while this one computes CRC-32 and writes
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="lerowds-sha256")

    def _write(self, data: bytes | memoryview, crc: int = 0) -> int:
        """Write ``data`` into the shard's hash; return ``zlib.crc32(data, crc)``."""
        if len(data) < PARALLEL_HASH_MIN:
            self._sha256.update(data)
            self._file.write(data)
            crc = zlib.crc32(data, crc)
        else:
            hashed = self._hasher.submit(self._sha256.update, data)  # both release the GIL
            self._file.write(data)
            crc = zlib.crc32(data, crc)
            hashed.result()  # before the caller reuses ``data``'s buffer
        self._offset += len(data)
        return crc

    def add_episode(self, members: Sequence[tuple[str, bytes | FileSlices]]) -> EpisodeLocation:
        """Append one sample's members (contiguously, in the given order) and return their locations."""
        start = self._offset
        locs = []
        crc = 0
        for name, data in members:
            size = len(data)
            info = tarfile.TarInfo(name)
            info.size = size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            header = info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape")
            padding = bytes(-size % TAR_BLOCK)
            crc = self._write(header, crc)
            locs.append(MemberLocation(name, self._offset, size))
            pieces = data.chunks(self._buffer) if isinstance(data, FileSlices) else (data,)
            for piece in pieces:
                crc = self._write(piece, crc)
            if self._offset != locs[-1].offset + size:
                raise FormatError(
                    f"{self.path}: member {name} wrote {self._offset - locs[-1].offset} of {size} bytes"
                )
            crc = self._write(padding, crc)
        return EpisodeLocation(start, self._offset - start, tuple(locs), crc)

    def commit(self) -> tuple[int, str]:
        """Finish the tar, fsync, rename it to its final name; return (size, sha256)."""
        self._write(bytes(2 * TAR_BLOCK))
        self._write(bytes(-self._offset % tarfile.RECORDSIZE))
        self._hasher.shutdown()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        self._done = True
        return self._offset, self._sha256.hexdigest()

    def abort(self) -> None:
        """Drop the temp file. Closing flushes the write buffer, which fails again on a full disk: that
        error is dropped with the bytes, and the temp file is removed whatever happens."""
        if self._done:
            return
        self._done = True
        try:
            self._hasher.shutdown()
            try:
                self._file.close()  # closes the descriptor even when the flush fails
            except OSError:
                pass
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()
