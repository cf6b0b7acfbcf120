"""Video decoding: one ``ClipDecoder`` protocol, the PyAV and torchcodec backends, the per-worker decoder cache."""

from lerowds.format import ClipRange
from lerowds.reader.decode.pyav import (
    DEFAULT_TOLERANCE_S,
    ByteRangeFile,
    ClipContext,
    ClipDecoder,
    ClipFile,
    ClipSource,
    MemoryClipFile,
    PyAVClipDecoder,
    check_decoder_args,
    describe_source,
    failure_text,
    open_clip,
)

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
