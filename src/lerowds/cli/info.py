"""``lerowds info``: a converted dataset's totals, features, cameras and shards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lerowds.cli.command import EXIT_OK, Command


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a converted dataset directory")


def _info(args: argparse.Namespace) -> int:
    from lerowds.convert.info import describe

    sys.stdout.write(describe(args.path))
    return EXIT_OK


COMMAND = Command(
    "info",
    "show a converted dataset's totals, features, cameras and shards",
    _info_arguments,
    _info,
)
