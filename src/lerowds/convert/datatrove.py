"""``lerowds convert`` as a datatrove pipeline: one step converts a task's shards, one finalizes.

datatrove is the engine lerobot ports its large datasets with: ``LocalPipelineExecutor`` runs tasks on one
machine, ``SlurmPipelineExecutor`` submits them as a Slurm job array. Task ``rank`` of ``world_size`` converts
the shards with ``shard % world_size == rank`` (the ``--num-tasks/--task-index`` split of ``run.py``); a second
executor that depends on the first finalizes once, or refuses and names the missing shards and their tasks.
Optional: ``pip install 'lerowds[datatrove]'``. See docs/DATATROVE.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

try:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.executor import slurm as _slurm
    from datatrove.executor.base import PipelineExecutor
    from datatrove.executor.slurm import SlurmPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from loguru import logger as _loguru
except ImportError as e:  # tests/convert/test_convert_datatrove.py::test_missing_extra_names_it
    raise ImportError(
        f"lerowds.convert.datatrove needs datatrove ({e}); install the extra: pip install 'lerowds[datatrove]'"
    ) from e

from lerowds.checks import check_int
from lerowds.convert.finalize import collect_done
from lerowds.convert.lock import output_lock
from lerowds.convert.run import ConvertOptions, ConvertResult, convert, open_and_plan
from lerowds.convert.state import STATE_DIR, ConversionPlan, check_output, claim_output, load_plan
from lerowds.errors import ConfigError, ConversionError
from lerowds.format import INDEX_FILE, atomic_write_bytes

log = logging.getLogger(__name__)

EXECUTORS = ("local", "slurm")
# Slurm time limit of a task when --time is not given (what lerobot's port scripts ask for)
DEFAULT_TIME = "08:00:00"
SHOWN = 10  # tasks named in an error before "..."


# ----------------------------------------------------------------------------------------------- steps
class ConvertShards(PipelineStep):
    """Convert the shards of task ``rank`` of ``world_size`` (``shard % world_size == rank``).

    ``options`` are those of ``lerowds convert`` (``workers`` processes per task); the split comes from datatrove.
    A task reruns cheaply: shards already done (checked by checksum) are kept. With ``world_size == 1`` the task
    also finalizes. Documents flowing in are passed through untouched.
    """

    name = "convert shards"
    type = "lerowds"

    def __init__(self, options: ConvertOptions) -> None:
        super().__init__()
        if options.finalize_only or options.num_tasks != 1 or options.task_index != 0:
            raise ConfigError(
                "ConvertShards takes its task split from datatrove (rank, world_size): pass ConvertOptions "
                f"without num_tasks/task_index/finalize_only, got num_tasks={options.num_tasks}, "
                f"task_index={options.task_index}, finalize_only={options.finalize_only}"
            )
        self.options = options

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Any:
        options = replace(self.options, num_tasks=world_size, task_index=rank, progress=False)
        with lerowds_logs_to_datatrove():
            result: ConvertResult = convert(options)
        self.stat_update("shards_converted", value=len(result.converted), unit="task")
        self.stat_update("shards_reused", value=len(result.reused), unit="task")
        return data


class FinalizeConversion(PipelineStep):
    """Write the episode table and ``index.json`` once every task's shards are done (rank 0 only).

    Refuses with a ConversionError naming the shards that are not done, the tasks of ``tasks`` that own them
    and, with ``task_logs`` (the tasks executor's logging dir), their log files.
    """

    name = "finalize conversion"
    type = "lerowds"

    def __init__(self, options: ConvertOptions, tasks: int, task_logs: str | None = None) -> None:
        super().__init__()
        check_int("tasks", tasks, 1)
        self.options = replace(options, num_tasks=1, task_index=0, finalize_only=True, progress=False)
        self.tasks = tasks
        self.task_logs = task_logs

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Any:
        if rank == 0:
            with lerowds_logs_to_datatrove():
                check_tasks_done(Path(self.options.output), self.tasks, self.task_logs)
                convert(self.options)  # checks the arguments against the plan, then finalizes
            self.stat_update("finalized", unit="task")
        return data


def unfinished_tasks(output: Path, tasks: int) -> dict[int, tuple[int, ...]]:
    """The planned shards of ``output`` that are not done, by the task (of ``tasks``) that owns them."""
    _, missing = collect_done(output, load_plan(output))
    by_task: dict[int, list[int]] = {}
    for shard in missing:
        by_task.setdefault(shard % tasks, []).append(shard)
    return {t: tuple(s) for t, s in sorted(by_task.items())}


def check_tasks_done(output: Path, tasks: int, task_logs: str | None = None) -> None:
    """Raise a ConversionError naming every task of ``tasks`` whose shards are not all done."""
    missing = unfinished_tasks(output, tasks)
    if not missing:
        return
    num_missing = sum(len(s) for s in missing.values())
    total = len(load_plan(output).shards)
    parts = []
    for task, shards in list(missing.items())[:SHOWN]:
        shown = ", ".join(map(str, shards[:SHOWN])) + (", ..." if len(shards) > SHOWN else "")
        part = f"task {task} of {tasks} (shard{'s' if len(shards) > 1 else ''} {shown})"
        if task_logs is not None:
            task_log = Path(task_logs) / "logs" / f"task_{task:05d}.log"
            part += f", log {task_log}" if task_log.is_file() else ", never started"
            marker = Path(task_logs) / "completions" / f"{task:05d}"
            if marker.is_file():
                part += f" (datatrove marked it completed: delete {marker} so that it runs again)"
        parts.append(part)
    more = f"; and {len(missing) - SHOWN} more tasks" if len(missing) > SHOWN else ""
    raise ConversionError(
        f"cannot finalize {output}: {num_missing} of {total} shards are not done: {'; '.join(parts)}{more}. "
        "Rerun the same command: datatrove skips the tasks that finished and lerowds keeps every finished shard"
    )


# ----------------------------------------------------------------------------------------------- logging
class _ToLoguru(logging.Handler):
    """Forward lerowds' ``logging`` records to loguru, whose sinks datatrove points at the task's log file."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = _loguru.level(record.levelname).name
        except ValueError:
            level = record.levelno
        where = {"name": record.name, "function": record.funcName, "line": record.lineno}
        _loguru.patch(lambda r: r.update(where)).opt(exception=record.exc_info).log(  # type: ignore[call-arg]
            level, "{}", record.getMessage()
        )


@contextmanager
def lerowds_logs_to_datatrove() -> Iterator[None]:
    """While a step runs, lerowds' INFO logs go to datatrove's per-task log (and not twice to the console)."""
    logger = logging.getLogger("lerowds")
    handler, level, propagate = _ToLoguru(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


# ----------------------------------------------------------------------------------------------- executors
@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutorOptions:
    """How datatrove runs a conversion: ``--executor``, ``--tasks`` and the Slurm settings of ``lerowds convert``.

    ``parallel_tasks``: at most this many tasks at once (datatrove's ``workers``; Slurm ``--array=...%P``).
    ``logs_dir``: datatrove's logging dirs ``<logs_dir>/convert`` and ``<logs_dir>/finalize`` (completions,
    per-task logs, stats, Slurm scripts); default ``OUT/.lerowds/datatrove/tasks-N``, so that a rerun skips
    the finished tasks. ``cpus_per_task`` defaults to the conversion's ``workers``.
    """

    kind: str
    tasks: int
    parallel_tasks: int | None = None
    logs_dir: Path | None = None
    job_name: str = "lerowds_convert"
    partition: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem_per_cpu: str | None = None
    qos: str | None = None
    sbatch_args: tuple[tuple[str, str], ...] = ()
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        for name, count in (("--tasks", self.tasks), ("--parallel-tasks", self.parallel_tasks)):
            if count is not None:
                check_int(name, count, 1)
        if self.cpus_per_task is not None:
            check_int("--cpus-per-task", self.cpus_per_task, 1)
        if not self.job_name or any(c.isspace() for c in self.job_name):
            raise ConfigError(f"--job-name must be a non-empty word, got {self.job_name!r}")
        if self.kind == "slurm" and not self.partition:
            raise ConfigError("--executor slurm needs --partition (a CPU partition is enough)")
        slurm_only = {
            "--partition": self.partition,
            "--time": self.time,
            "--cpus-per-task": self.cpus_per_task,
            "--mem-per-cpu": self.mem_per_cpu,
            "--qos": self.qos,
            "--sbatch": self.sbatch_args or None,
            "--slurm-dry-run": self.dry_run or None,
        }
        given = [k for k, v in slurm_only.items() if v is not None]
        if self.kind == "local" and given:
            raise ConfigError(f"{', '.join(given)} only apply to --executor slurm, not local")

    def logs_root(self, output: Path) -> Path:
        return (
            self.logs_dir
            if self.logs_dir is not None
            else output / STATE_DIR / "datatrove" / f"tasks-{self.tasks}"
        )


@dataclass(frozen=True, slots=True)
class Submission:
    """One ``sbatch`` call of a dry run: the job id it was given, its command-line arguments and its script."""

    job_id: str
    args: tuple[str, ...]
    script: str


@dataclass(frozen=True, slots=True)
class ExecutorRun:
    """What ``run_with_datatrove`` did: the plan's shard count, where the logs are, and (Slurm) the jobs."""

    output: Path
    logs_dir: Path
    num_shards: int
    tasks: int
    finalized: bool
    # Slurm: (tasks job, finalize job); "" where datatrove had nothing left to run
    job_ids: tuple[str, ...] = ()
    submissions: tuple[Submission, ...] = ()


def prepare_output(options: ConvertOptions) -> ConversionPlan:
    """Plan the conversion and claim ``options.output`` once, before any task starts.

    Tasks that each claimed an empty output at the same moment could see the other's plan file as foreign
    content; claimed here first, every task finds its own plan there.
    """
    _, _, plan = open_and_plan(options)
    output = Path(options.output)
    check_output(output, plan)  # before the lock creates .lerowds/ in a directory that is not ours
    with output_lock(output):  # no other conversion may claim it meanwhile
        claim_output(output, plan)
    return plan


def build_executors(
    options: ConvertOptions, run: ExecutorOptions
) -> tuple[PipelineExecutor, PipelineExecutor]:
    """The tasks executor (``run.tasks`` tasks of ``ConvertShards``) and the finalize executor that depends on it.

    Run the second one: datatrove runs (local) or submits (Slurm) its dependency first. On Slurm the finalize job
    starts after the array even when a task failed (``afterany``), so that it names the failed tasks. The finalize
    runs on every rerun (it is cheap): it checks the shards themselves, which datatrove's completion markers of
    the tasks do not.
    """
    logs = run.logs_root(Path(options.output))
    convert_logs, finalize_logs = str(logs / "convert"), str(logs / "finalize")
    step = ConvertShards(replace(options, progress=False))
    last = FinalizeConversion(options, run.tasks, task_logs=convert_logs)
    workers = min(run.parallel_tasks, run.tasks) if run.parallel_tasks is not None else -1
    if run.kind == "local":
        tasks = LocalPipelineExecutor([step], tasks=run.tasks, workers=workers, logging_dir=convert_logs)
        final = LocalPipelineExecutor(
            [last], tasks=1, workers=1, logging_dir=finalize_logs, depends=tasks, skip_completed=False
        )
        return tasks, final
    common: dict[str, Any] = {
        "time": run.time or DEFAULT_TIME,
        "partition": run.partition,
        "qos": run.qos,
        "sbatch_args": {
            **({"mem-per-cpu": run.mem_per_cpu} if run.mem_per_cpu else {}),
            **dict(run.sbatch_args),
        },
    }
    tasks = SlurmPipelineExecutor(
        [step],
        tasks=run.tasks,
        workers=workers,
        job_name=run.job_name,
        cpus_per_task=run.cpus_per_task or options.workers,
        logging_dir=convert_logs,
        **common,
    )
    final = SlurmPipelineExecutor(
        [last],
        tasks=1,
        job_name=f"{run.job_name}_finalize",
        cpus_per_task=1,
        logging_dir=finalize_logs,
        depends=tasks,
        run_on_dependency_fail=True,
        skip_completed=False,
        **common,
    )
    return tasks, final


def run_with_datatrove(options: ConvertOptions, run: ExecutorOptions) -> ExecutorRun:
    """Plan and claim the output, then run (local) or submit (Slurm) the tasks and the finalize after them.

    Paths are made absolute first: a Slurm job need not start in the directory it was submitted from.
    """
    root = None if options.root is None else Path(options.root).resolve()
    options = replace(options, output=Path(options.output).resolve(), root=root)
    if run.logs_dir is not None:
        run = replace(run, logs_dir=Path(run.logs_dir).resolve())
    output = options.output
    plan = prepare_output(options)
    if run.tasks > len(plan.shards):
        log.warning(
            "%d tasks for %d shards: tasks %d..%d have no shard to convert",
            run.tasks,
            len(plan.shards),
            len(plan.shards),
            run.tasks - 1,
        )
    tasks, final = build_executors(options, run)
    logs = run.logs_root(output)
    if run.dry_run:
        with recorded_submissions() as submissions:
            final.run()
        for sub in submissions:  # next to datatrove's own launch_script.slurm files, for the reader to check
            atomic_write_bytes(logs / "dry_run" / f"{sub.job_id}.slurm", sub.script.encode())
        return ExecutorRun(output, logs, len(plan.shards), run.tasks, False, submissions=tuple(submissions))
    final.run()
    if run.kind == "local":
        return ExecutorRun(output, logs, len(plan.shards), run.tasks, (output / INDEX_FILE).is_file())
    ids = tuple("" if str(e.job_id) == "-1" else str(e.job_id) for e in (tasks, final))  # -1: all completed
    return ExecutorRun(output, logs, len(plan.shards), run.tasks, False, job_ids=ids)


@contextmanager
def recorded_submissions() -> Iterator[list[Submission]]:
    """Within: datatrove's Slurm executor records each ``sbatch`` call (ids ``DRYRUN1``, ...) instead of making it."""
    real = getattr(_slurm, "launch_slurm_job", None)
    if real is None:
        raise ConfigError("--slurm-dry-run does not know this datatrove version (no launch_slurm_job)")
    recorded: list[Submission] = []

    def record(script: str, *rest: Any) -> str:
        job_id = f"DRYRUN{len(recorded) + 1}"
        recorded.append(Submission(job_id, tuple(a for a in rest if isinstance(a, str)), script))
        return job_id

    _slurm.launch_slurm_job = record
    try:
        yield recorded
    finally:
        _slurm.launch_slurm_job = real
