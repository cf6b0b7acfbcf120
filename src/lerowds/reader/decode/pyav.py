"""The PyAV backend: decode frames of one episode's camera clip, read in place from a tar shard (or memory).

A clip is a standalone mp4 whose frame ``k`` has presentation time ``k / fps``. A decoder stays open while
its episode is in the pool (see ``decode/cache.py``) and decodes only the frames asked for: it seeks to
the keyframe at or before a target only when decoding forward from where it stands would cost more.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from lerowds import avcompat
from lerowds.reader.decode.base import BackendDecoder, DecodeFailure, failure_text
from lerowds.reader.decode.clipfile import ClipFile

logger = logging.getLogger(__name__)

_SPARE_FRAMES = 8  # decoded frames kept unconverted (e.g. B-frames decoded ahead of a sequential read)


@dataclass(frozen=True, slots=True)
class _FrameTable:
    """Packets in decode order, and for frame k its packet and the keyframe to start decoding from."""

    dts: tuple[int, ...]  # per packet: where to seek to start at it
    pkt_of_frame: np.ndarray  # (num_frames,) decode index of frame k's packet, -1 if no such frame
    key_of_frame: np.ndarray  # (num_frames,) decode index of the keyframe to decode frame k from
    times: np.ndarray  # sorted presentation times (s) of all packets, for error messages
    index_of_dts: dict[int, int]
    index_of_pts: dict[int, int]

    @staticmethod
    def build(
        packets: list[tuple[int, int, bool]], time_base: float, fps: float, num_frames: int, tol: float
    ) -> _FrameTable:
        pkt_of = np.full(num_frames, -1, dtype=np.int64)
        key_of = np.zeros(num_frames, dtype=np.int64)
        last_key, times = -1, []
        for i, (pts, _, is_key) in enumerate(packets):
            last_key = i if is_key else last_key
            t = pts * time_base
            times.append(t)
            k = round(t * fps)
            if 0 <= k < num_frames and pkt_of[k] < 0 and abs(t - k / fps) <= tol:
                pkt_of[k] = i
                j = last_key  # with reordering, the keyframe must also be shown no later than frame k
                while j > 0 and packets[j][0] > pts:
                    j = max((m for m in range(j) if packets[m][2]), default=0)
                key_of[k] = max(j, 0)
        dts = tuple(d for _, d, _ in packets)
        return _FrameTable(
            dts,
            pkt_of,
            key_of,
            np.sort(np.asarray(times, dtype=np.float64)),
            {d: i for i, d in enumerate(dts)},
            {p[0]: i for i, p in enumerate(packets)},
        )

    def index_of(self, packet: Any, default: int) -> int:
        """The decode index of a demuxed packet (some demuxers only know its pts)."""
        i = self.index_of_dts.get(packet.dts, -1)
        return i if i >= 0 else self.index_of_pts.get(packet.pts, default)

    def nearest(self, t: float) -> float | None:
        if self.times.size == 0:
            return None
        i = int(np.searchsorted(self.times, t))
        cands = self.times[max(i - 1, 0) : i + 1]
        return float(cands[np.argmin(np.abs(cands - t))])


def _scan_packets(container: Any, stream: Any) -> tuple[list[tuple[int, int, bool]], bool]:
    """(pts, dts, keyframe) per packet in decode order, and whether the demuxer had to read the whole clip.

    The demuxer's index (mp4: the sample table, no I/O) holds decode times; they are presentation times
    only for codecs without frame reordering (AV1, VP9), so other codecs are demuxed once.
    """
    entries = avcompat.index_entries(stream)  # None on PyAV without it: demux instead
    if entries is not None and len(entries) and not stream.codec_context.codec.reorder:
        rows = [(e.timestamp, e.timestamp, e.is_keyframe, e.is_discard) for e in entries]
        if not any(r[3] for r in rows):
            return [r[:3] for r in rows], False
    out = []
    for pkt in container.demux(stream):
        if pkt.size and (pkt.pts is not None or pkt.dts is not None):
            pts = pkt.pts if pkt.pts is not None else pkt.dts
            out.append((pts, pkt.dts if pkt.dts is not None else pts, pkt.is_keyframe))
    return out, True


class PyAVClipDecoder(BackendDecoder):
    """Decodes frames of one clip with PyAV, keeping the demuxer and decoder position between calls.

    A target is decoded forward from the current position when no keyframe lies between that position
    and the target's own keyframe (same GOP, or its keyframe is the very next packet); otherwise the
    decoder seeks to the target's keyframe. Frames returned by the previous call are kept (not copied; with
    ``keep_frames``, its highest ones only), so sliding windows and runs read in order decode each frame
    once: a call whose first new frame follows the previous call's last reads on without a seek. Arguments:
    ``BackendDecoder``.
    """

    def _init_backend(self) -> None:
        self._container: Any = None
        self._packets: Generator[Any, None, None] | None = None  # the demuxer, while decoding can go on
        self._peeked: Any = None
        self._next_pkt = 0  # decode index of the next packet the demuxer yields
        self._run_start = 0  # decode index the decoder started from (open or last seek)
        self._emitted: set[int] = set()  # frames out of the decoder since then
        # the previous call's frames (RGB: HWC, or CHW if channels_first)
        self._recent: dict[int, np.ndarray] = {}
        self._spare: dict[int, Any] = {}  # the last frames decoded but not asked for (YUV)
        self._pending: set[int] = set()  # the current call's frames still to decode, and those done
        self._got: dict[int, np.ndarray] = {}
        self._last_max: int | None = None  # the highest frame of the previous call
        self.seeks = 0  # counters, for tests and benchmarks
        self.decoded = 0

    def _open_backend(self, file: ClipFile) -> None:
        self._container = av.open(file, mode="r")
        if not self._container.streams.video:
            raise ValueError("the clip has no video stream")
        self._stream = self._container.streams.video[0]
        self._cc = self._stream.codec_context
        self._cc.thread_count = self.thread_count
        self._tb = float(self._stream.time_base)
        packets, scanned = _scan_packets(self._container, self._stream)
        self._table = _FrameTable.build(packets, self._tb, self.fps, self.num_frames, self.tolerance_s)
        self._shape = (self._cc.height, self._cc.width, 3)
        self._reformatter = VideoReformatter()
        if not scanned:
            self._packets = self._container.demux(self._stream)
        elif len(self._table.dts):  # the scan read the clip to its end: back to its first packet
            self._reposition(0)  # (not a seek of the decoder: nothing decoded yet)

    def _decode(self, indices: list[int], wanted: list[int]) -> np.ndarray:
        got = self._decode_set(wanted)
        keep = self.keep_frames
        if keep is None:
            self._recent = got
        else:  # the call's highest frames only, and of the spare ones those decoded ahead of it
            self._recent = {k: got[k] for k in wanted[len(wanted) - keep :]} if keep else {}
            if wanted:
                self._spare = {k: f for k, f in self._spare.items() if k > wanted[-1]}
        if self.channels_first:
            h, w, c = self._shape
            chw = np.empty((len(indices), c, h, w), dtype=np.uint8)
            for row, k in enumerate(indices):
                chw[row] = got[k]
            return chw.transpose(0, 2, 3, 1)
        out = np.empty((len(indices), *self._shape), dtype=np.uint8)
        for row, k in enumerate(indices):
            out[row] = got[k]
        return out

    def _after_failure(self) -> None:
        self._release_packets()

    def _decode_set(self, wanted: list[int]) -> dict[int, np.ndarray]:
        got = self._got = {k: self._recent[k] for k in wanted if k in self._recent}
        for k in wanted:
            if k not in got and k in self._spare:
                got[k] = self._rgb(self._spare.pop(k))
        todo = [k for k in wanted if k not in got]
        for k in todo:
            if self._table.pkt_of_frame[k] < 0:
                near = self._table.nearest(k / self.fps)
                near_text = "the clip has no frames" if near is None else f"nearest {near:.4f} s"
                raise DecodeFailure(k, f"no frame within {self.tolerance_s:g} s ({near_text})")
        self._pending = set(todo)
        inflight: set[int] = set()  # packet sent, frame not out of the decoder yet (B-frames, threads)
        current = todo[0] if todo else 0
        # Frames still in the decoder at the end (B-frames, threads): when this call reads on from the last
        # one, decode on so that the next call continues without a seek; else drain (the next one seeks).
        reading_on = self._last_max is None or (bool(todo) and todo[0] == self._last_max + 1)
        self._last_max = wanted[-1] if wanted else self._last_max
        try:
            for k in sorted(todo, key=lambda f: self._table.pkt_of_frame[f]):
                current = k
                if k in got:
                    continue
                pkt_i, key_i = int(self._table.pkt_of_frame[k]), int(self._table.key_of_frame[k])
                live = self._packets is not None
                if live and self._run_start <= pkt_i < self._next_pkt and k not in self._emitted:
                    inflight.add(k)
                    continue
                if not (live and key_i <= self._next_pkt <= pkt_i):
                    if live and inflight - got.keys():
                        self._drain()
                    self._seek(key_i)
                while self._next_pkt <= pkt_i and self._packets is not None:
                    self._feed()
                inflight.add(k)
            while inflight - got.keys() and self._packets is not None and reading_on:
                self._feed()
            if inflight - got.keys() and self._packets is not None:
                self._drain()
        except Exception as exc:  # corrupt data raises many FFmpeg/OS error types
            raise DecodeFailure(current, f"decoding failed: {failure_text(exc)}") from exc
        finally:
            self._pending, self._got = set(), {}
        for k in todo:
            if k not in got:
                raise DecodeFailure(k, "the decoder returned no frame for it (clip corrupt or truncated?)")
        return got

    def _seek(self, key_i: int) -> None:
        """Position the demuxer on packet ``key_i`` (a keyframe); the seek also flushes the decoder."""
        self.seeks += 1
        self._reposition(key_i)

    def _reposition(self, key_i: int) -> None:
        self._release_packets()
        self._container.seek(self._table.dts[key_i], stream=self._stream, backward=True)
        self._packets = self._container.demux(self._stream)
        first = next(self._packets, None)
        landed = -1 if first is None else self._table.index_of(first, -1)
        if landed > key_i or landed < 0 or not first.is_keyframe:  # demuxer disagrees: restart at the top
            logger.debug(
                "%s: seek to packet %d landed on %d in %s", self.context, key_i, landed, self._source_text
            )
            self._release_packets()
            self._container.seek(self._table.dts[0], stream=self._stream, backward=True)
            self._packets = self._container.demux(self._stream)
            first = next(self._packets, None)
            landed = 0
        self._peeked, self._next_pkt, self._run_start, self._emitted = first, landed, landed, set()

    def _feed(self) -> None:
        """Send the next packet to the decoder and keep what comes out."""
        pkt, self._peeked = self._peeked, None
        if pkt is None and self._packets is not None:
            pkt = next(self._packets, None)
        if pkt is None or not pkt.size:
            self._drain()
            return
        self._next_pkt = self._table.index_of(pkt, self._next_pkt) + 1
        self._collect(self._cc.decode(pkt))

    def _drain(self) -> None:
        """Flush the frames still inside the decoder; it is then at its end until the next seek."""
        self._collect(self._cc.decode(None))
        self._release_packets()

    def _release_packets(self) -> None:
        """Close the demux generator: PyAV (18.1) leaks ~250 bytes for each one dropped unclosed before its
        end, that is one per seek, which made a reader's memory grow by about 1 MB per 4,000 seeks."""
        packets, self._packets = self._packets, None
        if packets is not None:
            try:
                packets.close()
            except (av.FFmpegError, OSError, RuntimeError) as exc:  # must not hide the failure it follows
                logger.debug("%s: closing the demuxer failed: %s", self.context, failure_text(exc))

    def _collect(self, frames: list[Any]) -> None:
        """Convert the wanted frames to RGB; keep the last few others as they are (YUV) for later calls."""
        for frame in frames:
            self.decoded += 1
            if frame.pts is None:
                continue
            t = frame.pts * self._tb
            k = round(t * self.fps)
            if abs(t - k / self.fps) > self.tolerance_s:
                continue
            self._emitted.add(k)
            if k in self._pending and k not in self._got:
                self._got[k] = self._rgb(frame)
            else:
                self._spare.pop(k, None)
                self._spare[k] = frame
                if len(self._spare) > _SPARE_FRAMES:
                    del self._spare[next(iter(self._spare))]

    def _rgb(self, frame: Any) -> np.ndarray:
        """The frame as RGB uint8: (H, W, 3), or (3, H, W) when ``channels_first``. Channels first goes
        through swscale's planar ``gbrp`` output (same values as ``rgb24``) and copies its planes: no
        transposing copy, which costs more than the conversion itself. Where swscale's ``gbrp`` differs from
        its ``rgb24`` for this frame format and size (``planar_matches_rgb24``), rgb24 and a transpose."""
        if not self.channels_first or not planar_matches_rgb24(frame.format.name, frame.width, frame.height):
            rgb = self._reformatter.reformat(frame, format="rgb24", **_ONE_THREAD).to_ndarray()
            return np.ascontiguousarray(rgb.transpose(2, 0, 1)) if self.channels_first else rgb
        planar = self._reformatter.reformat(frame, format="gbrp", **_ONE_THREAD)
        return _planes_to_chw(planar)

    def _close_backend(self) -> None:
        self._release_packets()
        self._peeked, self._recent, self._spare = None, {}, {}
        if self._container is not None:
            self._container.close()
            self._container = None


_ONE_THREAD = avcompat.reformat_threads_kwarg()
_GBRP_TO_RGB = (1, 2, 0)  # gbrp planes are G, B, R: the RGB channel each one fills


def _planes_to_chw(planar: Any) -> np.ndarray:
    h, w = planar.height, planar.width
    out = np.empty((3, h, w), dtype=np.uint8)
    for channel, plane in zip(_GBRP_TO_RGB, planar.planes):
        out[channel] = np.frombuffer(plane, dtype=np.uint8).reshape(h, plane.line_size)[:, :w]
    return out


@functools.lru_cache(maxsize=256)
def planar_matches_rgb24(pix_fmt: str, width: int, height: int) -> bool:
    """Whether swscale's ``gbrp`` output equals its ``rgb24`` output for ``pix_fmt`` frames of this size,
    checked once per (format, size) on a frame of random pixels. It does not always: FFmpeg's yuv420p ->
    gbrp leaves the last columns unwritten when ``width % 16`` is 2..8 (e.g. 424 or 40 wide: garbage
    pixels), and 10-bit or nv12 sources round differently. The answer is a fact of the installed FFmpeg,
    cached for the process."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    try:
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
        reformatter = VideoReformatter()
        ref = reformatter.reformat(frame, format="rgb24", **_ONE_THREAD).to_ndarray()
        planar = _planes_to_chw(reformatter.reformat(frame, format="gbrp", **_ONE_THREAD))
    except (av.FFmpegError, ValueError, TypeError) as exc:  # a format swscale cannot write: use rgb24
        logger.debug("planar check of %s %dx%d failed: %s", pix_fmt, width, height, failure_text(exc))
        return False
    return bool(np.array_equal(planar, ref.transpose(2, 0, 1)))
