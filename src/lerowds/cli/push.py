"""``lerowds push``: upload a finished, verified converted dataset to a Hub dataset repository."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lerowds.cli.command import EXIT_OK, Command


def push_arguments(p: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """The push options; ``lerowds convert --push-to-hub`` shares ``--private`` and ``--push-revision``."""
    if positional:
        p.add_argument("path", type=Path, help="a finished converted dataset directory")
        p.add_argument("repo_id", metavar="ORG/NAME", help="the Hub dataset repository (created if absent)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--push-revision" if not positional else "--revision",
        dest="push_revision",
        metavar="BRANCH",
        help="push to this branch (created from main if absent; default main)",
    )


def run_push(path: Path, repo_id: str, args: argparse.Namespace) -> None:
    from lerowds.convert.push import push_to_hub

    result = push_to_hub(path, repo_id, revision=args.push_revision, private=args.private)
    sys.stdout.write(
        f"{path}: pushed to {result.url} (revision {result.revision}, {len(result.commits)} commits)\n"
    )


def _push(args: argparse.Namespace) -> int:
    run_push(args.path, args.repo_id, args)
    return EXIT_OK


COMMAND = Command(
    "push",
    "upload a finished converted dataset to a Hugging Face dataset repository (index.json last)",
    push_arguments,
    _push,
)
