"""Benchmark the converter against a plain copy of the same files.

Generates a LeRobot v3 dataset (``lerowds.testing.v3writer`` layout; its videos re-encoded with panning noise so
they weigh ~80 MB, every episode starting on an IDR frame, as lerobot writes them), then times, each from a
cold-ish page cache (``posix_fadvise(DONTNEED)`` on every file first) and with the output fsynced:

- ``copy``: ``shutil.copytree`` of the source's data, video and meta files, then fsync of every copy;
- ``convert --workers 1`` and ``--workers 2``.

Throughput is source bytes / wall time for all three, so the ratios compare like with like.

    python tools/bench_convert.py [--work /tmp/lerowds-bench] [--episodes 20] [--frames 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from lerowds.convert import ConvertOptions, convert
from lerowds.testing.v3spec import CameraSpec, DatasetSpec
from lerowds.testing.v3writer import write_v3_dataset

log = logging.getLogger("bench_convert")
REPO = "lerowds/bench"


def generate(root: Path, episodes: int, frames: int, height: int, width: int, fps: int) -> None:
    """A v3 dataset of ``episodes`` x ``frames`` frames and 2 cameras, with heavy (noise) video."""
    spec = DatasetSpec(
        repo_id=REPO,
        fps=fps,
        episode_lengths=(frames,) * episodes,
        episode_tasks=tuple((f"task {e % 4}",) for e in range(episodes)),
        cameras=(
            CameraSpec("observation.images.front", height, width),
            CameraSpec("observation.images.wrist", height, width),
        ),
        codec="libx264",
        chunks_size=1000,
        data_file_frames=frames * 10,
        video_file_frames=frames * 5,
    )
    write_v3_dataset(root, spec)
    retexture(root, fps)


def retexture(root: Path, fps: int) -> None:
    """Re-encode every mp4 with panning noise (same frame count and timestamps), an IDR at each episode start."""
    meta = pq.read_table(sorted((root / "meta/episodes").glob("*/*.parquet"))).to_pylist()
    rng = np.random.default_rng(0)
    for cam_no, path in enumerate(sorted((root / "videos").glob("*/*/*.mp4"))):
        key, chunk, file = path.parts[-3], int(path.parts[-2][6:]), int(path.stem[5:])
        rows = [
            r
            for r in meta
            if (r[f"videos/{key}/chunk_index"], r[f"videos/{key}/file_index"]) == (chunk, file)
        ]
        starts = {round(r[f"videos/{key}/from_timestamp"] * fps) for r in rows}
        total = sum(r["length"] for r in rows)
        with av.open(str(path)) as c:
            height, width = c.streams.video[0].height, c.streams.video[0].width
        noise = rng.integers(0, 256, (height + 64, width + 64, 3), dtype=np.uint8)
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"crf": "28", "preset": "ultrafast", "g": str(2 * fps), "forced-idr": "1"}
            for f in range(total):
                dy, dx = (f * 3 + cam_no * 7) % 64, (f * 5) % 64
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(noise[dy : dy + height, dx : dx + width])
                )
                frame.pts, frame.time_base = f, Fraction(1, fps)
                if f in starts:
                    frame.pict_type = av.video.frame.PictureType.I
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        os.replace(tmp, path)


def source_files(root: Path) -> list[Path]:
    return [p for p in sorted(root.rglob("*")) if p.is_file()]


def drop_cache(paths: list[Path]) -> None:
    """Ask the kernel to forget these files' pages (clean pages only: sync first)."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def fsync_tree(root: Path) -> None:
    for p in source_files(root):
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(src: Path, out: Path, run: Callable[[], None]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run from a cold-ish cache; the output is removed afterwards."""
    shutil.rmtree(out, ignore_errors=True)
    drop_cache(source_files(src))
    t0, c0 = time.perf_counter(), cpu_seconds()
    run()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    shutil.rmtree(out, ignore_errors=True)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/lerowds-bench"), help="scratch directory")
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--frames", type=int, default=300, help="frames per episode")
    p.add_argument("--size", default="240x320", help="camera HxW")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--shard-size", default="16MB")
    p.add_argument("--repeat", type=int, default=5, help="rounds of measurements (medians are reported)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from lerowds.convert.plan import parse_size

    height, width = (int(v) for v in args.size.split("x"))
    src = args.work / f"src-{args.episodes}x{args.frames}-{args.size}"
    if not (src / "meta/info.json").is_file():
        shutil.rmtree(src, ignore_errors=True)
        sys.stdout.write(f"generating {src} ...\n")
        t0 = time.perf_counter()
        generate(src, args.episodes, args.frames, height, width, args.fps)
        sys.stdout.write(f"  done in {time.perf_counter() - t0:.1f} s\n")
    files = source_files(src)
    total = sum(f.stat().st_size for f in files)
    video = sum(f.stat().st_size for f in files if f.suffix == ".mp4")
    out = args.work / "out"

    def copy() -> None:
        shutil.copytree(src, out)
        fsync_tree(out)

    def conv(workers: int) -> Callable[[], None]:
        opts = ConvertOptions(
            repo_id=REPO,
            root=src,
            output=out,
            shard_size=parse_size(args.shard_size),
            workers=workers,
            progress=False,
        )
        return lambda: convert(opts)

    runs: dict[str, Callable[[], None]] = {
        "copy (copytree + fsync)": copy,
        "convert --workers 1": conv(1),
        "convert --workers 2": conv(2),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeat):  # interleaved: the disk's speed drifts, so compare within a round
        for name, run in runs.items():
            results[name].append(timed(src, out, run))
    sys.stdout.write(
        f"dataset: {args.episodes} episodes x {args.frames} frames, 2 cameras {args.size} h264 @ {args.fps} fps; "
        f"{total / 1e6:.1f} MB in {len(files)} files ({video / 1e6:.1f} MB video); shard size {args.shard_size}; "
        f"{os.cpu_count()} CPUs; median of {args.repeat} interleaved runs\n"
    )
    base = total / statistics.median(w for w, _ in results["copy (copytree + fsync)"]) / 1e6
    for name, measured in results.items():
        wall = statistics.median(w for w, _ in measured)
        cpu = statistics.median(c for _, c in measured)
        rate = total / wall / 1e6
        walls = ", ".join(f"{w:.2f}" for w, _ in measured)
        sys.stdout.write(
            f"  {name:26s} {rate:7.1f} MB/s  {rate / base:5.2f} x copy   cpu {cpu:5.2f} s   wall runs: {walls} s\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
