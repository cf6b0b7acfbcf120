"""Write a small LeRobot v3 dataset laid out the way lerobot 0.4.4's own writer lays it out.

Used by tests and the demo, to reach cases the shared fixture lacks. Content comes from ``v3spec``;
images from ``framecode.encode_frame``. Every file is written under a temporary name in its own
directory and moved into place with ``os.replace``; ``meta/info.json`` is written last.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.testing.framecode import encode_frame
from lerowds.testing.v3spec import (
    DEFAULT_CRF,
    CameraSpec,
    DatasetSpec,
    aggregate_stats,
    frame_task_slots,
    image_stats,
    sample_indices,
    sample_spec,
    vector_columns,
    vector_stats,
)

__all__ = ["CameraSpec", "DatasetSpec", "sample_spec", "write_v3_dataset"]

logger = logging.getLogger(__name__)

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
METADATA_BUFFER_SIZE = 10
IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PANDAS_TASKS_META = (  # what pandas records for lerobot's task-indexed frame (see the shared fixture)
    '{"index_columns": ["__index_level_0__"], "column_indexes": [{"name": null, "field_name": null, '
    '"pandas_type": "unicode", "numpy_type": "str", "metadata": {"encoding": "UTF-8"}}], "columns": '
    '[{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64", '
    '"metadata": null}, {"name": null, "field_name": "__index_level_0__", "pandas_type": "object", '
    '"numpy_type": "str", "metadata": null}], "attributes": {}, "creator": {"library": "pyarrow", '
    '"version": "%s"}, "pandas_version": "3.1.1"}'
)


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _quiet_svt() -> Iterator[None]:
    """SVT-AV1 prints ~40 info lines per encoder to stderr; keep its errors only, unless SVT_LOG is set."""
    if "SVT_LOG" in os.environ:
        yield
        return
    os.environ["SVT_LOG"] = "1"
    try:
        yield
    finally:
        os.environ.pop("SVT_LOG", None)


def _write_json(path: Path, obj: Any) -> None:
    with _atomic(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=4, ensure_ascii=False), encoding="utf-8")


def _layout(
    lengths: list[int], limit: int | None, chunks_size: int, glued: frozenset[int] = frozenset()
) -> list[tuple[int, int]]:
    """(chunk, file) per item: start a new file when this item would push the file past ``limit``."""
    out, chunk, file, used = [], 0, 0, 0
    for i, n in enumerate(lengths):
        if i > 0 and i not in glued and limit is not None and used + n > limit:
            chunk, file = (chunk + 1, 0) if file + 1 >= chunks_size else (chunk, file + 1)
            used = 0
        out.append((chunk, file))
        used += n
    return out


def _png(img: np.ndarray) -> bytes:
    """An RGB8 PNG (stdlib zlib at level 1, like lerobot's image writer)."""
    h, w, _ = img.shape
    raw = np.zeros((h, 1 + 3 * w), np.uint8)
    raw[:, 1:] = img.reshape(h, 3 * w)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- video
def _codec_options(spec: DatasetSpec, gop: int) -> dict[str, str]:
    opts = {"g": str(gop), "crf": str(spec.crf if spec.crf is not None else DEFAULT_CRF[spec.codec])}
    if spec.preset is not None:
        opts["preset"] = str(spec.preset)
    if spec.codec == "libx264":  # keyframes only where the GOP says; no B-frames, so pts == dts
        opts.update(bf="0", sc_threshold="0")
    return opts


def _group_gop(spec: DatasetSpec, lengths: list[int]) -> int:
    """The spec's GOP for one episode; for glued episodes the smallest larger GOP that cuts them mid-GOP."""
    if len(spec.episode_lengths) == 1:
        return spec.gop
    cuts = np.cumsum(lengths)[:-1]
    gop = max(2 * spec.gop, 3)
    while np.any(cuts % gop == 0):
        gop += 1
    return gop


def _encode_clip(spec: DatasetSpec, cam: CameraSpec, cam_no: int, episodes: list[int]) -> bytes:
    """Encode some consecutive episodes in one encoder run into an in-memory mp4 (lerobot's temp file)."""
    lengths = [spec.episode_lengths[e] for e in episodes]
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(
            spec.codec, rate=spec.fps, options=_codec_options(spec, _group_gop(spec, lengths))
        )
        stream.width, stream.height, stream.pix_fmt = cam.w, cam.h, "yuv420p"
        for e, n in zip(episodes, lengths):
            for f in range(n):
                frame = av.VideoFrame.from_ndarray(encode_frame(e, f, cam.h, cam.w, cam_no), format="rgb24")
                out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def _write_video_file(path: Path, clips: list[tuple[bytes, int]], fps: int) -> None:
    """Stream-copy clips one after the other into one mp4, as lerobot's concatenation does."""
    with _atomic(path) as tmp, av.open(str(tmp), "w", format="mp4") as out:
        ostream, offset = None, 0
        for clip, n_frames in clips:
            with av.open(io.BytesIO(clip)) as inp:
                istream = inp.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(istream, opaque=True)
                    ostream.time_base = istream.time_base
                for pkt in inp.demux(istream):
                    if pkt.dts is not None:  # skip the demuxer's empty flush packet
                        pkt.pts, pkt.dts, pkt.stream = pkt.pts + offset, pkt.dts + offset, ostream
                        out.mux(pkt)
                offset += n_frames * round(1 / (fps * istream.time_base))


def _write_videos(root: Path, spec: DatasetSpec) -> list[dict[str, Any]]:
    """Encode every video camera; return per-episode ``videos/<key>/...`` metadata."""
    meta: list[dict[str, Any]] = [{} for _ in spec.episode_lengths]
    glued = frozenset(spec.non_keyframe_episodes)
    for cam_no, cam in enumerate(spec.cameras):
        if cam.dtype != "video":
            continue
        lengths = list(spec.episode_lengths)
        layout = _layout(lengths, cam.file_frames or spec.video_file_frames, spec.chunks_size, glued)
        # episodes encoded in one run: a non-keyframe episode joins its predecessor
        groups: list[list[int]] = []
        for e in range(len(spec.episode_lengths)):
            if e in glued:
                groups[-1].append(e)
            else:
                groups.append([e])
        files: dict[tuple[int, int], list[tuple[bytes, int]]] = {}
        for group in groups:
            clip = _encode_clip(spec, cam, cam_no, group)
            files.setdefault(layout[group[0]], []).append((clip, sum(lengths[e] for e in group)))
        for (chunk, file), clips in files.items():
            path = root / VIDEO_PATH.format(video_key=cam.key, chunk_index=chunk, file_index=file)
            _write_video_file(path, clips, spec.fps)
        prev_to, prev_file = 0.0, None
        for e, n in enumerate(lengths):
            start = prev_to if layout[e] == prev_file else 0.0
            meta[e].update(
                {
                    f"videos/{cam.key}/chunk_index": layout[e][0],
                    f"videos/{cam.key}/file_index": layout[e][1],
                    f"videos/{cam.key}/from_timestamp": start,
                    f"videos/{cam.key}/to_timestamp": start + n / spec.fps,
                }
            )
            prev_to, prev_file = start + n / spec.fps, layout[e]
        logger.debug("wrote %d mp4 files for %s", len(files), cam.key)
    return meta


# ---------------------------------------------------------------- data, episodes, tasks, info
def _hf_feature(ft: dict[str, Any]) -> dict[str, Any]:
    if ft["dtype"] == "image":
        return {"_type": "Image"}
    value = {"dtype": ft["dtype"], "_type": "Value"}
    return value if ft["shape"] == [1] else {"feature": value, "length": ft["shape"][0], "_type": "List"}


def _arrow_type(ft: dict[str, Any]) -> pa.DataType:
    if ft["dtype"] == "image":
        return IMAGE_TYPE
    value = {"float32": pa.float32(), "int64": pa.int64(), "bool": pa.bool_()}[ft["dtype"]]
    return value if ft["shape"] == [1] else pa.list_(value, ft["shape"][0])


def _data_schema(spec: DatasetSpec, relpath: str) -> pa.Schema:
    """The arrow schema of a data file, with the ``huggingface`` metadata that ``datasets`` writes."""
    feats = {k: ft for k, ft in spec.features().items() if ft["dtype"] != "video"}
    fields = [pa.field(k, _arrow_type(ft)) for k, ft in feats.items()]
    hf = {
        "info": {"features": {k: _hf_feature(ft) for k, ft in feats.items()}},
        "fingerprint": hashlib.sha256(f"{spec.repo_id}/{relpath}".encode()).hexdigest()[:16],
    }
    return pa.schema(fields, metadata={"huggingface": json.dumps(hf)})


def _column(values: Any, ftype: pa.DataType) -> pa.Array:
    if pa.types.is_fixed_size_list(ftype):
        return pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), ftype.value_type), type=ftype)
    return pa.array(values if ftype == IMAGE_TYPE else values.astype(_numpy_dtype(ftype)), ftype)


def _numpy_dtype(ftype: pa.DataType) -> np.dtype:
    """The numpy dtype of a primitive arrow type, without pandas (pyarrow 18's ``to_pandas_dtype`` imports it)."""
    return pa.array([], type=ftype).to_numpy(zero_copy_only=False).dtype


def _episode(
    spec: DatasetSpec, e: int, start: int, task_ids: np.ndarray, schema: pa.Schema
) -> tuple[pa.Table, dict[str, dict[str, np.ndarray]]]:
    """One episode's rows, and its per-feature stats (lerobot's ``compute_episode_stats``)."""
    n = spec.episode_lengths[e]
    cols: dict[str, Any] = vector_columns(e, n, spec.fps, spec.extra_features)
    cols.update(
        frame_index=np.arange(n),
        episode_index=np.full(n, e),
        index=np.arange(start, start + n),
        task_index=task_ids.astype(np.int64),
    )
    stats = {k: vector_stats(v) for k, v in cols.items()}
    for cam_no, cam in enumerate(spec.cameras):
        sampled = [encode_frame(e, int(f), cam.h, cam.w, cam_no) for f in sample_indices(n)]
        stats[cam.key] = image_stats(sampled)
        if cam.dtype == "image":
            cols[cam.key] = [
                {"bytes": _png(encode_frame(e, f, cam.h, cam.w, cam_no)), "path": f"frame-{f:06d}.png"}
                for f in range(n)
            ]
    table = pa.Table.from_arrays([_column(cols[fl.name], fl.type) for fl in schema], schema=schema)
    return table, {k: stats[k] for k in spec.features()}


def _write_data(root: Path, spec: DatasetSpec, tasks: list[str]) -> list[dict[str, Any]]:
    """Write the data parquet files (one row group per episode); return per-episode rows with stats."""
    task_of = {t: i for i, t in enumerate(tasks)}
    lengths = list(spec.episode_lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)]).tolist()
    layout = _layout(lengths, spec.data_file_frames, spec.chunks_size)
    rows: list[dict[str, Any]] = []
    for chunk, file in dict.fromkeys(layout):
        relpath = DATA_PATH.format(chunk_index=chunk, file_index=file)
        schema = _data_schema(spec, relpath)
        with _atomic(root / relpath) as tmp, pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
            for e in (e for e, at in enumerate(layout) if at == (chunk, file)):
                ep_tasks = spec.episode_tasks[e]
                ids = np.array([task_of[ep_tasks[j]] for j in frame_task_slots(lengths[e], len(ep_tasks))])
                table, stats = _episode(spec, e, starts[e], ids, schema)
                writer.write_table(table)
                rows.append(
                    {
                        "episode_index": e,
                        "tasks": [tasks[i] for i in dict.fromkeys(ids.tolist())],
                        "length": lengths[e],
                        "data/chunk_index": chunk,
                        "data/file_index": file,
                        "dataset_from_index": starts[e],
                        "dataset_to_index": starts[e + 1],
                        "stats": stats,
                    }
                )
    return rows


def _write_tasks(root: Path, tasks: list[str]) -> None:
    """``meta/tasks.parquet`` as pandas writes a task-indexed frame: ``task_index`` + the index column."""
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), pa.int64()),
            "__index_level_0__": pa.array(tasks, pa.large_string()),
        }
    )
    table = table.replace_schema_metadata({"pandas": PANDAS_TASKS_META % pa.__version__})
    with _atomic(root / "meta/tasks.parquet") as tmp:
        pq.write_table(table, tmp, compression="snappy")


def _write_episodes(root: Path, spec: DatasetSpec, episodes: list[dict[str, Any]]) -> None:
    """``meta/episodes`` files; lerobot flushes rows in batches of 10, one row group per batch."""
    layout = _layout([1] * len(episodes), spec.meta_file_episodes, spec.chunks_size)
    for chunk, file in dict.fromkeys(layout):
        rows = [
            {**ep, "meta/episodes/chunk_index": chunk, "meta/episodes/file_index": file}
            for ep, at in zip(episodes, layout)
            if at == (chunk, file)
        ]
        with _atomic(root / EPISODES_PATH.format(chunk_index=chunk, file_index=file)) as tmp:
            table = pa.Table.from_pylist(rows)
            pq.write_table(table, tmp, compression="snappy", row_group_size=METADATA_BUFFER_SIZE)


def write_v3_dataset(root: str | Path, spec: DatasetSpec) -> Path:
    """Write ``spec`` as a LeRobot v3.0 dataset under ``root`` (absent or empty) and return ``root``."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"refusing to write a dataset into non-empty {root}")
    tasks = spec.tasks()
    with _quiet_svt():
        videos = _write_videos(root, spec)
    episodes, ep_stats = [], []
    for row, video in zip(_write_data(root, spec, tasks), videos):
        ep_stats.append(row.pop("stats"))
        flat = {f"stats/{k}/{s}": v.tolist() for k, st in ep_stats[-1].items() for s, v in st.items()}
        episodes.append({**row, **video, **flat})
    _write_episodes(root, spec, episodes)
    _write_tasks(root, tasks)
    stats = {k: aggregate_stats([s[k] for s in ep_stats]) for k in spec.features()}
    _write_json(
        root / "meta/stats.json", {k: {s: v.tolist() for s, v in st.items()} for k, st in stats.items()}
    )
    info = {
        "codebase_version": "v3.0",
        "robot_type": spec.robot_type,
        "total_episodes": len(spec.episode_lengths),
        "total_frames": spec.total_frames,
        "total_tasks": len(tasks),
        "chunks_size": spec.chunks_size,
        "data_files_size_in_mb": spec.data_files_size_in_mb,
        "video_files_size_in_mb": spec.video_files_size_in_mb,
        "fps": spec.fps,
        "splits": {"train": f"0:{len(spec.episode_lengths)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if spec.video_keys else None,
        "features": spec.features(),
    }
    _write_json(root / "meta/info.json", info)
    logger.info(
        "wrote %s: %d episodes, %d frames, %d tasks to %s",
        spec.repo_id,
        len(spec.episode_lengths),
        spec.total_frames,
        len(tasks),
        root,
    )
    return root
