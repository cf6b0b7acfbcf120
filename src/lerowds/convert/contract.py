"""What ``meta/info.json`` declares must be what the data and the videos hold.

Every declared non-video feature is a data column of the declared dtype and shape (``task_index`` included),
and every video stream runs at the declared fps with the declared frame size. The converter checks a source
(a ``SourceError`` naming the file, episode and key) and ``lerowds verify --deep`` checks each converted
episode against the index's copy of the features. Each function returns the problems, one line each.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FPS_TOLERANCE = 0.01  # relative: 29.97 passes for 30, 15 does not

_SCALARS: dict[str, tuple[pa.DataType, ...]] = {
    "bool": (pa.bool_(),),
    "float16": (pa.float16(),),
    "float32": (pa.float32(),),
    "float64": (pa.float64(),),
    "int8": (pa.int8(),),
    "int16": (pa.int16(),),
    "int32": (pa.int32(),),
    "int64": (pa.int64(),),
    "uint8": (pa.uint8(),),
    "uint16": (pa.uint16(),),
    "uint32": (pa.uint32(),),
    "uint64": (pa.uint64(),),
    "string": (pa.string(), pa.large_string()),
}


def _declared(ft: Mapping[str, Any]) -> str:
    return f"dtype {ft.get('dtype')!r}, shape {ft.get('shape')!r}"


def _size(ft: Mapping[str, Any]) -> int | None:
    shape = ft.get("shape")
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(shape)


def _unwrap(t: pa.DataType) -> tuple[pa.DataType, list[int | None]]:
    """The leaf type of (nested) list types, and each level's fixed size (None: variable)."""
    dims: list[int | None] = []
    if isinstance(t, pa.ExtensionType):  # e.g. datasets' Array2D, where its extension is registered
        t = t.storage_type
    while pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        dims.append(t.list_size if pa.types.is_fixed_size_list(t) else None)
        t = t.value_type
        if isinstance(t, pa.ExtensionType):
            t = t.storage_type
    return t, dims


def schema_problems(
    schema: pa.Schema, features: Mapping[str, Mapping[str, Any]], declared_in: str = "meta/info.json"
) -> list[str]:
    """How a data table's columns contradict the declared non-video features."""
    problems = []
    for key, ft in features.items():
        dtype = ft.get("dtype")
        if dtype == "video":
            continue
        if key not in schema.names:
            problems.append(f"no column {key!r}, which {declared_in} declares ({_declared(ft)})")
            continue
        t = schema.field(key).type
        if dtype == "image":
            if not (pa.types.is_struct(t) and t.get_field_index("bytes") >= 0):
                problems.append(f"column {key!r} is {t}, but {declared_in} declares an image (encoded bytes)")
            continue
        leaf, dims = _unwrap(t)
        allowed = _SCALARS.get(str(dtype))
        if allowed is not None and leaf not in allowed:
            problems.append(f"column {key!r} holds {leaf} values, but {declared_in} declares {_declared(ft)}")
            continue
        size = _size(ft)
        if size is None:
            continue
        if not dims and size != 1:
            problems.append(
                f"column {key!r} holds one value per frame, but {declared_in} declares {_declared(ft)}"
            )
        elif dims and None not in dims and math.prod(d for d in dims if d is not None) != size:
            problems.append(f"column {key!r} is {t}, but {declared_in} declares {_declared(ft)}")
    return problems


def row_problems(
    table: pa.Table, features: Mapping[str, Mapping[str, Any]], declared_in: str = "meta/info.json"
) -> list[str]:
    """Rows whose variable-length list values do not have the declared size (fixed sizes: see the schema)."""
    problems = []
    for key, ft in features.items():
        if ft.get("dtype") in ("video", "image") or key not in table.column_names:
            continue
        _, dims = _unwrap(table.schema.field(key).type)
        size = _size(ft)
        if len(dims) != 1 or dims[0] is not None or size is None or table.num_rows == 0:
            continue
        lengths = pc.list_value_length(table.column(key)).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != size)
        if bad.size:
            problems.append(
                f"column {key!r}: row {int(bad[0])} holds {lengths[bad[0]]} values, but {declared_in} declares "
                f"{_declared(ft)} ({bad.size} such rows)"
            )
    return problems


def declared_frame_size(ft: Mapping[str, Any]) -> tuple[int, int] | None:
    """(height, width) of a video feature's declared shape (``names`` say the order; default HWC)."""
    shape, names = ft.get("shape"), ft.get("names")
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        return None
    if isinstance(names, (list, tuple)) and "height" in names and "width" in names and len(names) == 3:
        return int(shape[list(names).index("height")]), int(shape[list(names).index("width")])
    if shape[0] in (1, 3, 4) and shape[2] not in (1, 3, 4):  # channels first
        return int(shape[1]), int(shape[2])
    return int(shape[0]), int(shape[1])


def stream_problems(
    rate: float | None,
    width: int,
    height: int,
    fps: float,
    ft: Mapping[str, Any] | None,
    declared_in: str = "meta/info.json",
) -> list[str]:
    """How a video stream (frame ``rate``, frame size) contradicts the declared fps and shape."""
    problems = []
    if rate is not None and abs(rate - fps) > FPS_TOLERANCE * fps:
        problems.append(f"its frames are {rate:.6g} per second, but {declared_in} says fps={fps:g}")
    hw = declared_frame_size(ft) if ft is not None else None
    if hw is not None and hw != (height, width):
        shape = (ft or {}).get("shape")
        problems.append(
            f"its frames are {height}x{width} (height x width), but {declared_in} declares shape {shape}"
        )
    return problems


def track_facts(timescale: int, durations: np.ndarray, stsd: bytes) -> tuple[float | None, int, int]:
    """(frame rate, width, height) from an mp4 sample table: the median sample duration, the sample entry."""
    width, height = struct.unpack(">HH", stsd[48:52])
    if not len(durations):
        return None, width, height
    median = float(np.median(durations))
    return (timescale / median if median > 0 else None), width, height


def stream_facts(stream: av.video.stream.VideoStream) -> tuple[float | None, int, int]:
    """(frame rate, width, height) of a PyAV video stream."""
    rate = stream.average_rate or stream.guessed_rate
    return (float(rate) if rate else None), stream.codec_context.width, stream.codec_context.height


def clip_problems(data: bytes, fps: float, ft: Mapping[str, Any] | None, declared_in: str) -> list[str]:
    """How a converted clip (an mp4 in memory) contradicts the index's fps and declared frame size."""
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        durations = [p.duration for p in container.demux(stream) if p.size > 0 and p.duration]
        rate = float(1 / (float(np.median(durations)) * tb)) if durations and tb else None
        width, height = stream.codec_context.width, stream.codec_context.height
        return stream_problems(rate, width, height, fps, ft, declared_in)
