"""Conversion processes: pool workers die with a SIGKILLed parent; two conversions into one output directory
exclude each other."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert, tree_bytes
from paused_cli import paused, wait_for

from lerowds.errors import ConversionError


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lerowds.cli", *args]


def _convert_args(root: Path, out: Path, *extra: str) -> list[str]:
    args = ["convert", "--repo-id", SMALL_REPO, "--root", str(root), "--output", str(out)]
    return _cli(*args, "--shard-size", "64KiB", "--no-progress", *extra)


def test_sigkill_of_the_parent_leaves_no_worker_behind(small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(  # each worker stops after its first episode, mid-shard
        paused(1, _convert_args(small_root, out, "--workers", "2")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        wait_for(
            "both workers mid-shard",
            lambda: len(list((out / "shards").glob(".shard-*.partial"))) >= 2,
            proc,
        )
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], alive
    finally:
        proc.kill()
        proc.wait(30)
        for p in children:  # orphans the fix failed to end (reparented, so not found as our children)
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass


def test_a_second_conversion_into_the_same_output_is_refused_naming_the_first(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = subprocess.Popen(  # the first run stops mid-shard and holds the output
        paused(2, _convert_args(small_root, out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for("the first run mid-shard", lambda: any((out / "shards").glob(".shard-*.partial")), first)
        with pytest.raises(ConversionError, match=rf"another conversion is running \(pid {first.pid}\)"):
            run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
        assert any((out / "shards").glob(".shard-*.partial"))  # the refused run deleted nothing
        second = subprocess.run(
            _convert_args(small_root, out), capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 2 and f"another conversion is running (pid {first.pid})" in second.stderr
    finally:
        first.kill()
        first.wait(30)
    run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)  # the lock died with its holder
    assert tree_bytes(out) == tree_bytes(small_out)


def test_tasks_run_side_by_side_but_not_beside_a_whole_run(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    task0 = subprocess.Popen(
        paused(1, _convert_args(small_root, out, "--num-tasks", "2", "--task-index", "0")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("task 0 mid-shard", lambda: any((out / "shards").glob(".shard-*.partial")), task0)
        kw = {"shard_size": SMALL_SHARD_SIZE}
        with pytest.raises(ConversionError, match=rf"another conversion is running \(pid {task0.pid}\)"):
            run_convert(small_root, SMALL_REPO, out, num_tasks=2, task_index=0, **kw)  # type: ignore[arg-type]
        with pytest.raises(ConversionError, match=rf"another conversion is running \(pid {task0.pid}\)"):
            run_convert(small_root, SMALL_REPO, out, **kw)  # type: ignore[arg-type]
        assert run_convert(small_root, SMALL_REPO, out, num_tasks=2, task_index=1, **kw).converted  # type: ignore[arg-type]
    finally:
        task0.kill()
        task0.wait(30)
    run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert tree_bytes(out) == tree_bytes(small_out)
