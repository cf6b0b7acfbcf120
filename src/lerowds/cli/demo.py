"""``lerowds demo``: the end-to-end run on a sample dataset the project makes itself."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lerowds.cli.command import EXIT_OK, Command


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("lerowds-demo"),
        help="where the sample dataset and its conversion go (default ./lerowds-demo)",
    )
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _demo(args: argparse.Namespace) -> int:
    from lerowds.demo import run_demo

    report = run_demo(
        args.workdir, num_workers=args.num_workers, batch_size=args.batch_size, progress=not args.no_progress
    )
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return EXIT_OK


COMMAND = Command(
    "demo",
    "make a small LeRobot v3 dataset, convert it, stream it through a DataLoader, show what came out",
    _demo_arguments,
    _demo,
)
