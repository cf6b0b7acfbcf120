"""Decoders as a resource: pick the backend, keep decoders open in an LRU, time what decoding costs.

Opening a container costs about as much as decoding several frames, so the reader keeps one decoder per
(episode, camera) of its pool open and measures itself against ``decode_limit``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.decode.base import BackendDecoder, ClipDecoder
from lerowds.reader.decode.pyav import PyAVClipDecoder
from lerowds.reader.decode.torchcodec import TorchCodecClipDecoder, torchcodec_unavailable_reason

if TYPE_CHECKING:
    from typing_extensions import Self

logger = logging.getLogger(__name__)

DECODER_KINDS = ("auto", "pyav", "torchcodec")
K = TypeVar("K", bound=Hashable)


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


def decoder_class(kind: str) -> type[BackendDecoder]:
    """The decoder class of backend ``kind`` ("auto", "pyav" or "torchcodec")."""
    return {"pyav": PyAVClipDecoder, "torchcodec": TorchCodecClipDecoder}[resolve_decoder_kind(kind)]


def make_decoder(kind: str, *args: Any, **kwargs: Any) -> ClipDecoder:
    """Open a decoder of backend ``kind`` on one clip; the other arguments are those of every backend
    (``BackendDecoder``): source, fps, num_frames, context, and by keyword tolerance_s, thread_count,
    channels_first. With ``channels_first`` its frames are (T, H, W, 3) views of (T, 3, H, W) memory."""
    return decoder_class(kind)(*args, **kwargs)


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
        check_int("decoder cache capacity", capacity, 1)
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
