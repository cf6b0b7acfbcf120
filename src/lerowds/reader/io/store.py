"""Where a converted dataset's bytes come from: the ``EpisodeStore`` protocol and ``open_store``, which opens
a local directory (``local.py``) or a remote URL (``remote.py``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from lerowds.errors import FormatError
from lerowds.format import ClipRange, DatasetIndex, EpisodeTable
from lerowds.reader.io.local import LocalStore

__all__ = ["EpisodeStore", "LocalStore", "open_store"]

if TYPE_CHECKING:
    from lerowds.reader.io.options import RemoteOptions


class EpisodeStore(Protocol):
    """The reader's view of a dataset: metadata, and per-episode member bytes / clip ranges."""

    index: DatasetIndex
    table: EpisodeTable

    def prefetch(self, rows: Sequence[int], *, workers: int = 1) -> None:
        """The episodes (table rows) this consumer will admit, in order: fetch ahead if remote. ``workers``:
        the DataLoader workers of this rank (1 in the main process), which share a remote cache's limit."""
        ...

    def parquet_bytes(self, row: int) -> bytes:
        """The episode's ``<key>.parquet`` member (blocks until fetched for a remote source)."""
        ...

    def clip(self, row: int, video_key: str) -> ClipRange:
        """Where the episode's clip for ``video_key`` lies in a local file (shard or cache)."""
        ...

    def release(self, row: int) -> None:
        """The episode left the pool: a remote store may delete its cached bytes."""
        ...

    def close(self) -> None:
        """Stop background work and release everything this process holds; the store stays usable."""
        ...


def open_store(
    source: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_limit: int | str | None = None,
    remote: RemoteOptions | None = None,
    verify_crc: bool = True,
) -> EpisodeStore:
    """Open a converted dataset: a local directory, or a remote URL (http(s)://, hf://datasets/ORG/NAME,
    another fsspec URL) streamed through a bounded local cache (see ``lerowds.reader.io.remote``, which checks
    every download). ``verify_crc``: check each local episode's CRC-32 when it is first read."""
    text = os.fspath(source)
    if "://" in text and not text.startswith("file://"):
        from lerowds.reader.io.remote import open_remote_store

        return open_remote_store(
            text, cache_dir=cache_dir, cache_limit=cache_limit, options=remote, verify_crc=verify_crc
        )
    text = text.removeprefix("file://")
    if not Path(text).is_dir():
        raise FormatError(f"source {text!r} is not a directory holding a converted lerowds dataset")
    return LocalStore(text, verify_crc=verify_crc)
