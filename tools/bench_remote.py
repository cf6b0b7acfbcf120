"""Benchmark remote reading: ``LeRobotWebDataset`` over http from a loopback server with per-request latency
and a bandwidth cap, against the same dataset read locally. Not a test.

For each source, ``DataLoader(ds, batch_size=B, num_workers=W)`` iterates ``--epochs`` epochs; reported per
epoch: time to the first batch (from the iterator's creation, workers' start included) and samples/s after
the first batch. Remote runs also report requests, retries, bytes and the cache's peak. Runs alternate
local/remote ``--repeats`` times (the machine is noisy: compare within one run).

    python tools/bench_remote.py --latency-ms 50 --bandwidth-mbs 25
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "reader")]

from bench_reader import BenchData, build_dataset
from httpserver import LoopbackServer

from lerowds import LeRobotWebDataset
from lerowds.reader.io.remote import RemoteStore

logger = logging.getLogger("bench_remote")


@dataclass(frozen=True, slots=True)
class Run:
    source: str  # "local" or "remote"
    epoch: int
    samples: int
    first_batch_s: float
    rate: float  # samples/s after the first batch
    stalls: int = 0  # remote: admissions that waited for their episode (the first pool fill included)
    stall_ms: int = 0  # remote: ms the workers spent waiting for episodes, summed over workers
    cpu_ms: float = 0.0  # CPU ms per sample over the epoch: this process (incl. the server) + its workers


class CachePeak:
    """The largest number of bytes of cached and in-flight episodes under a cache dir, sampled every 5 ms."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            total = 0
            for p in self.root.glob("*/ep-*"):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    pass
            self.peak = max(self.peak, total)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _cpu_s() -> float:
    """CPU seconds of this process and of its children that have exited (the DataLoader's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(ds: LeRobotWebDataset, source: str, batch_size: int, num_workers: int, epochs: int) -> list[Run]:
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    store = ds._store if isinstance(ds._store, RemoteStore) else None
    out = []
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        before = store.stats() if store is not None else None
        cpu0 = _cpu_s()
        start = time.perf_counter()
        it = iter(loader)
        first = next(it)
        t_first = time.perf_counter()
        n_first = len(first["index"])
        n = sum(len(batch["index"]) for batch in it)
        elapsed = time.perf_counter() - t_first
        del it  # workers exit and write their counters
        cpu_ms = (_cpu_s() - cpu0) * 1e3 / max(1, n + n_first)
        stalls = stall_ms = 0
        if store is not None and before is not None:
            after = store.stats()
            stalls, stall_ms = after.stalls - before.stalls, after.stall_ms - before.stall_ms
        rate = n / elapsed if elapsed > 0 else 0.0
        r = Run(source, epoch, n + n_first, t_first - start, rate, stalls, stall_ms, cpu_ms)
        out.append(r)
        logger.info(
            "%s epoch %d: first batch %.2f s, then %.0f samples/s, %.2f CPU ms/sample%s",
            source,
            epoch,
            r.first_batch_s,
            r.rate,
            r.cpu_ms,
            f" (workers waited {stalls} times, {stall_ms} ms in all)" if store is not None else "",
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-reader"))
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--length", type=int, default=150, help="frames per episode")
    p.add_argument("--sizes", nargs="+", default=["96x128"], help="HxW of the cameras")
    p.add_argument("--latency-ms", type=float, default=50.0, help="added to every request by the server")
    p.add_argument("--bandwidth-mbs", type=float, default=25.0, help="per-connection cap, MB/s (0: none)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--pool", type=int, default=16, help="episode_pool_size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="local/remote runs, alternating")
    p.add_argument("--cache-limit", default="2GB")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("lerowds").setLevel(logging.WARNING)

    data = BenchData(
        episodes=args.episodes, length=args.length, fps=30, sizes=tuple(args.sizes), content="textured"
    )
    root = build_dataset(args.workdir, data)
    kw = {"episode_pool_size": args.pool, "seed": 0, "return_uint8": True}
    runs: list[Run] = []
    remote_stats, peaks = [], []
    bw = args.bandwidth_mbs * 1e6 if args.bandwidth_mbs > 0 else None
    with LoopbackServer(root, latency_s=args.latency_ms / 1e3, bandwidth=bw) as srv:
        for _ in range(args.repeats):
            runs += run(
                LeRobotWebDataset(root, **kw), "local", args.batch_size, args.num_workers, args.epochs
            )
            with tempfile.TemporaryDirectory(prefix="lerowds-bench-cache-") as cache:
                t = time.perf_counter()
                ds = LeRobotWebDataset(srv.url, cache_dir=cache, cache_limit=args.cache_limit, **kw)
                logger.info("remote index fetched in %.2f s", time.perf_counter() - t)
                peak = CachePeak(Path(cache))
                runs += run(ds, "remote", args.batch_size, args.num_workers, args.epochs)
                peaks.append(peak.stop())
                assert isinstance(ds._store, RemoteStore)
                remote_stats.append(asdict(ds._store.stats()))

    summary = {}
    for source in ("local", "remote"):
        rs = [r for r in runs if r.source == source]
        summary[source] = {
            "samples_per_s_median": statistics.median(r.rate for r in rs),
            "first_batch_s_epoch0_median": statistics.median(r.first_batch_s for r in rs if r.epoch == 0),
            "first_batch_s_later_median": statistics.median(
                [r.first_batch_s for r in rs if r.epoch > 0] or [0]
            ),
            "cpu_ms_per_sample_median": statistics.median(r.cpu_ms for r in rs),
            "stall_ms_median": statistics.median(r.stall_ms for r in rs),
        }
    summary["remote_vs_local"] = (
        summary["remote"]["samples_per_s_median"] / summary["local"]["samples_per_s_median"]
    )
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "dataset": {
            "episodes": args.episodes,
            "frames": args.episodes * args.length,
            "bytes": sum(f.stat().st_size for f in (root / "shards").iterdir()),
        },
        "runs": [asdict(r) for r in runs],
        "remote_stats": remote_stats,
        "cache_peak_bytes": peaks,
        "summary": summary,
    }
    print(json.dumps(result["summary"] | {"cache_peak_bytes": peaks, "remote_stats": remote_stats}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
