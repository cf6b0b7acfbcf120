"""Check a downloaded episode span before it is used: tar headers, member layout, metadata and table decode.

Without a per-episode checksum in the index, a flipped byte inside a video member cannot be seen; where the
episode table has a ``crc32`` column (CRC-32 of the whole span, see docs/REMOTE.md), it is checked too.
``check_crc32`` alone is what the local reader checks when it admits an episode.
Every failure is a ``ValueError`` naming what is wrong, so the downloader fetches the span again; except a
member whose tar header names another episode or camera in intact bytes: a ``FormatError`` (the table is
wrong, not the download). ``Span.check_headers`` alone is what the local reader checks at admission.
"""

from __future__ import annotations

import json
import mmap
import os
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.format import CRC32_COLUMN, EpisodeTable, check_member_headers, video_columns


@dataclass(frozen=True, slots=True)
class Span:
    """Where one episode's bytes lie: ``size`` bytes at ``offset`` of shard file ``shard``."""

    row: int
    episode: int
    shard: str
    offset: int
    size: int
    length: int  # frames
    members: tuple[tuple[int, int], ...]  # (offset inside the span, size) of json, parquet, videos
    crc32: int | None
    video_keys: tuple[str, ...] = ()  # the cameras of ``members[2:]``

    def check_headers(self, read: Callable[[int, int], bytes]) -> None:
        """FormatError unless each member's tar header names this episode's member (and camera);
        ``read(offset, size)`` reads bytes at offsets inside the span."""
        check_member_headers(read, self.episode, self.members, self.video_keys, self.describe())

    def describe(self) -> str:
        return f"episode {self.episode} ({self.shard} bytes {self.offset}-{self.offset + self.size - 1})"


def span_of(table: EpisodeTable, shard_names: tuple[str, ...], video_keys: list[str], row: int) -> Span:
    off = int(table["offset"][row])
    members = [
        (int(table["json_offset"][row]) - off, int(table["json_size"][row])),
        (int(table["parquet_offset"][row]) - off, int(table["parquet_size"][row])),
    ]
    for key in video_keys:
        oc, sc = video_columns(key)
        members.append((int(table[oc][row]) - off, int(table[sc][row])))
    crc = table.columns.get(CRC32_COLUMN)
    return Span(
        row=row,
        episode=int(table["episode_index"][row]),
        shard=shard_names[int(table["shard"][row])],
        offset=off,
        size=int(table["size"][row]),
        length=int(table["length"][row]),
        members=tuple(members),
        crc32=None if crc is None else int(crc[row]) & 0xFFFFFFFF,
        video_keys=tuple(video_keys),
    )


class Crc32:
    """Running CRC-32 of bytes written in order from position 0 (a restart at 0 resets it)."""

    def __init__(self) -> None:
        self.value = 0
        self.end = 0

    def update(self, pos: int, data: memoryview) -> None:
        if pos == 0:
            self.value, self.end = 0, 0
        if pos != self.end:  # out of order: cannot happen with sequential writes; make it fail loudly
            self.value, self.end = -1, -1
            return
        self.value = zlib.crc32(data, self.value)
        self.end += len(data)


def verify_span(fd: int, span: Span, crc: int | None = None) -> None:
    """Raise ``ValueError`` unless the span in file ``fd`` looks like the episode the index describes
    (a corrupt download: fetched again), ``FormatError`` if its bytes are intact (CRC-32) but a member the
    table points at belongs to another episode or camera (a bad table: fetching again cannot help)."""
    if span.crc32 is not None and crc is not None and crc != span.crc32:
        raise ValueError(f"{span.describe()}: CRC-32 {crc:08x}, the index says {span.crc32:08x}")
    if span.crc32 is not None and crc is None:
        check_crc32(fd, span, 0)
    with mmap.mmap(fd, span.size, prot=mmap.PROT_READ) as mm:
        if span.crc32 is not None:  # the CRC-32 matched: intact bytes, so a wrong member is the table's fault
            span.check_headers(lambda off, size: mm[off : off + size])
        found = {}
        try:
            with tarfile.open(fileobj=mm, mode="r:") as tar:  # type: ignore[call-overload]
                for info in tar:
                    found[info.offset_data] = info
        except tarfile.TarError as e:
            raise ValueError(f"{span.describe()}: bad tar header ({e})") from None
        for off, size in span.members:
            info = found.get(off)
            if info is None or info.size != size:
                raise ValueError(f"{span.describe()}: no {size}-byte member at span offset {off}")
        if span.crc32 is None:  # headers that parse, at the right offsets: not a corrupt download
            span.check_headers(lambda off, size: mm[off : off + size])
        (j_off, j_size), (p_off, p_size) = span.members[:2]
        try:
            meta = json.loads(mm[j_off : j_off + j_size])
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{span.describe()}: metadata member is not JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("episode_index") != span.episode:
            raise ValueError(f"{span.describe()}: metadata member is of another episode")
        try:
            rows = pq.read_metadata(pa.BufferReader(mm[p_off : p_off + p_size])).num_rows
            pq.read_table(pa.BufferReader(mm[p_off : p_off + p_size]))
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{span.describe()}: parquet member does not decode ({e})") from None
        if rows != span.length:
            raise ValueError(
                f"{span.describe()}: parquet member has {rows} rows, the index says {span.length}"
            )


def check_crc32(fd: int, span: Span, offset: int) -> None:
    """Raise ``ValueError`` unless the span's ``span.size`` bytes at ``offset`` of file ``fd`` (the shard:
    ``span.offset``; a cached download: 0) have the CRC-32 the episode table stores (a short file fails)."""
    if span.crc32 is None:
        return
    value, pos = 0, 0
    while pos < span.size:
        block = os.pread(fd, min(1 << 20, span.size - pos), offset + pos)
        if not block:
            break
        value, pos = zlib.crc32(block, value), pos + len(block)
    if pos != span.size:
        raise ValueError(f"{span.describe()}: only {pos} of its {span.size} bytes are there (truncated)")
    if value != span.crc32:
        raise ValueError(f"{span.describe()}: CRC-32 {value:08x}, the index says {span.crc32:08x}")
