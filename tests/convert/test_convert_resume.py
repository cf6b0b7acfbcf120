"""Interrupted, split and repaired conversions end with the bytes of one clean run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert, tree_bytes
from paused_cli import paused, wait_for

from lerowds.convert.state import ConversionPlan, load_plan
from lerowds.errors import ConversionError


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lerowds.cli", *args]


def test_resume_after_sigkill_gives_the_bytes_of_a_clean_run(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    plan: ConversionPlan = load_plan(small_out)
    assert len(plan.shards) >= 3
    out = tmp_path / "out"
    # The paused writer stops the process right after the first episode of shard 1, when shard 0 is done
    # and shard 1 is half-written; then it gets a real SIGKILL.
    args = ["convert", "--repo-id", SMALL_REPO, "--root", str(small_root), "--output", str(out)]
    args += ["--shard-size", "64KiB", "--no-progress"]
    after = len(plan.shards[0].episodes) + 1
    proc = subprocess.Popen(paused(after, _cli(*args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(
            "shard 1 half-written", lambda: any((out / "shards").glob(".shard-000001.tar.*.partial")), proc
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert (out / ".lerowds/done/shard-000000.json").is_file()
    assert not (out / "index.json").exists() and not (out / "episodes.parquet").exists()
    assert not (out / "shards/shard-000001.tar").exists()  # never a half-written shard under its final name

    done = subprocess.run(_cli(*args), check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 reused" in done.stdout
    assert not list((out / "shards").glob(".*.partial"))
    assert tree_bytes(out) == tree_bytes(small_out)


def test_num_tasks_then_finalize_equals_a_single_run(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    n = len(load_plan(small_out).shards)
    mine = []
    for task in (1, 0):  # any order; task 2 comes later
        result = run_convert(
            small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE, num_tasks=3, task_index=task
        )
        assert not result.finalized and set(result.converted) == {s for s in range(n) if s % 3 == task}
        mine += result.converted
        assert not (out / "index.json").exists()
    with pytest.raises(ConversionError, match=r"shards are not done \(2(, 5)?\)"):
        run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE, finalize_only=True)
    assert not (out / "index.json").exists()
    run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE, num_tasks=3, task_index=2)
    result = run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE, finalize_only=True)
    assert result.finalized
    assert tree_bytes(out) == tree_bytes(small_out)


def test_finalize_refuses_other_arguments(small_out: Path, small_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    with pytest.raises(ConversionError, match="shard_size: 65536 there, 1000000 given"):
        run_convert(small_root, SMALL_REPO, out, shard_size=10**6, finalize_only=True)
    with pytest.raises(ConversionError, match="no conversion was started"):
        run_convert(small_root, SMALL_REPO, tmp_path / "empty", finalize_only=True)


def test_a_damaged_shard_is_converted_again_on_rerun(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    shard = out / "shards/shard-000002.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    (out / "shards/shard-000003.tar").unlink()
    result = run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert result.converted == (2, 3) and 2 not in result.reused and result.finalized
    assert tree_bytes(out) == tree_bytes(small_out)
