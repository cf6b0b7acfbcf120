"""A native MP4 (ISO BMFF) sample table reader and clip writer: stream copy without a demuxer or muxer.

``read_track`` parses a source mp4's ``moov`` once into numpy arrays (per sample: byte offset, size, decode
and presentation time, keyframe flag) plus the raw boxes a copy needs unchanged (``ftyp``, ``stsd`` with the
codec configuration, the track header's matrix and size). ``clip_layout`` builds a standalone mp4 for a run
of samples: ``ftyp``, a new ``moov`` (one chunk, times shifted so the first frame shows at 0), and an
``mdat`` whose payload is the samples' bytes in decode order, copied from the source file as byte ranges.
The decoder therefore sees the very same packets and codec configuration as in the source.

Only the layout lerobot's (and FFmpeg's) mp4 writer produces is handled: one video track, a non-fragmented
file, at most one edit-list entry. ``read_track`` returns ``None`` for anything else, and the caller falls
back to PyAV's demuxer and muxer.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lerowds.errors import SourceError

MOVIE_TIMESCALE = 1000  # mvhd/tkhd/elst time unit, as FFmpeg writes it
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf"}
_IDENTITY = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


class Unsupported(Exception):
    """A layout this module does not copy natively (the PyAV path handles it)."""


@dataclass(frozen=True, slots=True)
class Track:
    """One mp4 video track's sample table (``pts`` after the edit list, as FFmpeg's demuxer presents it)."""

    path: str
    file_size: int
    timescale: int
    offsets: np.ndarray  # int64, byte offset of each sample in the file (decode order)
    sizes: np.ndarray  # int64
    dts: np.ndarray  # int64, media timescale, first sample at 0
    pts: np.ndarray  # int64, media timescale, dts + composition offset - edit-list media time
    durations: np.ndarray  # int64
    keyframe: np.ndarray  # bool
    ftyp: bytes  # raw box
    stsd: bytes  # raw box (sample entry with the codec configuration)
    tkhd_tail: bytes  # layer, alternate group, volume, reserved, matrix, width, height (raw)
    language: int  # mdhd's packed language code


def _boxes(buf: bytes | memoryview, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in ``buf[start:end]``."""
    out = []
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", buf, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise Unsupported(f"truncated box header at {pos}")
            (size,) = struct.unpack_from(">Q", buf, pos + 8)
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise Unsupported(f"box {kind!r} at {pos} overruns its parent")
        out.append((kind, pos + head, pos + size))
        pos += size
    return out


def _child(buf: bytes, parent: tuple[int, int], kind: bytes, required: bool = True) -> tuple[int, int] | None:
    found = [(s, e) for k, s, e in _boxes(buf, *parent) if k == kind]
    if len(found) > 1:
        raise Unsupported(f"{len(found)} {kind.decode()} boxes")
    if not found:
        if required:
            raise Unsupported(f"no {kind.decode()} box")
        return None
    return found[0]


def _top_level(fd: int, file_size: int) -> dict[bytes, tuple[int, int]]:
    """Top-level boxes of the file: type -> (offset, size) of the whole box (header included)."""
    out: dict[bytes, tuple[int, int]] = {}
    pos = 0
    while pos + 8 <= file_size:
        head = os.pread(fd, 16, pos)
        size, kind = struct.unpack_from(">I4s", head)
        if size == 1:
            (size,) = struct.unpack_from(">Q", head, 8)
        elif size == 0:
            size = file_size - pos
        if size < 8:
            raise Unsupported(f"bad box size {size} at {pos}")
        if kind in out and kind not in (b"free", b"skip", b"mdat"):
            raise Unsupported(f"two {kind.decode(errors='replace')} boxes")
        out.setdefault(kind, (pos, size))
        pos += size
    return out


def _table(buf: bytes, box: tuple[int, int], fmt: str, fields: int) -> np.ndarray:
    """A full box's entry table (count, then ``count`` entries of ``fields`` big-endian ``fmt`` values)."""
    start, end = box
    (count,) = struct.unpack_from(">I", buf, start + 4)
    width = np.dtype(fmt).itemsize * fields
    if start + 8 + count * width > end:
        raise Unsupported("entry table overruns its box")
    return np.frombuffer(buf, dtype=fmt, count=count * fields, offset=start + 8).reshape(count, fields)


def read_track(path: str | Path) -> Track | None:
    """The sample table of ``path``'s only video track, or ``None`` when its layout is not handled here.

    A missing file is a SourceError; a malformed one returns ``None`` (the PyAV path reports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    try:
        file_size = os.fstat(fd).st_size
        top = _top_level(fd, file_size)
        if b"moof" in top or b"moov" not in top or b"ftyp" not in top:
            return None
        ftyp = os.pread(fd, top[b"ftyp"][1], top[b"ftyp"][0])
        moov_at, moov_size = top[b"moov"]
        buf = os.pread(fd, moov_size, moov_at)
        if len(buf) != moov_size:
            return None
        return _parse_moov(str(path), file_size, ftyp, buf)
    except (Unsupported, struct.error, ValueError, OSError):
        return None
    finally:
        os.close(fd)


def _parse_moov(path: str, file_size: int, ftyp: bytes, buf: bytes) -> Track:
    moov = _boxes(buf, 0, len(buf))[0][1:]
    traks = [(s, e) for k, s, e in _boxes(buf, *moov) if k == b"trak"]
    if len(traks) != 1:
        raise Unsupported(f"{len(traks)} tracks")
    trak = traks[0]
    mdia = _child(buf, trak, b"mdia")
    hdlr = _child(buf, mdia, b"hdlr")
    if buf[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
        raise Unsupported("not a video track")
    mdhd = _child(buf, mdia, b"mdhd")
    if buf[mdhd[0]] == 1:
        timescale, _, language = struct.unpack_from(">IQH", buf, mdhd[0] + 20)
    else:
        timescale, _, language = struct.unpack_from(">IIH", buf, mdhd[0] + 12)
    tkhd = _child(buf, trak, b"tkhd")
    tail_at = tkhd[0] + (4 + 32 + 8 if buf[tkhd[0]] == 1 else 4 + 20 + 8)
    tkhd_tail = buf[tail_at : tail_at + 8 + 36 + 8]
    if len(tkhd_tail) != 52:
        raise Unsupported("short tkhd")
    stbl = _child(buf, _child(buf, mdia, b"minf"), b"stbl")
    stsd = _child(buf, stbl, b"stsd")
    if struct.unpack_from(">I", buf, stsd[0] + 4)[0] != 1:
        raise Unsupported("more than one sample description")
    stsd_raw = buf[stsd[0] - 8 : stsd[1]]
    if struct.unpack_from(">I", stsd_raw)[0] != len(stsd_raw):
        raise Unsupported("stsd with a 64-bit size")

    stts = _table(buf, _child(buf, stbl, b"stts"), ">u4", 2).astype(np.int64)
    durations = np.repeat(stts[:, 1], stts[:, 0])
    n = len(durations)
    sizes = _sample_sizes(buf, stbl, n)
    offsets = _sample_offsets(buf, stbl, sizes)
    ctts_box = _child(buf, stbl, b"ctts", required=False)
    if ctts_box is None:
        comp = np.zeros(n, dtype=np.int64)
    else:
        signed = buf[ctts_box[0]] == 1
        ctts = _table(buf, ctts_box, ">u4", 2).astype(np.int64)
        values = ctts[:, 1].astype(np.uint32).view(np.int32).astype(np.int64) if signed else ctts[:, 1]
        comp = np.repeat(values, ctts[:, 0])
    stss_box = _child(buf, stbl, b"stss", required=False)
    keyframe = np.ones(n, dtype=bool)
    if stss_box is not None:
        keyframe[:] = False
        numbers = _table(buf, stss_box, ">u4", 1)[:, 0].astype(np.int64) - 1
        if numbers.size and (numbers.min() < 0 or numbers.max() >= n):
            raise Unsupported("stss names a sample that does not exist")
        keyframe[numbers] = True
    if len(comp) != n or len(offsets) != n:
        raise Unsupported("sample tables of different lengths")
    dts = np.concatenate(([0], np.cumsum(durations)[:-1])).astype(np.int64) if n else durations
    shift = _edit_shift(buf, trak)
    return Track(
        path=path,
        file_size=file_size,
        timescale=int(timescale),
        offsets=offsets,
        sizes=sizes,
        dts=dts - shift,
        pts=dts + comp - shift,
        durations=durations,
        keyframe=keyframe,
        ftyp=ftyp,
        stsd=bytes(stsd_raw),
        tkhd_tail=bytes(tkhd_tail),
        language=int(language),
    )


def _sample_sizes(buf: bytes, stbl: tuple[int, int], n: int) -> np.ndarray:
    stsz = _child(buf, stbl, b"stsz")
    constant, count = struct.unpack_from(">II", buf, stsz[0] + 4)
    if count != n:
        raise Unsupported(f"stsz counts {count} samples, stts {n}")
    if constant:
        return np.full(n, constant, dtype=np.int64)
    if stsz[0] + 12 + 4 * n > stsz[1]:
        raise Unsupported("stsz overruns its box")
    return np.frombuffer(buf, dtype=">u4", count=n, offset=stsz[0] + 12).astype(np.int64)


def _sample_offsets(buf: bytes, stbl: tuple[int, int], sizes: np.ndarray) -> np.ndarray:
    """Each sample's file offset from the chunk offsets (stco/co64) and the sample-to-chunk runs (stsc)."""
    stco = _child(buf, stbl, b"stco", required=False)
    if stco is not None:
        chunk_offsets = _table(buf, stco, ">u4", 1)[:, 0].astype(np.int64)
    else:
        chunk_offsets = _table(buf, _child(buf, stbl, b"co64"), ">u8", 1)[:, 0].astype(np.int64)
    stsc = _table(buf, _child(buf, stbl, b"stsc"), ">u4", 3).astype(np.int64)
    chunks = len(chunk_offsets)
    if not len(stsc) or stsc[0, 0] != 1 or np.any(np.diff(stsc[:, 0]) <= 0) or stsc[-1, 0] > chunks:
        raise Unsupported("malformed stsc")
    run_ends = np.append(stsc[1:, 0], chunks + 1)
    per_chunk = np.repeat(stsc[:, 1], run_ends - stsc[:, 0])
    if per_chunk.sum() != len(sizes):
        raise Unsupported(f"stsc places {per_chunk.sum()} samples, stsz has {len(sizes)}")
    chunk_of = np.repeat(np.arange(chunks), per_chunk)
    first_of_chunk = np.concatenate(([0], np.cumsum(per_chunk)[:-1]))
    before = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    return chunk_offsets[chunk_of] + before - before[first_of_chunk[chunk_of]]


def _edit_shift(buf: bytes, trak: tuple[int, int]) -> int:
    """The media time the edit list starts presentation at (0 without one); more than one edit is Unsupported."""
    edts = _child(buf, trak, b"edts", required=False)
    if edts is None:
        return 0
    elst = _child(buf, edts, b"elst", required=False)
    if elst is None:
        return 0
    version = buf[elst[0]]
    (count,) = struct.unpack_from(">I", buf, elst[0] + 4)
    if count == 0:
        return 0
    if count != 1:
        raise Unsupported(f"{count} edit-list entries")
    if version == 1:
        _, media_time, rate = struct.unpack_from(">Qqi", buf, elst[0] + 8)
    else:
        _, media_time, rate = struct.unpack_from(">Iii", buf, elst[0] + 8)
    if media_time < 0 or rate != 0x10000:
        raise Unsupported("an empty or rate-changing edit")
    return int(media_time)


# ----------------------------------------------------------------------------------------------- writing
def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def _runs(values: np.ndarray) -> np.ndarray:
    """Run-length encode: rows of (count, value)."""
    if not len(values):
        return np.zeros((0, 2), dtype=np.int64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    counts = np.diff(np.append(starts, len(values)))
    return np.stack([counts, values[starts]], axis=1)


def _entries(kind: bytes, version: int, rows: np.ndarray, fmt: str) -> bytes:
    table = np.ascontiguousarray(rows, dtype=np.int64).astype(fmt)
    return _full(kind, version, 0, struct.pack(">I", len(rows)), table.tobytes())


def _rescale_up(value: int, src: int, dst: int) -> int:
    return -(-value * dst // src)


@dataclass(frozen=True, slots=True)
class ClipLayout:
    """A standalone mp4: ``head`` (ftyp, moov, mdat header), then the source byte ``ranges`` in order."""

    head: bytes
    ranges: tuple[tuple[int, int], ...]  # (offset, size) in the source file

    @property
    def size(self) -> int:
        return len(self.head) + sum(size for _, size in self.ranges)


def clip_layout(track: Track, first: int, stop: int) -> ClipLayout:
    """The mp4 holding samples ``first..stop-1`` (decode order) of ``track``, first shown frame at time 0."""
    sl = slice(first, stop)
    sizes, durations = track.sizes[sl], track.durations[sl]
    dts = track.dts[sl] - track.dts[first]
    comp = track.pts[sl] - track.dts[sl]
    media_shift = int((dts + comp).min())  # the edit list's media time: the first shown frame at 0
    media_duration = int(durations.sum())
    movie_duration = _rescale_up(media_duration, track.timescale, MOVIE_TIMESCALE)
    stbl_tables = [track.stsd, _entries(b"stts", 0, _runs(durations), ">u4")]
    if np.any(comp):
        negative = bool(np.any(comp < 0))
        stbl_tables.append(_entries(b"ctts", int(negative), _runs(comp), ">i4" if negative else ">u4"))
    key = track.keyframe[sl]
    if not key.all():
        stbl_tables.append(_entries(b"stss", 0, (np.flatnonzero(key) + 1)[:, None], ">u4"))
    count = stop - first
    stbl_tables.append(_full(b"stsc", 0, 0, struct.pack(">IIII", 1, 1, count, 1)))
    if np.all(sizes == sizes[0]):
        stbl_tables.append(_full(b"stsz", 0, 0, struct.pack(">II", int(sizes[0]), count)))
    else:
        stbl_tables.append(_full(b"stsz", 0, 0, struct.pack(">II", 0, count), sizes.astype(">u4").tobytes()))
    payload = int(sizes.sum())
    large = payload + (1 << 16) >= 1 << 32

    def moov(chunk_offset: int) -> bytes:
        chunk = (
            _full(b"co64", 0, 0, struct.pack(">IQ", 1, chunk_offset))
            if large
            else _full(b"stco", 0, 0, struct.pack(">II", 1, chunk_offset))
        )
        stbl = _box(b"stbl", *stbl_tables, chunk)
        minf = _box(
            b"minf",
            _full(b"vmhd", 0, 1, bytes(8)),
            _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1))),
            stbl,
        )
        mdia = _box(
            b"mdia",
            _full(
                b"mdhd",
                1,
                0,
                struct.pack(">QQIQH", 0, 0, track.timescale, media_duration, track.language),
                bytes(2),
            ),
            _full(b"hdlr", 0, 0, bytes(4), b"vide", bytes(12), b"VideoHandler\0"),
            minf,
        )
        edts = b""
        if media_shift:
            elst = struct.pack(">IQqi", 1, movie_duration, media_shift, 0x10000)
            edts = _box(b"edts", _full(b"elst", 1, 0, elst))
        tkhd = _full(
            b"tkhd", 1, 3, struct.pack(">QQIIQ", 0, 0, 1, 0, movie_duration), bytes(8), track.tkhd_tail
        )
        mvhd = _full(
            b"mvhd", 1, 0,
            struct.pack(">QQIQ", 0, 0, MOVIE_TIMESCALE, movie_duration),
            struct.pack(">iH", 0x10000, 0x100), bytes(10), _IDENTITY, bytes(24), struct.pack(">I", 2),
        )  # fmt: skip
        return _box(b"moov", mvhd, _box(b"trak", tkhd, edts, mdia))

    mdat_head = 16 if large else 8
    chunk_offset = len(track.ftyp) + len(moov(0)) + mdat_head
    mdat = (
        struct.pack(">I4sQ", 1, b"mdat", 16 + payload) if large else struct.pack(">I4s", 8 + payload, b"mdat")
    )
    head = track.ftyp + moov(chunk_offset) + mdat
    return ClipLayout(head, _merge(track.offsets[sl], sizes))


def _merge(offsets: np.ndarray, sizes: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Adjacent byte ranges joined: a single-track file gives one range per clip."""
    if not len(offsets):
        return ()
    ends = offsets + sizes
    breaks = np.flatnonzero(offsets[1:] != ends[:-1]) + 1
    starts = np.concatenate(([0], breaks))
    stops = np.append(breaks, len(offsets))
    return tuple((int(offsets[a]), int(ends[b - 1] - offsets[a])) for a, b in zip(starts, stops))
