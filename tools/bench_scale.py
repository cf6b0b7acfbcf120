"""Scale benchmark: open, epoch start, resume, pickle and ``lerowds plan`` on DROID-sized and 1M-episode datasets.

Builds synthetic converted datasets WITHOUT video (the index and episode table only, written with
``lerowds.format`` exactly as ``lerowds convert`` writes them; no shard file exists, and none is read):
lognormal episode lengths clipped to 100..700 frames (mean ~295), 3 cameras, ~512 MB shards. Each figure
is measured in a fresh subprocess (memory = resident set growth; CPU = process time):

    python tools/bench_scale.py                         # 92,000 and 1,000,000 episodes
    python tools/bench_scale.py --episodes 92000 --quality

"first sample" is the same through ``next(iter(ds))``, table rows and prefetch list included (the read
itself is stopped: there are no shards). Epoch start and resume are the order work a DataLoader worker does before its first sample: the rank/worker
split, the pool's state after ``skip`` samples and its first emit (reading that sample's episode is the
same at any position). ``--quality`` compares the shuffle quality of order version 2 with the version-1
draws (uniform swap-remove over the pool's frames, re-implemented here) on one consumer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lerowds.format import EPISODES_FILE, INDEX_FILE, DatasetIndex, EpisodeTable, ShardRecord, video_columns

log = logging.getLogger("bench_scale")
CAMERAS = ("observation.images.left", "observation.images.right", "observation.images.wrist")
SHARD_BYTES = 512 << 20


def synthetic_lengths(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(270), 0.42, n)), 100, 700).astype(np.int64)


def build(root: Path, n: int) -> None:
    """Write ``index.json`` and ``episodes.parquet`` of an ``n``-episode dataset (no shards)."""
    rng = np.random.default_rng(1)
    lengths = synthetic_lengths(n)
    json_size = rng.integers(600, 900, n)
    parquet_size = lengths * 180 + rng.integers(0, 4000, n)
    clip_sizes = [lengths * 2600 + rng.integers(0, 50_000, n) for _ in CAMERAS]
    pad = lambda x: (x + 511) // 512 * 512
    member_sizes = [json_size, parquet_size, *clip_sizes]
    span = sum(512 + pad(m) for m in member_sizes)
    shard = np.cumsum(span) // SHARD_BYTES
    starts = np.concatenate([[0], np.cumsum(span)[:-1]])
    first_of_shard = np.concatenate([[0], np.flatnonzero(np.diff(shard)) + 1])
    offset = starts - starts[first_of_shard][np.searchsorted(first_of_shard, np.arange(n), side="right") - 1]
    cols = {
        "episode_index": np.arange(n),
        "length": lengths,
        "dataset_from_index": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        "shard": shard,
        "offset": offset,
        "size": span,
    }
    pos = offset.copy()
    for name, size in zip(["json", "parquet", *CAMERAS], member_sizes):
        off_col, size_col = (
            (f"{name}_offset", f"{name}_size") if name in ("json", "parquet") else video_columns(name)
        )
        cols[off_col], cols[size_col] = pos + 512, size
        pos = pos + 512 + pad(size)
    cols["crc32"] = rng.integers(0, 1 << 32, n)
    tasks = [(f"task {i % 40}",) for i in range(n)]
    table_bytes = EpisodeTable(cols, tasks).to_parquet_bytes()
    (root / EPISODES_FILE).write_bytes(table_bytes)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(shard)) + 1, [n]])
    shards = [
        ShardRecord(
            f"shards/shard-{s:06d}.tar",
            int(span[lo:hi].sum()),
            "0" * 64,
            list(range(lo, hi)),
            int(lengths[lo:hi].sum()),
        )
        for s, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    ]
    video = {
        "dtype": "video",
        "shape": [180, 320, 3],
        "names": ["height", "width", "channels"],
        "info": {"video.codec": "av1", "video.pix_fmt": "yuv420p", "video.height": 180, "video.width": 320},
    }
    features = {k: video for k in CAMERAS}
    features["action"] = {"dtype": "float32", "shape": [7], "names": None}
    index = DatasetIndex(
        repo_id=f"bench/synthetic_{n}",
        revision=None,
        codebase_version="v3.0",
        fps=15,
        features=features,
        tasks=tuple(f"task {i}" for i in range(40)),
        stats={},
        total_episodes=n,
        total_frames=int(lengths.sum()),
        shards=tuple(shards),
        episodes_sha256=hashlib.sha256(table_bytes).hexdigest(),
    )
    (root / INDEX_FILE).write_bytes(index.to_bytes())


# ---- measurements, each in its own process ------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _first_emit(ds, *, world: int, workers: int, rank: int, worker: int, pool: int, at: float) -> dict:
    from lerowds.reader.env import Consumer
    from lerowds.reader.order.pool import Emit, PoolOrder
    from lerowds.reader.order.ranks import consumer_sample_count

    ds.episode_pool_size = pool
    wall, cpu = time.perf_counter(), time.process_time()
    segments = ds._segments(0, Consumer(rank, world, worker, workers))
    count = consumer_sample_count(ds.num_frames, world_size=world, num_workers=workers, worker=worker)
    skip = min(int(at * count), count - 1)
    order = PoolOrder(segments, pool_size=pool, seed=ds.seed, epoch=0, rank=rank, worker=worker, shuffle=True)
    order.skip(skip)
    first = next(e for e in order.events() if isinstance(e, Emit))
    return {
        "s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "skip": skip,
        "frame": first.frame,
    }


class _FirstRead(BaseException):
    """Raised by the store when the first sample's bytes are asked for (the datasets here have no shards)."""


def _first_read(ds) -> dict:
    """CPU to the first episode read through the public path, ``next(iter(ds))``: everything a consumer does
    before its first sample (split, pool order, table rows, prefetch list) but reading and decoding."""

    def stop(*_: object) -> bytes:
        raise _FirstRead

    ds._store.parquet_bytes = stop
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        next(iter(ds))
    except _FirstRead:
        pass
    return {"s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def measure(root: str, what: str, args: dict) -> dict:
    from lerowds import LeRobotWebDataset

    before = _rss()
    wall, cpu = time.perf_counter(), time.process_time()
    ds = LeRobotWebDataset(root, episode_pool_size=64, seed=0, rank=0, world_size=1)
    opened = {
        "open_s": time.perf_counter() - wall,
        "open_cpu_s": time.process_time() - cpu,
        "open_rss_mb": (_rss() - before) / 1e6,
    }
    if what == "open":
        data = pickle.dumps(ds)
        opened["pickle_mb"] = len(data) / 1e6
        t = time.perf_counter()
        pickle.loads(data)
        opened["unpickle_s"] = time.perf_counter() - t
        opened["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        return opened
    if what == "emit":
        return _first_emit(ds, **args)
    if what == "first":
        return _first_read(ds)
    if what == "plan":
        from lerowds.reader.extras.dryrun import plan_dataset

        t, cpu = time.perf_counter(), time.process_time()
        report = plan_dataset(root, world_size=args["world"], num_workers=args["workers"], batch_size=32)
        return {
            "plan_s": time.perf_counter() - t,
            "plan_cpu_s": time.process_time() - cpu,
            "distinct": report.shuffle_quality.distinct_episodes,
        }
    raise ValueError(what)


SRC: str | None = None  # --src: measure another lerowds source tree (e.g. /work/main/src) side by side


def run(root: Path, what: str, **args: object) -> dict:
    code = (
        f"import json,sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_scale as b; "
        f"print(json.dumps(b.measure({str(root)!r}, {what!r}, {args!r})))"
    )
    env = dict(os.environ)
    if SRC is not None:
        env["PYTHONPATH"] = SRC
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---- shuffle quality: order version 2 vs version 1 ------------------------------------------------------


def legacy_stream(lengths: np.ndarray, pool: int, seed: int) -> np.ndarray:
    """Order version 1: each emit uniform over the pool's frames left (swap-remove), refill on drain."""
    from lerowds.reader.order.draws import UniformDraws, swap_remove_pool

    draws = UniformDraws(seed, 0, 0, 0)
    stream = swap_remove_pool(range(len(lengths)), lengths.__getitem__, pool_size=pool, draws=draws)
    return np.asarray([seg for seg, _ in stream])


def quality(n: int, batch: int) -> list[dict]:
    from lerowds.reader.extras.dryrun import batch_quality, ideal_shuffle
    from lerowds.reader.order.pool import PoolOrder
    from lerowds.reader.order.segments import SegmentArray

    lengths = synthetic_lengths(n, seed=5)
    segs = SegmentArray(np.arange(n), np.zeros(n, np.int64), lengths)
    rows = []
    for pool in (4, 16, 64, 256):
        order = PoolOrder(segs, pool_size=pool, seed=0, epoch=0, rank=0, worker=0, shuffle=True)
        v2 = np.concatenate([s for s, _ in order.chunks()])
        v1 = legacy_stream(lengths, pool, seed=0)
        q2, q1 = (batch_quality([s], batch_size=batch, pool_size=pool) for s in (v2, v1))
        rows.append(
            {
                "pool": pool,
                "v1_distinct": q1.distinct_episodes,
                "v2_distinct": q2.distinct_episodes,
                "v1_same_pair": q1.collision_rate,
                "v2_same_pair": q2.collision_rate,
            }
        )
    ideal = ideal_shuffle(lengths, batch_size=batch)
    rows.append(
        {"pool": "ideal", "v2_distinct": ideal.distinct_episodes, "v2_same_pair": ideal.collision_rate}
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[92_000, 1_000_000])
    parser.add_argument("--pools", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--points", type=float, nargs="+", default=[0.0, 0.5, 0.999])
    parser.add_argument(
        "--quality", action="store_true", help="also compare shuffle quality with order version 1"
    )
    parser.add_argument("--no-plan", action="store_true")
    parser.add_argument(
        "--src", help="measure the lerowds in this source tree instead (e.g. an older checkout)"
    )
    parser.add_argument("--worlds", nargs="+", default=["1x1", "1x8", "8x8", "64x8", "512x8"])
    args = parser.parse_args()
    global SRC
    SRC = args.src
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for n in args.episodes:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            t = time.perf_counter()
            build(root, n)
            frames = json.loads((root / INDEX_FILE).read_text())["total_frames"]
            log.info(
                "== %d episodes, %d frames (built in %.1fs; episodes.parquet %.1f MB)",
                n,
                frames,
                time.perf_counter() - t,
                (root / EPISODES_FILE).stat().st_size / 1e6,
            )
            o = run(root, "open")
            log.info(
                "open: %.2fs wall, %.2fs CPU, +%.0f MB resident (peak RSS %.0f MB); pickled dataset %.1f MB "
                "(unpickled in %.2fs)",
                o["open_s"],
                o["open_cpu_s"],
                o["open_rss_mb"],
                o["peak_rss_mb"],
                o["pickle_mb"],
                o["unpickle_s"],
            )
            for world, workers in (tuple(map(int, w.split("x"))) for w in args.worlds):
                e = run(root, "emit", world=world, workers=workers, rank=0, worker=0, pool=64, at=0.0)
                log.info(
                    "epoch start, world %d x %d workers (rank 0 worker 0, pool 64): %.3fs (%.3f CPU-s)",
                    world,
                    workers,
                    e["s"],
                    e["cpu_s"],
                )
            f = run(root, "first")
            log.info(
                "first sample through next(iter(ds)), 1 rank, no DataLoader (pool 64; read not counted): "
                "%.3fs (%.3f CPU-s)",
                f["s"],
                f["cpu_s"],
            )
            for pool in args.pools:
                for at in args.points:
                    e = run(root, "emit", world=1, workers=1, rank=0, worker=0, pool=pool, at=at)
                    log.info(
                        "resume, 1 rank x 1 worker, pool %d, at %.1f%% (skip %d): first emit after %.3fs "
                        "(%.3f CPU-s)",
                        pool,
                        at * 100,
                        e["skip"],
                        e["s"],
                        e["cpu_s"],
                    )
            if not args.no_plan:
                p = run(root, "plan", world=64, workers=8)
                log.info(
                    "lerowds plan --world-size 64 --num-workers 8 --batch-size 32: %.1fs (%.1f CPU-s)",
                    p["plan_s"],
                    p["plan_cpu_s"],
                )
    if args.quality:
        for row in quality(4000, 32):
            log.info(
                "shuffle quality (4000 episodes, one consumer, batch 32): %s",
                {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()},
            )


if __name__ == "__main__":
    main()
