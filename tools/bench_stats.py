"""Benchmark: what live stats cost. Same DataLoader epochs with ``stats=False`` and ``stats=True``, interleaved.

    python tools/bench_stats.py [--workdir /tmp/lerowds-bench-stats] [--rounds 5]

Prints samples/s of each mode (median over rounds) and the overhead of stats (target: < 2 %). The VM
is noisy: the rounds alternate the two modes so drifts hit both alike.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset
from lerowds.convert import ConvertOptions, convert
from lerowds.testing.v3writer import CameraSpec, DatasetSpec, write_v3_dataset

log = logging.getLogger("bench_stats")


def dataset(workdir: Path) -> Path:
    out = workdir / "converted"
    if (out / "index.json").is_file():
        return out
    lengths = [60 + (7 * e) % 50 for e in range(40)]
    spec = DatasetSpec(
        repo_id="lerowds/bench_stats",
        fps=15,
        episode_lengths=lengths,
        episode_tasks=[["pick up the red cube"]] * len(lengths),
        cameras=(CameraSpec("observation.images.front", h=96, w=128),),
        video_file_frames=1000,
    )
    src = write_v3_dataset(workdir / "source", spec)
    convert(ConvertOptions(repo_id=spec.repo_id, root=src, output=out, progress=False))
    return out


def epoch_rate(root: Path, stats: bool, num_workers: int, batch_size: int) -> float:
    ds = LeRobotWebDataset(
        root,
        delta_timestamps={"observation.images.front": [-2 / 15, 0.0], "action": [i / 15 for i in range(10)]},
        episode_pool_size=16,
        stats=stats,
    )
    it = iter(DataLoader(ds, batch_size=batch_size, num_workers=num_workers))
    first = next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch["index"])
    del first
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-stats"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = dataset(args.workdir)
    rates: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for stats in (False, True) if r % 2 == 0 else (True, False):
            rates[stats].append(epoch_rate(root, stats, args.num_workers, args.batch_size))
            log.info("round %d stats=%s: %.0f samples/s", r, stats, rates[stats][-1])
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    log.info(
        "stats off %.0f samples/s, stats on %.0f samples/s: overhead %.1f %%", off, on, 100 * (1 - on / off)
    )


if __name__ == "__main__":
    main()
