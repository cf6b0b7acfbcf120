"""Clips as seekable read-only files: a byte range of a tar shard read in place, or a buffer in memory.

PyAV and torchcodec both read a clip through such a file object (``open_clip``); ``describe_source`` names
a clip in messages the same way before and after it is opened.
"""

from __future__ import annotations

import io
import os
from typing import Any

from lerowds.errors import FormatError
from lerowds.format import ClipRange

ClipSource = ClipRange | str | os.PathLike | bytes | bytearray | memoryview


class ClipFile(io.RawIOBase):
    """A read-only, seekable window of ``size`` bytes; subclasses say how to read at a position."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def _read_at(self, pos: int, n: int) -> bytes:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"whence must be 0, 1 or 2, got {whence}")
        if base + offset < 0:
            raise ValueError(f"cannot seek to {base + offset} (before the start) in {self}")
        self._pos = base + offset
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError(f"read from closed clip {self}")
        n = self._size - self._pos if n is None or n < 0 else min(n, self._size - self._pos)
        if n <= 0:
            return b""
        data = self._read_at(self._pos, n)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class ByteRangeFile(ClipFile):
    """``[offset, offset + size)`` of a file, read with ``os.pread`` on one fd; nothing is copied up front."""

    def __init__(self, path: str | os.PathLike, offset: int, size: int) -> None:
        super().__init__(size)
        self._path = os.fspath(path)
        self._offset = offset
        self._fd = os.open(self._path, os.O_RDONLY)
        file_size = os.fstat(self._fd).st_size
        if offset < 0 or size < 0 or offset + size > file_size:
            os.close(self._fd)
            self._fd = -1  # or the finalizer's close() would close whatever file reuses the number
            raise FormatError(
                f"clip {self} lies outside {self._path!r} ({file_size} bytes): shard truncated or index wrong"
            )

    def _read_at(self, pos: int, n: int) -> bytes:
        return os.pread(self._fd, n, self._offset + pos)

    def close(self) -> None:
        if not self.closed and getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()

    def __str__(self) -> str:
        return f"{self._path}@{self._offset}+{self._size}"


class MemoryClipFile(ClipFile):
    """A clip already in memory (e.g. fetched from a remote cache); the buffer is shared, not copied."""

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(buffer).cast("B")
        super().__init__(self._view.nbytes)

    def _read_at(self, pos: int, n: int) -> bytes:
        return self._view[pos : pos + n].tobytes()

    def __str__(self) -> str:
        return f"<memory {self._size} bytes>"


def describe_source(source: ClipSource) -> str:
    """How a clip is named in messages: ``shards/shard-000003.tar@123456+7890`` or ``<memory 7890 bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<memory {memoryview(source).nbytes} bytes>"
    return str(source) if isinstance(source, ClipRange) else os.fspath(source)


def open_clip(source: ClipSource) -> ClipFile:
    """Open a clip as a seekable file object that PyAV and torchcodec accept."""
    if isinstance(source, ClipRange):
        return ByteRangeFile(source.path, source.offset, source.size)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return MemoryClipFile(source)
    if isinstance(source, (str, os.PathLike)):
        return ByteRangeFile(source, 0, os.path.getsize(source))
    raise TypeError(f"a clip source is a ClipRange, a path or bytes, got {type(source).__name__}")
