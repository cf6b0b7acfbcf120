"""``lerowds convert``: a LeRobot v3 dataset to per-episode tar shards, in processes or datatrove tasks; and
``lerowds push``, whose options ``convert --push-to-hub`` shares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lerowds.cli.command import EXIT_OK, Command

if TYPE_CHECKING:
    from lerowds.convert.run import ConvertOptions


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
    p.add_argument(
        "--max-source-disk",
        metavar="SIZE",
        help="Hub sources: download each shard's source files just before converting it and delete them once no "
        "later shard reads them, holding at most SIZE (e.g. 50GB) at once (default: download all first)",
    )
    p.add_argument("--episodes", help="episodes to convert, e.g. 0:100,150 (a:b is half-open; default all)")
    p.add_argument("--reencode", action="store_true", help="re-encode clips that cannot be cut on a keyframe")
    p.add_argument("--num-tasks", type=int, default=1, help="split the shards over N tasks (machines)")
    p.add_argument("--task-index", type=int, default=0, help="this task's number in [0, N)")
    p.add_argument("--finalize", action="store_true", help="write the index once all tasks are done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--push-to-hub",
        metavar="ORG/NAME",
        help="once finished, verify and upload the output to this Hub dataset repository (see `lerowds push`)",
    )
    push_arguments(p, positional=False)
    _executor_arguments(p)


def _convert(args: argparse.Namespace) -> int:
    from lerowds.convert.run import convert

    _check_push_options(args)
    if args.executor is not None:
        return _convert_datatrove(args)
    _refuse_executor_options(args)
    result = convert(
        _options(
            args,
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
    if args.push_to_hub and result.finalized:
        run_push(result.output, args.push_to_hub, args)
    return EXIT_OK


def _check_push_options(args: argparse.Namespace) -> None:
    from lerowds.errors import ConfigError

    if args.push_to_hub is None and (args.private or args.push_revision is not None):
        raise ConfigError("--private and --push-revision need --push-to-hub ORG/NAME")
    if args.push_to_hub is not None and args.executor == "slurm":
        raise ConfigError(
            "--push-to-hub with --executor slurm: the finalize runs as a Slurm job; run "
            "`lerowds push DIR ORG/NAME` once it is done"
        )
    if args.push_to_hub is not None and args.num_tasks != 1 and not args.finalize:
        raise ConfigError(
            "--push-to-hub with --num-tasks: pass it to the --finalize run (a task alone does not finish the "
            "dataset), or run `lerowds push DIR ORG/NAME` afterwards"
        )


def _options(args: argparse.Namespace, **rest: Any) -> ConvertOptions:
    """The ``ConvertOptions`` the source/output/shard arguments ask for, plus ``rest``."""
    from lerowds.convert.plan import parse_size
    from lerowds.convert.run import ConvertOptions

    return ConvertOptions(
        repo_id=args.repo_id,
        output=args.output,
        root=args.root,
        revision=args.revision,
        shard_size=parse_size(args.shard_size),
        workers=args.workers,
        episodes=args.episodes,
        reencode=args.reencode,
        max_source_disk=None if args.max_source_disk is None else parse_size(args.max_source_disk),
        **rest,
    )


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
        job_name=args.job_name,
        sbatch_args=tuple(sbatch),
        dry_run=args.slurm_dry_run,
        **{k: getattr(args, k) for k in _EXECUTOR_ONLY},  # --tasks, --partition, ...
    )
    # tasks log to datatrove's per-task logs; bars of parallel tasks would interleave
    options = _options(args, progress=False)
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
        if args.push_to_hub and result.finalized:
            run_push(result.output, args.push_to_hub, args)
    return EXIT_OK


COMMAND = Command(
    "convert",
    "convert a LeRobot v3 dataset into per-episode tar shards",
    _convert_arguments,
    _convert,
)


# ----------------------------------------------------------------------------------------------- push
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


PUSH = Command(
    "push",
    "upload a finished converted dataset to a Hugging Face dataset repository (index.json last)",
    push_arguments,
    _push,
)
