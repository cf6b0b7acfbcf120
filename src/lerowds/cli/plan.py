"""``lerowds plan``: dry-run the reader on a dataset's index."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lerowds.cli.command import EXIT_OK, Command

log = logging.getLogger("lerowds")


def _plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a converted dataset directory (only its index is read)")
    p.add_argument("--world-size", type=int, required=True, help="ranks (processes) of the training run")
    p.add_argument("--num-workers", type=int, required=True, help="DataLoader workers per rank (0: none)")
    p.add_argument("--batch-size", type=int, required=True, help="DataLoader batch size")
    p.add_argument("--episode-pool-size", type=int, default=64, help="episodes per pool (default 64)")
    p.add_argument("--pool-byte-budget", help="bound on a pool's stored episode bytes, e.g. 512MB")
    p.add_argument("--run-length", type=int, default=1, help="run mode: frames per run (default 1)")
    p.add_argument("--shuffle-buffer", type=int, default=0, help="run mode: samples buffered (default 0)")
    p.add_argument("--seed", type=int, default=0, help="order seed (default 0)")
    p.add_argument("--epoch", type=int, default=0, help="epoch to plan (default 0)")
    p.add_argument("--remainder", choices=("drop", "repeat"), default="drop", help="default drop")
    p.add_argument("--plot", type=Path, help="also save a figure (needs matplotlib), e.g. plan.png")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def _plan(args: argparse.Namespace) -> int:
    import json

    from lerowds.reader.extras.dryrun import plan_dataset
    from lerowds.reader.extras.dryrun_view import format_plan, plot_plan, require_matplotlib

    if args.plot is not None:
        require_matplotlib()  # fail before the simulation, not after
    report = plan_dataset(
        args.path,
        world_size=args.world_size,
        num_workers=args.num_workers,
        batch_size=args.batch_size,
        episode_pool_size=args.episode_pool_size,
        pool_byte_budget=args.pool_byte_budget,
        seed=args.seed,
        epoch=args.epoch,
        remainder=args.remainder,
        run_length=args.run_length,
        shuffle_buffer=args.shuffle_buffer,
    )
    if args.plot is not None:
        log.info("plot written to %s", plot_plan(report, args.plot))
    sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n" if args.json else format_plan(report))
    return EXIT_OK


COMMAND = Command(
    "plan",
    "dry-run the reader on a dataset's index: samples and batches per rank, pool memory, shuffle quality",
    _plan_arguments,
    _plan,
)
