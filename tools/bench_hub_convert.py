"""Benchmark ``lerowds convert --repo-id`` from a loopback Hub with and without ``--max-source-disk``.

Generates the bench-shaped dataset of ``bench_convert.py`` (two noisy 240x320 cameras), serves it from a
loopback Hub (``tests/convert/hubserver.py``: the Hub's ``resolve``, tree and revision APIs) and runs the CLI,
alternating the two modes, each with an empty Hugging Face cache. A thread samples, every ~2 ms, the bytes of
the source files on disk: the HF cache's blobs without the limit, ``OUT/.lerowds/source`` with it. Reports the
peak of each and the wall time ratio (bounded / unbounded) per round, and their medians.

    python tools/bench_hub_convert.py [--episodes 24] [--frames 300] [--limit-fraction 0.25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools"), str(ROOT / "tests" / "convert")]

from bench_convert import generate
from hubserver import HubServer

from lerowds.convert.fetch import RESERVE
from lerowds.convert.plan import estimate_episode_bytes, parse_size, plan_shards
from lerowds.convert.source import load_local

REPO = "lerowds/bench"


class Peak:
    """The most bytes of regular files under ``root``, sampled by a thread."""

    def __init__(self, root: Path) -> None:
        self.root, self.peak = root, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for dirpath, _, files in os.walk(self.root):
                for name in files:
                    try:
                        st = os.lstat(os.path.join(dirpath, name))
                    except FileNotFoundError:
                        continue
                    total += st.st_size if stat.S_ISREG(st.st_mode) else 0
            self.peak = max(self.peak, total)
            self._stop.wait(0.002)

    def __enter__(self) -> Peak:  # noqa: PYI034  # noqa: PYI034
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(hub: HubServer, work: Path, shard_size: str, workers: int, limit: int | None) -> tuple[float, int]:
    """(wall seconds, peak source bytes) of one conversion with a fresh HF cache."""
    out, home = work / "out", work / "hf"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(home), HF_HUB_DISABLE_PROGRESS_BARS="1")
    args = [sys.executable, "-m", "lerowds.cli", "-q", "convert", "--repo-id", REPO, "--output", str(out)]
    args += ["--shard-size", shard_size, "--workers", str(workers), "--no-progress"]
    if limit is not None:
        args += ["--max-source-disk", str(limit)]
    watched = (
        out / ".lerowds" / "source"
        if limit is not None
        else home / "hub" / f"datasets--{REPO.replace('/', '--')}" / "blobs"
    )
    start = time.perf_counter()
    with Peak(watched) as peak:
        subprocess.run(args, env=env, check=True)
    return time.perf_counter() - start, peak.peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/lerowds-bench-hub"))
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--shard-size", default="8MB")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--limit-fraction", type=float, default=0.25, help="limit as a fraction of the source")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args(argv)
    src = a.work / "src"
    if not (src / "meta" / "info.json").is_file():
        generate(src, a.episodes, a.frames, 240, 320, 30)
    source = load_local(src, REPO)
    everything = [e.episode_index for e in source.episodes]
    files = source.files_for(everything)
    total = sum(source.file_size(f) for f in files)
    shards = plan_shards(estimate_episode_bytes(source, everything), parse_size(a.shard_size))
    need = max(sum(source.file_size(f) for f in source.files_for(s.episodes)) for s in shards)
    limit = max(int(total * a.limit_fraction), need + RESERVE)
    print(
        f"source: {len(files)} data/video files, {total / 1e6:.1f} MB; {len(shards)} shards; "
        f"limit {limit / 1e6:.1f} MB (largest shard reads {need / 1e6:.1f} MB); --workers {a.workers}"
    )
    ratios, peaks = [], {"unbounded": [], "bounded": []}
    with HubServer() as hub:
        hub.seed(REPO, src)
        for r in range(a.repeat):
            t_full, p_full = run(hub, a.work, a.shard_size, a.workers, None)
            t_bound, p_bound = run(hub, a.work, a.shard_size, a.workers, limit)
            ratios.append(t_full / t_bound)
            peaks["unbounded"].append(p_full)
            peaks["bounded"].append(p_bound)
            print(
                f"round {r}: unbounded {t_full:.2f} s, peak {p_full / 1e6:.1f} MB; bounded {t_bound:.2f} s, "
                f"peak {p_bound / 1e6:.1f} MB; throughput bounded/unbounded {t_full / t_bound:.2f}x"
            )
    print(
        f"median: throughput bounded/unbounded {statistics.median(ratios):.2f}x; peak source bytes "
        f"{max(peaks['unbounded']) / 1e6:.1f} MB unbounded, {max(peaks['bounded']) / 1e6:.1f} MB bounded "
        f"(limit {limit / 1e6:.1f} MB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
