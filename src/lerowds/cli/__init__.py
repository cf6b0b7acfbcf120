"""The ``lerowds`` command line: thin argparse over library functions.

Each command is a ``Command`` (name, help, how to add its arguments, what to run): ``convert`` (with ``push``,
which it shares options with) and ``plan`` in modules of their own, the four small ones (``verify``, ``info``,
``demo``, ``train``) here; ``COMMANDS`` lists them in the order ``lerowds --help`` shows. Errors lerowds raises on purpose (``LerowdsError``) print one line
and exit with status 2; ``--debug`` or ``LEROWDS_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from lerowds.cli import convert, plan
from lerowds.cli.command import EXIT_ERROR, EXIT_FAILED, EXIT_OK, Command
from lerowds.errors import LerowdsError

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "Command", "build_parser", "main"]


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


def _info(args: argparse.Namespace) -> int:
    from lerowds.convert.info import describe

    sys.stdout.write(describe(args.path))
    return EXIT_OK


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


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "lerobot_args",
        nargs=argparse.REMAINDER,
        help="lerobot-train's arguments (--policy.type=act, --steps, --batch_size, --output_dir, --resume, "
        "--config_path, --wandb.enable, ...) plus --lerowds.source=DIR|URL|hf://datasets/ORG/NAME; "
        "see docs/LEROBOT.md",
    )


def _train(args: argparse.Namespace) -> int:
    from lerowds.train import run

    run(args.lerobot_args)
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        convert.COMMAND,
        Command("verify", "check a converted dataset's shards against its index", _verify_arguments, _verify),
        convert.PUSH,
        Command(
            "info",
            "show a converted dataset's totals, features, cameras and shards",
            lambda p: p.add_argument("path", type=Path, help="a converted dataset directory"),
            _info,
        ),
        Command(
            "demo",
            "make a small LeRobot v3 dataset, convert it, stream it through a DataLoader, show what came out",
            _demo_arguments,
            _demo,
        ),
        plan.COMMAND,
        Command(
            "train",
            "train a lerobot policy with lerobot's own training on a converted dataset",
            _train_arguments,
            _train,
        ),
    )
}


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--debug and -q, accepted before and after the command (after it, they must not reset the defaults)."""
    p = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else False
    p.add_argument("--debug", action="store_true", default=default, help="show tracebacks and debug logs")
    p.add_argument("-q", "--quiet", action="store_true", default=default, help="only warnings and errors")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lerowds", description="LeRobot v3 datasets as WebDataset shards.", parents=[_common(False)]
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_arguments(
            sub.add_parser(command.name, help=command.help, description=command.help, parents=[_common(True)])
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and argv[1:] not in (["-h"], ["--help"]):
        # lerobot-train's flags (draccus: --policy.type=act ...) pass through untouched: argparse would
        # take them for its own options. With flags, --help is lerobot's (scoped to e.g. the policy type).
        args = argparse.Namespace(command="train", lerobot_args=argv[1:], debug=False, quiet=False)
    else:
        args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("LEROWDS_DEBUG", "") not in ("", "0")
    level = logging.DEBUG if debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command].run(args)
    except LerowdsError as e:
        if debug:
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"lerowds {args.command}: error: {e}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"lerowds {args.command}: interrupted; rerun the same command to resume\n")
        return 130
