"""Video decoding: one ``ClipDecoder`` protocol, the PyAV and torchcodec backends, the per-worker decoder cache.

``clipfile`` (clips as seekable files) <- ``base`` (the protocol and what the backends share) <- ``pyav``,
``torchcodec`` (the backends) <- ``cache`` (backend choice, the decoder LRU, ``decode_limit``).
"""

from lerowds.format import ClipRange
from lerowds.reader.decode.base import (
    DEFAULT_TOLERANCE_S,
    ClipContext,
    ClipDecoder,
    check_decoder_args,
    failure_text,
)
from lerowds.reader.decode.clipfile import (
    ByteRangeFile,
    ClipFile,
    ClipSource,
    MemoryClipFile,
    describe_source,
    open_clip,
)
from lerowds.reader.decode.pyav import PyAVClipDecoder

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "ByteRangeFile",
    "ClipContext",
    "ClipDecoder",
    "ClipFile",
    "ClipRange",
    "ClipSource",
    "MemoryClipFile",
    "PyAVClipDecoder",
    "check_decoder_args",
    "describe_source",
    "failure_text",
    "open_clip",
]
