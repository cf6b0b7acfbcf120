"""Cut one episode's segment out of a source mp4 into a standalone mp4, by stream copy (or re-encode).

The clip holds exactly the packets whose presentation time lies in the segment (half a frame of tolerance),
shifted so that the first frame has timestamp 0. Muxing is deterministic (``fflags=+bitexact``: no encoder
tag, no creation time), so the same input gives the same bytes. A segment that does not start on a keyframe,
or whose frames depend on packets outside it, cannot be copied without changing its pixels: that is a
ConversionError unless ``reencode`` is set.
"""

from __future__ import annotations

import io
import logging
import os
from collections import OrderedDict
from contextlib import closing
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.stream
import numpy as np

from lerowds.avcompat import index_entries
from lerowds.convert import mp4
from lerowds.errors import ConversionError, SourceError
from lerowds.format import FileSlices

log = logging.getLogger(__name__)

MUX_OPTIONS = {"fflags": "+bitexact"}
SEEK_MARGIN_S = 1.0  # seek this far before a segment so reordered (B-frame) packets are not missed

# Re-encode: the encoder of each codec family, with lerobot's random-access GOP (a keyframe every 2 frames).
# One thread, because x264 and SVT-AV1 output depends on the thread count: the bytes stay machine-independent.
ENCODERS: dict[str, tuple[str, dict[str, str]]] = {
    "av1": ("libsvtav1", {"crf": "30", "g": "2", "svtav1-params": "lp=1"}),
    "h264": ("libx264", {"crf": "18", "g": "2", "preset": "medium"}),
    "hevc": ("libx265", {"crf": "20", "g": "2", "x265-params": "log-level=error:pools=1:frame-threads=1"}),
    "vp9": ("libvpx-vp9", {"crf": "30", "b": "0", "g": "2"}),
    "mpeg4": ("mpeg4", {"q": "2", "g": "2"}),
}


@dataclass(frozen=True, slots=True)
class VideoClip:
    """A standalone mp4 of one episode's camera: its bytes, frame count, codec, and whether it was re-encoded."""

    content: bytes | FileSlices  # in memory, or copied from the source file when the shard is written
    num_frames: int
    codec: str
    reencoded: bool

    def __post_init__(self) -> None:
        if self.num_frames < 1 or not len(self.content):
            raise ValueError(
                f"a clip needs frames and bytes, got {self.num_frames} frames, {len(self.content)} B"
            )

    @property
    def data(self) -> bytes:
        """The clip's bytes (read from the source file for a native copy)."""
        return self.content.read() if isinstance(self.content, FileSlices) else self.content


def open_video(path: str | Path) -> av.container.InputContainer:
    """Open an mp4 for reading; a missing or unreadable file is a SourceError naming it."""
    try:
        container = av.open(str(path), mode="r")
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except (av.FFmpegError, OSError) as e:
        raise SourceError(f"{path}: unreadable mp4 ({e}); the file is truncated or corrupt") from e
    if not container.streams.video:
        container.close()
        raise SourceError(f"{path}: holds no video stream")
    return container


def _prefetch(path: str | Path) -> None:
    """Ask the kernel to read the file ahead in large requests (FFmpeg reads 32 KiB at a time)."""
    if hasattr(os, "posix_fadvise"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return  # open_video reports it
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


# Sample-entry four-character codes of the codecs the native path copies, with PyAV's codec names.
NATIVE_CODECS = {
    b"av01": "av1",
    b"avc1": "h264",
    b"avc3": "h264",
    b"hvc1": "hevc",
    b"hev1": "hevc",
    b"vp09": "vp9",
}


class VideoFiles:
    """Source mp4s kept while consecutive episodes cut clips from them (small LRUs; ``close`` at the end):
    their native sample tables (``track``) and, for layouts those do not cover, open PyAV containers."""

    def __init__(self, capacity: int = 8, native: bool = True) -> None:
        self._open: OrderedDict[str, av.container.InputContainer] = OrderedDict()
        self._tracks: OrderedDict[str, mp4.Track | None] = OrderedDict()
        self._capacity = capacity
        self._native = native
        self.checked: set[str] = set()  # files whose stream was checked against meta/info.json

    def track(self, path: str | Path) -> mp4.Track | None:
        """The file's native sample table, or None when it must go through PyAV (layout or codec)."""
        if not self._native:
            return None
        key = str(path)
        if key not in self._tracks:
            track = mp4.read_track(path)
            if track is not None and track.stsd[20:24] not in NATIVE_CODECS:
                track = None
            if track is None:
                log.debug("%s: not a layout the native remux handles; using PyAV", path)
            self._tracks[key] = track
            while len(self._tracks) > self._capacity:
                self._tracks.popitem(last=False)
        self._tracks.move_to_end(key)
        return self._tracks[key]

    def get(self, path: str | Path) -> av.container.InputContainer:
        key = str(path)
        container = self._open.get(key)
        if container is None:
            _prefetch(path)
            container = self._open[key] = open_video(path)
            while len(self._open) > self._capacity:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(key)
        return container

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()


def cut_clip(
    path: str | Path,
    from_timestamp: float,
    to_timestamp: float,
    fps: int,
    *,
    expected_frames: int,
    label: str,
    reencode: bool = False,
    videos: VideoFiles | None = None,
) -> VideoClip:
    """The clip of ``path`` between ``from_timestamp`` and ``to_timestamp`` (seconds), ``expected_frames`` long.

    ``label`` names the episode and camera in error messages. With ``reencode``, a segment that cannot be
    stream-copied is decoded and re-encoded instead (same codec family and pixel format, see ``ENCODERS``).
    ``videos`` keeps source files open between calls.
    """
    if videos is None:
        with closing(VideoFiles(capacity=1)) as own:
            return cut_clip(
                path, from_timestamp, to_timestamp, fps, expected_frames=expected_frames, label=label,
                reencode=reencode, videos=own,
            )  # fmt: skip
    half = 0.5 / fps
    lo, hi = from_timestamp - half, to_timestamp - half
    where = f"{label}: {path} segment [{from_timestamp:.6g}s, {to_timestamp:.6g}s)"
    track = videos.track(path)
    if track is not None:
        first, stop, reason = _select_samples(track, lo, hi)
        if stop - first == expected_frames and reason is None:
            end = int((track.offsets[first:stop] + track.sizes[first:stop]).max())
            if end > track.file_size:
                raise SourceError(
                    f"{path}: unreadable mp4 (truncated: {label} needs {end} bytes, the file has "
                    f"{track.file_size}); re-download it"
                )
            layout = mp4.clip_layout(track, first, stop)
            content = FileSlices(layout.head, str(path), layout.ranges)
            return VideoClip(content, expected_frames, NATIVE_CODECS[track.stsd[20:24]], reencoded=False)
        # a miscounted or uncopyable segment: the PyAV path below reports it (or re-encodes it)
    container = videos.get(path)
    stream = container.streams.video[0]
    codec = stream.codec_context.codec.canonical_name  # the family: "av1" for the libdav1d decoder too
    try:
        packets, reason = _select_packets(container, stream, lo, hi)
    except av.FFmpegError as e:
        raise SourceError(f"{path}: unreadable mp4 while reading {label} ({e}); truncated or corrupt?") from e
    if len(packets) != expected_frames:
        _raise_if_truncated(path, stream)
        raise ConversionError(
            f"{where} holds {len(packets)} frames but the episode metadata says length={expected_frames} "
            "(video frame count disagrees with the metadata; truncated mp4?)"
        )
    if reason is None:
        return VideoClip(_mux_copy(stream, packets), len(packets), codec, reencoded=False)
    if not reencode:
        raise ConversionError(
            f"{where} cannot be stream-copied: {reason}; rerun with --reencode to decode and re-encode "
            "such segments (their pixels then differ slightly from the source)"
        )
    log.info("%s: %s; re-encoding it", where, reason)
    try:
        data = _reencode(container, stream, lo, hi, fps, expected_frames, where)
    except av.FFmpegError as e:
        raise ConversionError(f"{where}: re-encoding failed ({e})") from e
    return VideoClip(data, expected_frames, codec, reencoded=True)


def _raise_if_truncated(path: str | Path, stream: av.stream.Stream) -> None:
    """A SourceError when the mp4's sample index points past the end of the file."""
    end = _index_end(path, stream)
    size = os.path.getsize(path)
    if end is not None and end > size:
        raise SourceError(
            f"{path}: unreadable mp4 (truncated: its index needs {end} bytes, the file has {size}); re-download it"
        )


def _index_end(path: str | Path, stream: av.stream.Stream) -> int | None:
    """The end of the last sample the mp4's index points to: from the demuxer's index (PyAV >= 17), else
    from the native sample table; None when neither is available (the caller's frame-count error then
    says "truncated mp4?")."""
    entries = index_entries(stream)
    if entries is not None:
        return max((e.pos + e.size for e in entries), default=0)
    track = mp4.read_track(path)
    if track is None or not len(track.sizes):
        return None
    return int((track.offsets + track.sizes).max())


def _seek(container: av.container.InputContainer, stream: av.stream.Stream, seconds: float) -> None:
    """Seek to the keyframe at or before ``seconds`` (the start of the file when ``seconds`` <= 0)."""
    if seconds > 0:
        container.seek(int(seconds / stream.time_base), stream=stream, backward=True, any_frame=False)
    else:
        container.seek(0, backward=True, any_frame=False)


def _select_packets(
    container: av.container.InputContainer, stream: av.stream.Stream, lo: float, hi: float
) -> tuple[list[av.Packet], str | None]:
    """Packets (decode order) whose pts lies in [lo, hi), and why they cannot be copied as-is (None if they can)."""
    tb = float(stream.time_base)  # float math: Fraction arithmetic per packet costs more than the copy
    start = lo - SEEK_MARGIN_S
    _seek(container, stream, start)
    seen: list[tuple[av.Packet, bool]] = []
    for packet in container.demux(stream):
        if packet.pts is None:
            if packet.size == 0:
                continue  # the demuxer's end-of-stream packet
            raise av.InvalidDataError(0, f"a packet without timestamp at byte {packet.pos}")
        dts = packet.dts if packet.dts is not None else packet.pts
        if not seen and start > 0 and dts * tb > start + 1e-9:
            # The demuxer landed after the requested point: demux from the start rather than miss packets.
            container.seek(0)
            start = 0.0
            continue
        t = packet.pts * tb
        seen.append((packet, lo <= t < hi))
        if dts * tb >= hi:  # every later packet has pts >= dts >= hi
            break
    positions = [i for i, (_, inside) in enumerate(seen) if inside]
    packets = [seen[i][0] for i in positions]
    if not packets:
        return packets, None
    first = packets[0]
    reason = _copy_obstacle(
        first.is_keyframe,
        first.pts * tb,
        positions == list(range(positions[0], positions[-1] + 1)),
        first.pts == min(p.pts for p in packets),
    )
    return packets, reason


def _copy_obstacle(keyframe: bool, first_s: float, contiguous: bool, first_shown: bool) -> str | None:
    """Why a segment's packets cannot be copied as they are (None if they can): the same rule for the
    PyAV and the native path. ``first_s``: the first packet's pts in seconds."""
    if not keyframe:
        return f"its first packet (pts {first_s:.6g}s) is not a keyframe"
    if not contiguous:
        return "packets of other episodes are interleaved with its packets (B-frames across the cut)"
    if not first_shown:
        return "frames shown before its keyframe depend on the previous segment (open GOP)"
    return None


def _select_samples(track: mp4.Track, lo: float, hi: float) -> tuple[int, int, str | None]:
    """``_select_packets`` on a native sample table: (first, stop) in decode order, and why the samples
    cannot be copied as-is (None if they can). ``stop - first`` counts only the samples in [lo, hi)."""
    tb = float(Fraction(1, track.timescale))  # the same float math as the PyAV path's ``pts * time_base``
    t = track.pts * tb
    positions = np.flatnonzero((t >= lo) & (t < hi))
    if not len(positions):
        return 0, 0, None
    first, last = int(positions[0]), int(positions[-1])
    contiguous = last - first + 1 == len(positions)
    reason = _copy_obstacle(
        bool(track.keyframe[first]),
        float(t[first]),
        contiguous,
        contiguous and track.pts[first] == track.pts[first : last + 1].min(),
    )
    return first, first + len(positions), reason


def _mux_copy(template: av.stream.Stream, packets: list[av.Packet]) -> bytes:
    """Remux ``packets`` (decode order) into an mp4 whose first frame has pts 0."""
    offset = min(p.pts for p in packets)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options=MUX_OPTIONS) as out:
        ostream = out.add_stream_from_template(template, opaque=True)
        ostream.time_base = template.time_base  # PyAV 15 leaves it to the muxer (1/90000)
        for packet in packets:
            packet.pts -= offset
            packet.dts = (packet.dts if packet.dts is not None else packet.pts + offset) - offset
            packet.stream = ostream
            out.mux(packet)
    return buf.getvalue()


def _reencode(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    lo: float,
    hi: float,
    fps: int,
    expected_frames: int,
    where: str,
) -> bytes:
    """Decode the frames in [lo, hi) (from the keyframe before) and encode them into a new mp4."""
    tb = stream.time_base
    _seek(container, stream, lo - SEEK_MARGIN_S)
    frames = []
    for frame in container.decode(stream):
        t = float(frame.pts * tb)
        if t >= hi:
            break
        if t >= lo:
            frames.append(frame)
    if len(frames) != expected_frames:
        raise ConversionError(f"{where}: decoded {len(frames)} frames, expected {expected_frames}")
    # SVT-AV1 prints its banner to stderr unless told to log errors only
    os.environ.setdefault("SVT_LOG", "1")
    ctx = stream.codec_context
    family = ctx.codec.canonical_name
    encoder, options = ENCODERS.get(family, (family, {}))
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4", options=MUX_OPTIONS) as out:
        try:
            ostream = out.add_stream(encoder, rate=Fraction(fps))
        except (av.FFmpegError, ValueError) as e:
            raise ConversionError(
                f"{where}: no encoder {encoder!r} for codec {family!r} to re-encode with"
            ) from e
        ostream.width, ostream.height = ctx.width, ctx.height
        ostream.pix_fmt = ctx.pix_fmt or "yuv420p"
        ostream.codec_context.thread_count = 1
        ostream.codec_context.options = dict(options)
        for k, frame in enumerate(frames):
            frame.pts = k
            frame.time_base = Fraction(1, fps)
            frame.pict_type = av.video.frame.PictureType.NONE
            out.mux(ostream.encode(frame))
        out.mux(ostream.encode(None))
    return buf.getvalue()


def count_frames(data: bytes, *, decode: bool = True) -> tuple[int, int]:
    """(packets, decoded frames) of an mp4 held in memory; decoded is -1 when ``decode`` is False."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        packets = sum(1 for p in container.demux(stream) if p.size > 0)
        if not decode:
            return packets, -1
        container.seek(0)
        stream.codec_context.thread_count = 1
        decoded = sum(1 for _ in container.decode(stream))
    return packets, decoded
