"""What the reader's admission checks cost: whole DataLoader epochs with and without them, rounds interleaved.

Not a test. On the dataset ``bench_reader.py`` builds (cached under ``--workdir``), each round reads one
whole epoch (first batch included: episodes are checked when they are admitted) in each of three modes, the
order rotating from round to round:

- ``crc+checks``: the default reader: each episode's CRC-32, its members' tar headers, decoded frame sizes;
- ``checks``: ``verify_crc=False``: the member-header and frame-size checks only;
- ``none``: ``verify_crc=False`` with those two checks switched off (patched out, in this process and its
  forked workers): what the reader did before them.

Medians of samples/s and CPU ms/sample (this process and its workers), and the header check alone over every
episode in a tight loop (page cache warm).

    python tools/bench_admission.py --workdir /tmp/lerowds-bench-reader --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))
from bench_reader import BenchData, _rusage, build_dataset, camera_key

from lerowds import LeRobotWebDataset
from lerowds.format import DatasetIndex
from lerowds.reader.io.integrity import Span, span_of
from lerowds.reader.io.store import LocalStore

logger = logging.getLogger("bench_admission")

MODES = ("crc+checks", "checks", "none")


@contextlib.contextmanager
def checks_off() -> Iterator[None]:
    """The member-header and frame-size checks switched off (DataLoader workers fork with this state)."""
    headers, frame_size = Span.check_headers, DatasetIndex.frame_size
    Span.check_headers = lambda self, read: None  # type: ignore[method-assign]
    DatasetIndex.frame_size = lambda self, key: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        Span.check_headers, DatasetIndex.frame_size = headers, frame_size  # type: ignore[method-assign]


def epoch(ds: LeRobotWebDataset, batch_size: int, num_workers: int) -> tuple[float, float]:
    """(samples/s, CPU ms/sample) of one whole epoch, first batch included."""
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    (u0, s0), t0, n = _rusage(), time.perf_counter(), 0
    for batch in loader:
        n += len(batch["index"])
    wall, (u1, s1) = time.perf_counter() - t0, _rusage()
    return n / wall, 1e3 * (u1 + s1 - u0 - s0) / n


def header_check_alone(root: Path) -> float:
    """Microseconds per episode of the member-header check, every episode once, page cache warm."""
    store = LocalStore(root, verify_crc=False)
    names = tuple(s.name for s in store.index.shards)
    spans = [span_of(store.table, names, store.index.video_keys, row) for row in range(len(store.table))]
    fds = {name: os.open(root / name, os.O_RDONLY) for name in names}
    try:
        for _ in range(2):  # the first pass warms the page cache
            t0 = time.perf_counter()
            for span in spans:
                fd, start = fds[span.shard], span.offset
                span.check_headers(lambda off, size, fd=fd, start=start: os.pread(fd, size, start + off))
            took = time.perf_counter() - t0
    finally:
        for fd in fds.values():
            os.close(fd)
    return 1e6 * took / len(spans)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-reader"))
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--length", type=int, default=90, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--sizes", nargs="+", default=["96x128"], help="HxW of the cameras")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=16, help="episode_pool_size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")
    root = build_dataset(
        args.workdir, BenchData(args.episodes, args.length, args.fps, tuple(args.sizes), "textured")
    )
    delta = {camera_key(s): [o / args.fps for o in (-2, -1, 0)] for s in args.sizes}

    def run(mode: str) -> tuple[float, float]:
        ds = LeRobotWebDataset(
            root, delta_timestamps=delta, episode_pool_size=args.pool, verify_crc=mode == "crc+checks"
        )
        with checks_off() if mode == "none" else contextlib.nullcontext():
            return epoch(ds, args.batch_size, args.num_workers)

    runs: dict[str, list[tuple[float, float]]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES[r % 3 :] + MODES[: r % 3]:
            runs[mode].append(run(mode))
            logger.info("round %d %-10s: %.0f samples/s, %.3f CPU ms/sample", r, mode, *runs[mode][-1])
    out: dict[str, Any] = {
        m: {
            "samples_s": float(np.median([x[0] for x in v])),
            "cpu_ms_per_sample": float(np.median([x[1] for x in v])),
        }
        for m, v in runs.items()
    }
    out["header_check_us_per_episode"] = header_check_alone(root)
    out["args"] = {k: str(v) for k, v in vars(args).items()}
    base = out["none"]
    for m in MODES[:2]:
        logger.info(
            "%s vs none, medians of %d rounds: %.0f vs %.0f samples/s (%+.1f %%), %.3f vs %.3f CPU ms/sample",
            m,
            args.rounds,
            out[m]["samples_s"],
            base["samples_s"],
            100 * (out[m]["samples_s"] / base["samples_s"] - 1),
            out[m]["cpu_ms_per_sample"],
            base["cpu_ms_per_sample"],
        )
    logger.info("member-header check alone: %.1f us per episode", out["header_check_us_per_episode"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
