"""Decoders as a resource: pick the backend, keep decoders open in an LRU, time what decoding costs.

Opening a container costs about as much as decoding several frames, so the reader keeps one decoder per
(episode, camera) of its pool open and measures itself against ``decode_limit``.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from lerowds.errors import ConfigError, VideoDecodeError
from lerowds.reader.decode.pyav import (
    DEFAULT_TOLERANCE_S,
    ClipContext,
    ClipDecoder,
    ClipFile,
    ClipSource,
    PyAVClipDecoder,
    check_decoder_args,
    describe_source,
    failure_text,
    open_clip,
)

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger(__name__)

DECODER_KINDS = ("auto", "pyav", "torchcodec")
K = TypeVar("K", bound=Hashable)


class TorchCodecClipDecoder:
    """The same contract on torchcodec (system FFmpeg); torch and torchcodec are imported only here."""

    def __init__(
        self,
        source: ClipSource,
        fps: float,
        num_frames: int,
        context: ClipContext | str,
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        thread_count: int = 1,
        channels_first: bool = False,
    ) -> None:
        check_decoder_args(fps, num_frames, tolerance_s, thread_count)
        self.fps, self.num_frames, self.context, self.tolerance_s = fps, num_frames, context, tolerance_s
        self.thread_count = thread_count
        self.channels_first = channels_first  # (T, H, W, 3) views of (T, 3, H, W) memory: CHW without a copy
        self._source: ClipSource | None = source
        self._source_text = describe_source(source)
        self._file: ClipFile | None = None
        self._dec: Any = None

    def _open(self) -> None:
        from torchcodec.decoders import VideoDecoder

        self._file = open_clip(self._source)  # type: ignore[arg-type]
        self._source_text = str(self._file)
        self._dec = VideoDecoder(
            self._file, dimension_order="NHWC", num_ffmpeg_threads=self.thread_count, seek_mode="approximate"
        )

    def open(self) -> None:
        """Open the clip now instead of at the first ``frames`` call (e.g. before timing); idempotent."""
        if self._source is None:
            raise VideoDecodeError(f"{self.context}: decoder of clip {self._source_text} is closed")
        if self._dec is None:
            try:
                self._open()
            except Exception as exc:  # an unreadable clip raises many error types
                self._close_decoder()
                raise self._error(0, f"cannot open: {failure_text(exc)}") from exc

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Return frames ``indices`` (any order, repeats allowed) as a (T, H, W, 3) uint8 RGB array."""
        if self._source is None:
            raise VideoDecodeError(f"{self.context}: decoder of clip {self._source_text} is closed")
        idx = [operator.index(i) for i in indices]
        wanted = sorted(set(idx))
        for k in wanted:
            if not 0 <= k < self.num_frames:
                raise self._error(k, f"frame index out of range [0, {self.num_frames})")
        first = wanted[0] if wanted else 0
        if self._dec is None:
            try:
                self._open()
            except Exception as exc:  # an unreadable clip raises many error types
                self._close_decoder()
                raise self._error(first, f"cannot open: {failure_text(exc)}") from exc
        if not wanted:
            return np.empty((0, self._dec.metadata.height, self._dec.metadata.width, 3), dtype=np.uint8)
        meta = self._dec.metadata  # times outside the stream are clamped: the check below names the nearest
        lo, hi = meta.begin_stream_seconds or 0.0, (meta.end_stream_seconds or np.inf) - 1e-6
        try:  # played at k/fps + tol: the frame within tolerance of k/fps, never its predecessor
            batch = self._dec.get_frames_played_at(
                [min(max(k / self.fps + self.tolerance_s, lo), hi) for k in wanted]
            )
        except Exception as exc:  # corrupt data raises RuntimeError from the C++ core
            raise self._error(first, f"decoding failed: {failure_text(exc)}") from exc
        for k, t in zip(wanted, batch.pts_seconds.tolist()):
            if abs(t - k / self.fps) > self.tolerance_s:
                raise self._error(k, f"no frame within {self.tolerance_s:g} s (nearest {t:.4f} s)")
        row = {k: i for i, k in enumerate(wanted)}
        out = batch.data.numpy()[[row[k] for k in idx]]
        return (
            np.ascontiguousarray(out.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
            if self.channels_first
            else out
        )

    def _error(self, k: int, reason: str) -> VideoDecodeError:
        return VideoDecodeError(
            f"{self.context}, timestamp {k / self.fps:.4f} s (frame {k}): {reason} in clip {self._source_text}"
        )

    def _close_decoder(self) -> None:
        self._dec = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Drop the decoder and close the clip file; safe to call twice."""
        self._close_decoder()
        self._source = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def torchcodec_unavailable_reason() -> str | None:
    """None when torchcodec imports and loads its FFmpeg libraries, else why not."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError) as exc:  # OSError: the system FFmpeg is missing
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def resolve_decoder_kind(kind: str) -> str:
    """The backend ``kind`` stands for here. "auto" is PyAV: it ties with torchcodec on AV1 (both use
    libdav1d), is 25-70 % faster on h264, needs no system FFmpeg, and keeps frames between calls."""
    if kind not in DECODER_KINDS:
        raise ConfigError(f"decoder kind must be one of {DECODER_KINDS}, got {kind!r}")
    if kind == "torchcodec" and (reason := torchcodec_unavailable_reason()) is not None:
        raise ConfigError(
            f"decoder kind 'torchcodec' is unavailable here ({reason}); choose one of ('auto', 'pyav') "
            "or install torchcodec with the system FFmpeg libraries"
        )
    return "pyav" if kind == "auto" else kind


def make_decoder(
    kind: str,
    source: ClipSource,
    fps: float,
    num_frames: int,
    context: ClipContext | str,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    thread_count: int = 1,
    channels_first: bool = False,
) -> ClipDecoder:
    """Open a decoder of backend ``kind`` ("auto", "pyav" or "torchcodec") on one clip. With
    ``channels_first`` its frames are (T, H, W, 3) views of (T, 3, H, W) memory (same values)."""
    cls = {"pyav": PyAVClipDecoder, "torchcodec": TorchCodecClipDecoder}[resolve_decoder_kind(kind)]
    return cls(
        source,
        fps,
        num_frames,
        context,
        tolerance_s=tolerance_s,
        thread_count=thread_count,
        channels_first=channels_first,
    )


@dataclass(frozen=True, slots=True)
class DecoderCacheStats:
    """How often a decoder was reused (hit), had to be opened (miss, open) or was closed to make room."""

    hits: int = 0
    misses: int = 0
    opens: int = 0
    evictions: int = 0


class DecoderCache(Generic[K]):
    """An LRU of open decoders keyed by e.g. ``(episode_index, camera_key)``; evicted ones are closed."""

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"decoder cache capacity must be an int >= 1, got {capacity!r}")
        self.capacity = capacity
        self._open: OrderedDict[K, ClipDecoder] = OrderedDict()
        self._stats = DecoderCacheStats()

    @property
    def stats(self) -> DecoderCacheStats:
        return self._stats

    def get(self, key: K, factory: Callable[[], ClipDecoder]) -> ClipDecoder:
        """The open decoder for ``key``, made by ``factory()`` (and the oldest one closed) if absent."""
        s = self._stats
        decoder = self._open.get(key)
        if decoder is not None:
            self._open.move_to_end(key)
            self._stats = DecoderCacheStats(s.hits + 1, s.misses, s.opens, s.evictions)
            return decoder
        self._stats = s = DecoderCacheStats(s.hits, s.misses + 1, s.opens, s.evictions)
        decoder = factory()
        self._open[key] = decoder
        evicted = 0
        while len(self._open) > self.capacity:
            old_key, old = self._open.popitem(last=False)
            logger.debug("closing the decoder of %r, the least recently used of %d", old_key, self.capacity)
            old.close()
            evicted += 1
        self._stats = DecoderCacheStats(s.hits, s.misses, s.opens + 1, s.evictions + evicted)
        return decoder

    def discard(self, key: K) -> None:
        """Close and forget the decoder for ``key`` (e.g. its episode left the pool); no-op if absent."""
        decoder = self._open.pop(key, None)
        if decoder is not None:
            decoder.close()

    def __contains__(self, key: object) -> bool:
        return key in self._open

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Close every open decoder; the cache stays usable."""
        while self._open:
            self._open.popitem(last=False)[1].close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_limit(
    requests: Sequence[tuple[K, Sequence[int]]],
    decoder_factory: Callable[[K], ClipDecoder],
    *,
    before_start: Callable[[], object] | None = None,
) -> float:
    """Seconds the decoders need for exactly ``requests`` ((clip key, frame indices), in order), counting
    neither opening nor closing: every clip's decoder is opened (its ``open()``, if it has one, called)
    before the clock starts. ``before_start`` runs just before it (e.g. a barrier between processes)."""
    decoders: dict[K, ClipDecoder] = {}
    try:
        for key, _ in requests:
            if key not in decoders:
                decoders[key] = decoder = decoder_factory(key)
                opener = getattr(decoder, "open", None)
                if callable(opener):
                    opener()
        if before_start is not None:
            before_start()
        start = time.perf_counter()
        for key, indices in requests:
            decoders[key].frames(indices)
        return time.perf_counter() - start
    finally:
        for decoder in decoders.values():
            decoder.close()
