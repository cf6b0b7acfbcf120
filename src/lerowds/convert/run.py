"""``lerowds convert``: source -> plan -> shards (in parallel, resumable) -> episode table -> index."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lerowds.checks import check_int
from lerowds.convert.card import record_source
from lerowds.convert.fetch import SourceFetcher, check_fits, ran, run_fetched, task_fetcher
from lerowds.convert.finalize import finalize, record_matches
from lerowds.convert.hub import open_source
from lerowds.convert.identity import shard_files, source_changes, source_id
from lerowds.convert.lifetime import die_with_parent
from lerowds.convert.lock import output_lock
from lerowds.convert.plan import (
    DEFAULT_SHARD_SIZE,
    PlannedShard,
    estimate_episode_bytes,
    parse_episodes,
    plan_shards,
    task_shards,
)
from lerowds.convert.shard import ProgressFn, ShardJob, convert_shard, disk_full
from lerowds.convert.source import SourceDataset
from lerowds.convert.space import bytes_needed
from lerowds.convert.state import ConversionPlan, check_output, claim_output, load_plan, read_done
from lerowds.errors import ConfigError, ConversionError, LerowdsError
from lerowds.format import EPISODES_FILE, INDEX_FILE, sha256_file

log = logging.getLogger(__name__)

DISK_MARGIN = 1.05  # ask for 5 % more free space than the plan's estimate


@dataclass(frozen=True, kw_only=True, slots=True)
class ConvertOptions:
    """The arguments of ``lerowds convert``. Only source, ``episodes``, ``shard_size`` and ``reencode`` change
    the output; ``workers`` and the task split only change how it is produced."""

    repo_id: str
    output: Path
    root: Path | None = None
    revision: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    workers: int = 1
    episodes: str | None = None
    reencode: bool = False
    num_tasks: int = 1
    task_index: int = 0
    finalize_only: bool = False
    progress: bool = True
    max_source_disk: int | None = None  # Hub sources: fetch files per shard, hold at most this many bytes

    def __post_init__(self) -> None:
        if not self.repo_id or self.repo_id.strip() != self.repo_id:
            raise ConfigError(f"--repo-id must be a non-empty ORG/NAME, got {self.repo_id!r}")
        check_int("--shard-size (bytes)", self.shard_size, 1)
        check_int("--workers", self.workers, 1)
        if self.max_source_disk is not None and (self.max_source_disk <= 0 or self.root is not None):
            raise ConfigError(
                f"--max-source-disk must be > 0 bytes and applies to Hub sources (no --root), got "
                f"{self.max_source_disk} with --root {self.root}"
            )
        check_int("--num-tasks", self.num_tasks, 1)
        if check_int("--task-index", self.task_index) >= self.num_tasks:
            raise ConfigError(
                f"--task-index must be in [0, --num-tasks), got --task-index {self.task_index} "
                f"--num-tasks {self.num_tasks}"
            )

    def plan_options(self) -> dict[str, Any]:
        episodes = None if self.episodes is None else ",".join(t.strip() for t in self.episodes.split(","))
        return {"episodes": episodes, "shard_size": self.shard_size, "reencode": self.reencode}


@dataclass(frozen=True, slots=True)
class ConvertResult:
    """What a ``convert`` call did: shards converted and reused (this task's), and whether it finalized."""

    output: Path
    num_shards: int
    converted: tuple[int, ...]
    reused: tuple[int, ...]
    finalized: bool


def build_plan(source: SourceDataset, episodes: Sequence[int], options: ConvertOptions) -> ConversionPlan:
    """The conversion plan: a pure function of the source's metadata, its file sizes and the options."""
    shards = plan_shards(estimate_episode_bytes(source, episodes), options.shard_size)
    return ConversionPlan(
        source={
            "repo_id": source.repo_id,
            "revision": source.revision,
            "codebase_version": source.codebase_version,
            "robot_type": source.robot_type,
            "fps": source.fps,
            "total_episodes": len(source.episodes),
            "total_frames": source.total_frames,
        },
        options=options.plan_options(),
        dataset={"features": source.features, "tasks": list(source.tasks), "stats": source.stats},
        shards=shards,
    )


def free_bytes(path: Path) -> int:
    """Free space on the file system holding ``path`` (its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def open_and_plan(options: ConvertOptions) -> tuple[SourceDataset, tuple[int, ...], ConversionPlan]:
    """Open the source, select its episodes and plan the shards (what every task of a conversion computes)."""
    source, selected = open_source(
        options.repo_id,
        root=options.root,
        revision=options.revision,
        select=lambda s: parse_episodes(options.episodes, [e.episode_index for e in s.episodes]),
        on_demand=options.max_source_disk is not None,
    )
    return source, selected, build_plan(source, selected, options)


def convert(options: ConvertOptions) -> ConvertResult:
    """Convert (this task's share of) a LeRobot v3 dataset; finalize when it is a single-task run."""
    try:
        return _convert(options)
    except OSError as e:
        if isinstance(e, LerowdsError):
            raise
        if e.errno == errno.ENOSPC:
            raise disk_full(f"under {options.output}") from e
        raise ConversionError(f"{e.filename or options.output}: {e.strerror or e}") from e


def _convert(options: ConvertOptions) -> ConvertResult:
    output = Path(options.output)
    if options.finalize_only:
        return _finalize_only(output, options)
    source, selected, plan = open_and_plan(options)
    check_output(output, plan)  # before the lock creates .lerowds/ in a directory that is not ours
    with output_lock(output, options.num_tasks, options.task_index):
        return _convert_locked(output, options, source, selected, plan)


def _convert_locked(
    output: Path,
    options: ConvertOptions,
    source: SourceDataset,
    selected: Sequence[int],
    plan: ConversionPlan,
) -> ConvertResult:
    rerun = claim_output(output, plan)
    record_source(output, source.repo_id, source.revision, source.card)
    mine = task_shards(plan.shards, options.num_tasks, options.task_index)
    reused = _reusable(output, plan, mine, source) if rerun else set()
    todo = [s for s in mine if s.shard not in reused]
    log.info(
        "%s -> %s: %d episodes, %d shards (%d for this task: %d to convert, %d done already)",
        options.repo_id,
        output,
        len(selected),
        len(plan.shards),
        len(mine),
        len(todo),
        len(reused),
    )
    if todo:
        for name in (INDEX_FILE, EPISODES_FILE):  # a partial output must never look complete
            (output / name).unlink(missing_ok=True)
        _check_disk_space(output, todo, source, options.max_source_disk)
        fetcher = task_fetcher(source, options.max_source_disk, output, options.task_index, options.num_tasks)
        jobs = [
            ShardJob(
                output=output,
                root=source.root if fetcher is None else fetcher.snapshot,
                shard=s,
                episodes=tuple(source.episode(e) for e in s.episodes),
                fps=source.fps,
                reencode=options.reencode,
                plan=plan.fingerprint,
                tasks=source.tasks,
                features=source.features,
                file_ids=source.file_ids(),
            )
            for s in todo
        ]
        if fetcher is not None:
            check_fits(fetcher, [(j.shard.shard, shard_files(j.episodes)) for j in jobs])
        _run_jobs(jobs, options.workers, options.progress, fetcher)
    finalized = False
    if options.num_tasks == 1:
        finalize(output)
        finalized = True
    else:
        log.info(
            "task %d/%d done; once every task is, run the same command with --finalize",
            options.task_index,
            options.num_tasks,
        )
    return ConvertResult(
        output, len(plan.shards), tuple(s.shard for s in todo), tuple(sorted(reused)), finalized
    )


def _finalize_only(output: Path, options: ConvertOptions) -> ConvertResult:
    plan = load_plan(output)
    asked = {"repo_id": options.repo_id, **options.plan_options()}
    have = {"repo_id": plan.repo_id, **plan.options}
    if options.revision is not None and options.root is not None:
        asked["revision"], have["revision"] = options.revision, plan.source.get("revision")
    diffs = [f"{k}: {have[k]!r} there, {asked[k]!r} given" for k in asked if asked[k] != have.get(k)]
    if diffs:
        raise ConversionError(
            f"--finalize: {output} holds a conversion with other arguments ({'; '.join(diffs)}); "
            "pass the arguments the conversion tasks were run with"
        )
    with output_lock(output):
        finalize(output)
    return ConvertResult(output, len(plan.shards), (), (), True)


def _reusable(
    output: Path, plan: ConversionPlan, shards: Sequence[PlannedShard], source: SourceDataset
) -> set[int]:
    """Shards whose done-record matches this plan, whose source files are unchanged since they were built,
    and whose tar still has the recorded size and sha256."""
    ok = set()
    seen = source.file_ids()  # one stat per source file (Hub files fetched on demand: the Hub's ids)
    for planned in shards:
        record = read_done(output, planned.shard)
        if record is None or not record_matches(output, record, planned, plan.fingerprint):
            continue
        episodes = [source.episode(e) for e in planned.episodes]
        changed = source_changes(record.sources, source_id(source.root, episodes, seen))
        if changed:
            log.warning("%s: converting it again: %s", output / record.name, "; ".join(changed))
            continue
        if sha256_file(output / record.name) == record.sha256:
            ok.add(planned.shard)
        else:
            log.warning(
                "%s: checksum differs from its done-record; converting it again", output / record.name
            )
    return ok


def _check_disk_space(
    output: Path, todo: Sequence[PlannedShard], source: SourceDataset, max_source: int | None
) -> None:
    if max_source is None:
        need = int(bytes_needed(source, todo) * DISK_MARGIN)
    else:  # the source files are not here to read footers from: the plan's estimate, and the source's bound
        need = int(sum(s.estimated_bytes for s in todo) * DISK_MARGIN) + max_source
    free = free_bytes(output)
    if free < need:
        raise ConversionError(
            f"not enough disk space in {output}: the {len(todo)} shard(s) to write need about {need / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB are free (tar headers and padding counted); free some space or pick another "
            "--output"
        )


# ----------------------------------------------------------------------------------------------- running
class _Bar(tqdm):
    """tqdm without its monitor thread, so that worker processes can be forked (see ``pool_context``)."""

    monitor_interval = 0


class _Progress:
    """A tqdm bar over frames, with episodes and MB/s in its postfix; off when disabled or not a terminal."""

    def __init__(self, jobs: Sequence[ShardJob], enabled: bool) -> None:
        self.total_episodes = sum(len(j.episodes) for j in jobs)
        self.episodes = 0
        self.nbytes = 0
        self.start = time.monotonic()
        self.bar = _Bar(
            total=sum(j.shard.num_frames for j in jobs),
            unit="frame",
            desc="convert",
            disable=not enabled or not sys.stderr.isatty(),
            dynamic_ncols=True,
        )

    def __call__(self, episodes: int, frames: int, nbytes: int) -> None:
        self.episodes += episodes
        self.nbytes += nbytes
        rate = self.nbytes / max(time.monotonic() - self.start, 1e-9) / 1e6
        self.bar.set_postfix_str(
            f"{self.episodes}/{self.total_episodes} episodes, {rate:.1f} MB/s", refresh=False
        )
        self.bar.update(frames)

    def close(self) -> None:
        self.bar.close()
        elapsed = time.monotonic() - self.start
        log.info(
            "wrote %d episodes, %.1f MB in %.1f s (%.1f MB/s)",
            self.episodes,
            self.nbytes / 1e6,
            elapsed,
            self.nbytes / 1e6 / max(elapsed, 1e-9),
        )


_worker_queue: Any = None


def _init_worker(q: Any, parent_pid: int) -> None:
    global _worker_queue
    die_with_parent(parent_pid)
    _worker_queue = q


def _worker_progress(episodes: int, frames: int, nbytes: int) -> None:
    _worker_queue.put((episodes, frames, nbytes))


def _convert_in_worker(job: ShardJob) -> int:
    convert_shard(job, _worker_progress)
    return job.shard.shard


def _run_jobs(
    jobs: Sequence[ShardJob], workers: int, show_progress: bool, fetcher: SourceFetcher | None = None
) -> None:
    # decided before any thread could exist; fetching on demand, the parent downloads while a worker converts
    pooled = (workers > 1 or fetcher is not None) and len(jobs) > 1
    ctx = pool_context() if pooled else None
    progress = _Progress(jobs, show_progress)
    try:
        if ctx is None:
            needs = [shard_files(j.episodes) for j in jobs]
            run_fetched(needs, fetcher, lambda i: ran(convert_shard, jobs[i], progress), 1)
        else:
            _run_pool(jobs, min(workers, len(jobs)), progress, ctx, fetcher)
    finally:
        progress.close()
        if fetcher is not None:
            fetcher.close()
            log.info("source files: %d downloads, at most %.1f MB held", fetcher.fetched, fetcher.peak / 1e6)


def pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` on Linux when no other Python thread runs: a worker then starts in ~15 ms instead of the ~1 s a
    ``spawn`` worker needs to import PyAV and pyarrow again (as torch's DataLoader, we rely on the native pools
    of numpy and pyarrow being fork-safe). ``spawn`` otherwise: a Python thread could hold a lock the child
    needs (a logging handler's, say) and deadlock it."""
    if sys.platform == "linux" and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _run_pool(
    jobs: Sequence[ShardJob],
    workers: int,
    progress: ProgressFn,
    ctx: multiprocessing.context.BaseContext,
    fetcher: SourceFetcher | None,
) -> None:
    log.info("converting %d shards in %d worker processes (%s)", len(jobs), workers, ctx.get_start_method())
    updates = ctx.Queue()

    def drain() -> None:
        while True:
            try:
                progress(*updates.get_nowait())
            except queue.Empty:
                return

    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(updates, os.getpid())
    ) as pool:
        needs = [shard_files(j.episodes) for j in jobs]
        submit = lambda i: pool.submit(_convert_in_worker, jobs[i])
        run_fetched(needs, fetcher, submit, workers, poll=drain)  # type: ignore[arg-type]
        drain()
