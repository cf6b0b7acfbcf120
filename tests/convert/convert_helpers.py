"""Helpers of the converter tests: where the shared fixture is, converting in-process, reading outputs back."""

from __future__ import annotations

import io
import itertools
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerowds.convert import ConvertOptions, ConvertResult, convert
from lerowds.format import DatasetIndex, EpisodeTable, read_local_index, read_range

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SMALL = FIXTURES / "lerobot_v3_small"
SMALL_REPO = "lerowds/fixture_small"
SMALL_SHARD_SIZE = 64 * 1024  # several shards of a few episodes each
SMALL_CAMS = {"observation.images.front": 0, "observation.images.wrist": 1}  # frame-code camera numbers


def need_fixture() -> Path:
    if not (SMALL / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared fixture missing at {SMALL}")
        pytest.skip(f"shared fixture missing at {SMALL}")
    return SMALL


def run_convert(root: Path, repo_id: str, output: Path, **kw: object) -> ConvertResult:
    """Convert in this process, no progress bar."""
    return convert(ConvertOptions(repo_id=repo_id, root=root, output=output, progress=False, **kw))  # type: ignore[arg-type]


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (resume state included) by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def read_output(out: Path) -> tuple[DatasetIndex, EpisodeTable]:
    return read_local_index(out)


def member_bytes(out: Path, index: DatasetIndex, table: EpisodeTable, row: int, col: str) -> bytes:
    """The member at ``<col>_offset`` / ``<col>_size`` (or the video columns ``video/<key>``) of a table row."""
    off, size = (
        (f"{col}/offset", f"{col}/size") if col.startswith("video/") else (f"{col}_offset", f"{col}_size")
    )
    shard = index.shards[int(table["shard"][row])].name
    return read_range(out / shard, int(table[off][row]), int(table[size][row]))


def decode_frames(src: str | Path | bytes | bytearray) -> list[tuple[float, np.ndarray]]:
    """(time in s, native-format planes) of every frame, one decoder thread, same decoder for all."""
    with av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src)) as c:
        stream = c.streams.video[0]
        stream.codec_context.thread_count = 1
        tb = Fraction(stream.time_base)
        return [(float(f.pts * tb), f.to_ndarray()) for f in c.decode(stream)]


def decode_rgb(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def source_table(root: Path) -> pa.Table:
    """All rows of a v3 dataset's data files, in file order."""
    files = sorted((root / "data").glob("*/*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files])


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


FPS = 30  # encode_bframes' frame rate and size
H, W = 48, 64


def encode_bframes(
    path: Path, episodes: list[tuple[int, int]], *, alone: bool, gop: int = 10
) -> list[tuple[float, float]]:
    """An h264 mp4 with B-frames (pts != dts, negative dts) holding ``(episode, length)`` runs of frames.

    ``alone``: each episode encoded by itself and the packets concatenated (lerobot's layout, closed GOPs);
    otherwise one continuous encode (episodes cut mid-GOP). Returns each episode's (from, to) timestamps.
    """
    from lerowds.testing.framecode import encode_frame

    def encoder(out: av.container.OutputContainer) -> av.stream.Stream:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.codec_context.thread_count = 1
        s.options = {
            "bf": "3",
            "g": str(gop),
            "crf": "10",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0",
        }
        return s

    def frames(e: int, n: int) -> list[av.VideoFrame]:
        return [av.VideoFrame.from_ndarray(encode_frame(e, f, H, W), format="rgb24") for f in range(n)]

    if not alone:
        with av.open(str(path), "w", format="mp4") as out:
            s = encoder(out)
            for e, n in episodes:
                for fr in frames(e, n):
                    out.mux(s.encode(fr))
            out.mux(s.encode(None))
        starts = np.cumsum([0] + [n for _, n in episodes]) / FPS
        return [(float(a), float(b)) for a, b in itertools.pairwise(starts)]
    spans = []
    with av.open(str(path), "w", format="mp4") as out:
        ostream, offset, last_dts = None, 0, None
        for e, n in episodes:
            buf = io.BytesIO()
            with av.open(buf, "w", format="mp4") as one:
                s = encoder(one)
                for fr in frames(e, n):
                    one.mux(s.encode(fr))
                one.mux(s.encode(None))
            with av.open(io.BytesIO(buf.getvalue())) as inp:
                istream = inp.streams.video[0]
                if ostream is None:
                    ostream = out.add_stream_from_template(istream, opaque=True)
                    ostream.time_base = istream.time_base
                step = round(1 / (FPS * istream.time_base))
                packets = [p for p in inp.demux(istream) if p.dts is not None]
                if last_dts is not None:  # a clip's leading negative dts must stay after the previous clip's
                    while offset + packets[0].dts <= last_dts:
                        offset += step
                spans.append(
                    (offset * float(istream.time_base), (offset + n * step) * float(istream.time_base))
                )
                for p in packets:
                    p.pts, p.dts, p.stream = p.pts + offset, p.dts + offset, ostream
                    out.mux(p)
                    last_dts = p.dts
            offset += n * step
    return spans
