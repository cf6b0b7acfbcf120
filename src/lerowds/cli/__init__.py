"""The ``lerowds`` command line: thin argparse over library functions, one module per command.

Each command module defines ``COMMAND`` (name, help, how to add its arguments, what to run); ``COMMANDS`` lists
them in the order ``lerowds --help`` shows. Errors lerowds raises on purpose (``LerowdsError``) print one line
and exit with status 2; ``--debug`` or ``LEROWDS_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from lerowds.cli import convert, demo, info, plan, push, train, verify
from lerowds.cli.command import EXIT_ERROR, EXIT_FAILED, EXIT_OK, Command
from lerowds.errors import LerowdsError

COMMANDS: dict[str, Command] = {
    m.COMMAND.name: m.COMMAND for m in (convert, verify, push, info, demo, plan, train)
}

__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "Command", "build_parser", "main"]


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
