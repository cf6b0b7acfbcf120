"""``lerowds verify``: check a converted dataset's shards against its index."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lerowds.cli.command import EXIT_FAILED, EXIT_OK, Command


def _verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a converted dataset directory")
    p.add_argument(
        "--deep", action="store_true", help="also check every episode's row and video frame counts"
    )


def _verify(args: argparse.Namespace) -> int:
    from lerowds.convert.verify import verify

    report = verify(args.path, deep=args.deep)
    (sys.stdout if report.ok else sys.stderr).write(report.format())
    return EXIT_OK if report.ok else EXIT_FAILED


COMMAND = Command(
    "verify",
    "check a converted dataset's shards against its index",
    _verify_arguments,
    _verify,
)
