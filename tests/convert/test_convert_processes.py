"""Conversion processes: pool workers die with a SIGKILLed parent; two conversions into one output directory
exclude each other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from convert_helpers import SMALL_REPO

from lerowds.convert.shard import PAUSE_ENV


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lerowds.cli", *args]


def _convert_args(root: Path, out: Path, *extra: str) -> list[str]:
    args = ["convert", "--repo-id", SMALL_REPO, "--root", str(root), "--output", str(out)]
    return _cli(*args, "--shard-size", "64KiB", "--no-progress", *extra)


def _wait_for(what: str, cond, proc: subprocess.Popen, timeout_s: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_sigkill_of_the_parent_leaves_no_worker_behind(small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, PAUSE_ENV: "1"}  # each worker stops after its first episode, mid-shard
    proc = subprocess.Popen(
        _convert_args(small_root, out, "--workers", "2"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: list[psutil.Process] = []
    try:
        _wait_for(
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
