"""The ``lerowds`` command line: thin argparse over library functions, one function per command.

A command is a ``Command`` in ``COMMANDS`` (name, help, how to add its arguments, what to run); add one with
``register``. Errors lerowds raises on purpose (``LerowdsError``) print one line and exit with status 2;
``--debug`` or ``LEROWDS_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lerowds.errors import LerowdsError

log = logging.getLogger("lerowds")

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` declares its options, ``run(args)`` returns the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def register(command: Command) -> Command:
    if command.name in COMMANDS:
        raise ValueError(f"command {command.name!r} is registered twice")
    COMMANDS[command.name] = command
    return command


# ----------------------------------------------------------------------------------------------- convert
def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo-id", required=True, help="source dataset ORG/NAME (also recorded in the index)")
    p.add_argument("--root", type=Path, help="read a local LeRobot v3 dataset from DIR instead of the Hub")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit); default main")
    p.add_argument("--output", "-o", type=Path, required=True, help="output directory")
    p.add_argument(
        "--shard-size", default="512MB", help="target shard size, e.g. 512MB, 1GiB (default 512MB)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="shards converted in parallel processes (default 1)"
    )
    p.add_argument("--episodes", help="episodes to convert, e.g. 0:100,150 (a:b is half-open; default all)")
    p.add_argument("--reencode", action="store_true", help="re-encode clips that cannot be cut on a keyframe")
    p.add_argument("--num-tasks", type=int, default=1, help="split the shards over N tasks (machines)")
    p.add_argument("--task-index", type=int, default=0, help="this task's number in [0, N)")
    p.add_argument("--finalize", action="store_true", help="write the index once all tasks are done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _executor_arguments(p)


def _convert(args: argparse.Namespace) -> int:
    from lerowds.convert.plan import parse_size
    from lerowds.convert.run import ConvertOptions, convert

    if args.executor is not None:
        return _convert_datatrove(args)
    _refuse_executor_options(args)
    result = convert(
        ConvertOptions(
            repo_id=args.repo_id,
            output=args.output,
            root=args.root,
            revision=args.revision,
            shard_size=parse_size(args.shard_size),
            workers=args.workers,
            episodes=args.episodes,
            reencode=args.reencode,
            num_tasks=args.num_tasks,
            task_index=args.task_index,
            finalize_only=args.finalize,
            progress=not args.no_progress,
        )
    )
    state = "finished" if result.finalized else "shards done, not finalized yet"
    sys.stdout.write(
        f"{result.output}: {state} ({len(result.converted)} shards converted, {len(result.reused)} reused, "
        f"{result.num_shards} in the plan)\n"
    )
    return EXIT_OK


def _executor_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("datatrove (pip install 'lerowds[datatrove]'; see docs/DATATROVE.md)")
    g.add_argument(
        "--executor", choices=("local", "slurm"), help="run the tasks and the finalize with datatrove"
    )
    g.add_argument(
        "--tasks",
        type=int,
        metavar="N",
        help="datatrove tasks; task I converts the shards with shard %% N == I",
    )
    g.add_argument(
        "--parallel-tasks", type=int, metavar="P", help="at most this many tasks at once (default all)"
    )
    g.add_argument(
        "--logs-dir", type=Path, metavar="DIR", help="datatrove logs (default OUT/.lerowds/datatrove/tasks-N)"
    )
    g.add_argument("--job-name", default="lerowds_convert", help="Slurm job name (default lerowds_convert)")
    g.add_argument("--partition", help="Slurm partition (required with --executor slurm)")
    g.add_argument("--time", help="Slurm time limit of a task (default 08:00:00)")
    g.add_argument("--cpus-per-task", type=int, metavar="C", help="Slurm CPUs per task (default --workers)")
    g.add_argument("--mem-per-cpu", help="Slurm memory per CPU, e.g. 1950M (default datatrove's 2G)")
    g.add_argument("--qos", help="Slurm QOS (default the cluster's)")
    g.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more #SBATCH options, e.g. account=X",
    )
    g.add_argument("--slurm-dry-run", action="store_true", help="write the sbatch scripts, submit nothing")


_EXECUTOR_ONLY = (
    "tasks",
    "parallel_tasks",
    "logs_dir",
    "partition",
    "time",
    "cpus_per_task",
    "mem_per_cpu",
    "qos",
)


def _refuse_executor_options(args: argparse.Namespace) -> None:
    from lerowds.errors import ConfigError

    given = [f"--{k.replace('_', '-')}" for k in _EXECUTOR_ONLY if getattr(args, k) is not None]
    given += ["--sbatch"] * bool(args.sbatch) + ["--slurm-dry-run"] * args.slurm_dry_run
    if given:
        raise ConfigError(f"{', '.join(given)} need --executor local|slurm")


def _convert_datatrove(args: argparse.Namespace) -> int:
    from lerowds.convert.plan import parse_size
    from lerowds.convert.run import ConvertOptions
    from lerowds.errors import ConfigError

    if args.tasks is None:
        raise ConfigError("--executor needs --tasks N")
    if args.num_tasks != 1 or args.task_index != 0 or args.finalize:
        raise ConfigError(
            "--executor splits and finalizes by itself: drop --num-tasks, --task-index, --finalize"
        )
    try:
        from lerowds.convert.datatrove import ExecutorOptions, run_with_datatrove
    except ImportError as e:
        raise ConfigError(str(e)) from e
    sbatch = []
    for item in args.sbatch:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--sbatch {item!r}: expected KEY=VALUE, e.g. --sbatch account=myproject")
        sbatch.append((key.strip().lstrip("-"), value))
    run = ExecutorOptions(
        kind=args.executor,
        tasks=args.tasks,
        parallel_tasks=args.parallel_tasks,
        logs_dir=args.logs_dir,
        job_name=args.job_name,
        partition=args.partition,
        time=args.time,
        cpus_per_task=args.cpus_per_task,
        mem_per_cpu=args.mem_per_cpu,
        qos=args.qos,
        sbatch_args=tuple(sbatch),
        dry_run=args.slurm_dry_run,
    )
    options = ConvertOptions(
        repo_id=args.repo_id,
        output=args.output,
        root=args.root,
        revision=args.revision,
        shard_size=parse_size(args.shard_size),
        workers=args.workers,
        episodes=args.episodes,
        reencode=args.reencode,
        progress=False,  # tasks log to datatrove's per-task logs; bars of parallel tasks would interleave
    )
    result = run_with_datatrove(options, run)
    out = sys.stdout.write
    if result.submissions:
        out(
            f"{result.output}: dry run, nothing submitted; {result.num_shards} shards, {result.tasks} tasks\n"
        )
        for sub in result.submissions:
            script = result.logs_dir / "dry_run" / f"{sub.job_id}.slurm"
            out(f"{sub.job_id}: {' '.join(['sbatch', *sub.args, str(script)])}\n")
    elif result.job_ids:
        tasks_job, final_job = result.job_ids
        if not tasks_job:
            what = f"every task completed already; submitted finalize job {final_job}"
        else:
            what = f"submitted Slurm job {tasks_job} ({result.tasks} tasks) and finalize job {final_job} after it"
        out(f"{result.output}: {what}; logs in {result.logs_dir}\n")
    else:
        state = "finished" if result.finalized else "not finalized"
        out(
            f"{result.output}: {state} ({result.num_shards} shards by {result.tasks} datatrove tasks; "
            f"logs in {result.logs_dir})\n"
        )
    return EXIT_OK


# ----------------------------------------------------------------------------------------------- verify, info
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


def _info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a converted dataset directory")


def _info(args: argparse.Namespace) -> int:
    from lerowds.convert.info import describe

    sys.stdout.write(describe(args.path))
    return EXIT_OK


register(
    Command(
        "convert", "convert a LeRobot v3 dataset into per-episode tar shards", _convert_arguments, _convert
    )
)
register(
    Command("verify", "check a converted dataset's shards against its index", _verify_arguments, _verify)
)
register(
    Command("info", "show a converted dataset's totals, features, cameras and shards", _info_arguments, _info)
)


# ----------------------------------------------------------------------------------------------- demo
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


register(
    Command(
        "demo",
        "make a small LeRobot v3 dataset, convert it, stream it through a DataLoader, show what came out",
        _demo_arguments,
        _demo,
    )
)


# ----------------------------------------------------------------------------------------------- plan
def _plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="a converted dataset directory (only its index is read)")
    p.add_argument("--world-size", type=int, required=True, help="ranks (processes) of the training run")
    p.add_argument("--num-workers", type=int, required=True, help="DataLoader workers per rank (0: none)")
    p.add_argument("--batch-size", type=int, required=True, help="DataLoader batch size")
    p.add_argument("--episode-pool-size", type=int, default=64, help="episodes per pool (default 64)")
    p.add_argument("--pool-byte-budget", help="bound on a pool's stored episode bytes, e.g. 512MB")
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
    )
    if args.plot is not None:
        log.info("plot written to %s", plot_plan(report, args.plot))
    sys.stdout.write(json.dumps(report.to_dict(), indent=1) + "\n" if args.json else format_plan(report))
    return EXIT_OK


register(
    Command(
        "plan",
        "dry-run the reader on a dataset's index: samples and batches per rank, pool memory, shuffle quality",
        _plan_arguments,
        _plan,
    )
)


# ----------------------------------------------------------------------------------------------- train
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


register(
    Command(
        "train",
        "train a lerobot policy with lerobot's own training on a converted dataset",
        _train_arguments,
        _train,
    )
)


# ----------------------------------------------------------------------------------------------- main
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


if __name__ == "__main__":
    sys.exit(main())
