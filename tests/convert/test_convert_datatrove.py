"""Conversion as a datatrove pipeline: several tasks then finalize give the bytes of a single run (local
executor); a Slurm submission checked, and then run, without a cluster (fake ``sbatch``/``srun``/``scontrol`` on
PATH); a failed task makes finalize refuse, naming the shards that are not done and the tasks that own them."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, copy_dataset, tree_bytes

# datatrove is an optional extra: `.[test]` (CI's env 1) has it; the locked lerobot and floors environments
# (envs 2 and 3 of .ci/run) hold only what their users install, so there these tests do not apply.
if os.environ.get("LEROWDS_LOCKED_ENV") is None or importlib.util.find_spec("datatrove") is not None:
    from datatrove.executor import LocalPipelineExecutor  # env 1 or a developer: missing is a failure
else:
    pytest.skip(
        "datatrove (extra lerowds[datatrove]) is not in this locked environment", allow_module_level=True
    )

from lerowds.cli import main
from lerowds.convert import ConvertOptions
from lerowds.convert.datatrove import (
    ExecutorOptions,
    FinalizeConversion,
    run_with_datatrove,
    unfinished_tasks,
)
from lerowds.convert.state import load_plan
from lerowds.errors import ConfigError, ConversionError, LerowdsError

LOGS = ".lerowds/datatrove"


def _options(root: Path, out: Path) -> ConvertOptions:
    return ConvertOptions(
        repo_id=SMALL_REPO, root=root, output=out, shard_size=SMALL_SHARD_SIZE, progress=False
    )


def _dataset_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the output but datatrove's logs (which hold times and paths), with the done-records'
    source identities left out (file times, which differ for a copied or repaired source)."""
    files = {k: v for k, v in tree_bytes(out).items() if not k.startswith(LOGS + "/")}
    for name in [k for k in files if k.startswith(".lerowds/done/")]:
        record = json.loads(files[name])
        record.pop("sources", None)
        files[name] = json.dumps(record, sort_keys=True).encode()
    return files


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lerowds.cli", *args]


def _convert_args(root: Path, out: Path) -> list[str]:
    return ["convert", "--repo-id", SMALL_REPO, "--root", str(root), "--output", str(out), "--shard-size",
            str(SMALL_SHARD_SIZE)]  # fmt: skip


# ----------------------------------------------------------------------------------------------- local
def test_local_executor_tasks_then_finalize_equal_a_single_run(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    n = len(load_plan(small_out).shards)
    assert n >= 4  # several shards per task for some tasks
    run = ExecutorOptions(kind="local", tasks=3, parallel_tasks=3)  # a pool of datatrove worker processes
    result = run_with_datatrove(_options(small_root, out), run)
    assert result.finalized and result.num_shards == n
    assert _dataset_bytes(out) == _dataset_bytes(small_out)
    logs = out / LOGS / "tasks-3"
    assert result.logs_dir == logs
    for task in range(3):  # each task converted exactly its shards, and datatrove recorded it as completed
        stats = json.loads((logs / "convert" / "stats" / f"{task:05d}.json").read_text())[0]["stats"]
        converted = stats["shards_converted"]
        assert (converted["total"] if isinstance(converted, dict) else converted) == len(range(task, n, 3))
        assert (logs / "convert" / "completions" / f"{task:05d}").is_file()
    assert (logs / "finalize" / "completions" / "00000").is_file()

    again = run_with_datatrove(_options(small_root, out), run)  # a rerun: every task is skipped
    assert again.finalized
    assert _dataset_bytes(out) == _dataset_bytes(small_out)

    (out / "shards" / "shard-000001.tar").unlink()  # damage: datatrove still counts task 1 as completed
    one_at_a_time = ExecutorOptions(kind="local", tasks=3, parallel_tasks=1)
    with pytest.raises(
        ConversionError, match=r"1 of \d+ shards are not done: task 1 of 3 \(shard 1\)"
    ) as err:
        run_with_datatrove(_options(small_root, out), one_at_a_time)
    marker = logs / "convert" / "completions" / "00001"
    assert f"datatrove marked it completed: delete {marker} so that it runs again" in str(err.value)
    marker.unlink()
    assert run_with_datatrove(_options(small_root, out), one_at_a_time).finalized
    assert _dataset_bytes(out) == _dataset_bytes(small_out)


def test_a_failed_task_makes_finalize_name_the_missing_shards_and_tasks(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    src = copy_dataset(small_root, tmp_path / "src")
    broken = max((src / "data").glob("*/*.parquet"))  # the last episodes' rows: a late shard fails
    good = broken.read_bytes()
    broken.write_bytes(bytes(len(good)))  # same size: the plan does not change, the rows cannot be read
    out = tmp_path / "out"
    options = _options(src, out)
    run = ExecutorOptions(kind="local", tasks=3, parallel_tasks=1)  # tasks 0, 1, 2 in turn, in this process
    with pytest.raises(LerowdsError, match=re.escape(broken.name)):
        run_with_datatrove(options, run)
    assert not (out / "index.json").exists() and not (out / "episodes.parquet").exists()

    missing = unfinished_tasks(out, 3)
    assert missing and all(s % 3 == t for t, shards in missing.items() for s in shards)
    failed = min(missing)  # the task that raised; the ones after it never started
    task_logs = out / LOGS / "tasks-3" / "convert"
    assert broken.name in (task_logs / "logs" / f"task_{failed:05d}.log").read_text()
    assert not (task_logs / "completions" / f"{failed:05d}").exists()

    finalize_alone = LocalPipelineExecutor(  # as on Slurm, where the finalize job runs after a failed array
        [FinalizeConversion(options, 3, task_logs=str(task_logs))], tasks=1, logging_dir=str(tmp_path / "fin")
    )
    with pytest.raises(ConversionError) as err:
        finalize_alone.run()
    message = str(err.value)
    num_missing = sum(len(s) for s in missing.values())
    assert f"{num_missing} of {len(load_plan(out).shards)} shards are not done" in message
    for task, shards in missing.items():
        listed = ", ".join(map(str, shards))
        assert f"task {task} of 3 (shard{'s' if len(shards) > 1 else ''} {listed})" in message
        part = next(p for p in re.split(r"; |: |\. ", message) if p.startswith(f"task {task} of 3"))
        assert part.endswith(f"task_{task:05d}.log" if task == failed else "never started")
    assert not (out / "index.json").exists()

    broken.write_bytes(good)  # repaired: the same run skips the finished tasks and completes the rest
    result = run_with_datatrove(options, run)
    assert result.finalized
    assert _dataset_bytes(out) == _dataset_bytes(small_out)


# ----------------------------------------------------------------------------------------------- slurm
FAKE_SBATCH = """#!/bin/sh
# records each submission (arguments, then the script) and answers like sbatch
n=$(( $(ls "$FAKE_SLURM" | grep -c '[.]sh$') + 100 ))
for last in "$@"; do :; done
cp "$last" "$FAKE_SLURM/job-$n.sh"
printf '%s\\n' "$@" > "$FAKE_SLURM/job-$n.args"
echo "Submitted batch job $n"
"""
FAKE_SRUN = """#!/bin/sh
# runs the command after srun's options on this machine (datatrove's console script, with the test's Python)
while [ "$#" -gt 0 ] && [ "$1" != launch_pickled_pipeline ]; do shift; done
[ "$#" -eq 2 ] || { echo "fake srun: unexpected command: $*" >&2; exit 9; }
exec "$FAKE_PYTHON" -m datatrove.tools.launch_pickled_pipeline "$2"
"""
FAKE_SCONTROL = """#!/bin/sh
echo localhost
"""


def _fake_slurm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir, jobs = tmp_path / "fakebin", tmp_path / "jobs"
    bin_dir.mkdir()
    jobs.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "FAKE_SLURM": str(jobs), "FAKE_PYTHON": sys.executable}, jobs


def _sbatch_lines(script: str) -> dict[str, str]:
    lines = [line.removeprefix("#SBATCH --") for line in script.splitlines() if line.startswith("#SBATCH")]
    return dict((line.split("=", 1) + [""])[:2] for line in lines)  # type: ignore[misc]


def test_slurm_submission_is_an_array_then_a_finalize_after_it_and_runs_as_slurm_would(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    env, jobs = _fake_slurm(tmp_path)
    out = tmp_path / "out"
    args = [*_convert_args(small_root, out), "--executor", "slurm", "--tasks", "2", "--parallel-tasks", "1",
            "--partition", "cpu", "--time", "01:30:00", "--mem-per-cpu", "1950M", "--sbatch", "account=robots"]  # fmt: skip
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "submitted Slurm job 100 (2 tasks) and finalize job 102 after it" in done.stdout
    assert sorted(p.name for p in jobs.glob("*.sh")) == [f"job-{n}.sh" for n in (100, 101, 102, 103)]

    logs = out / LOGS / "tasks-2"
    tasks_script = (jobs / "job-100.sh").read_text()
    sb = _sbatch_lines(tasks_script)
    assert sb["array"] == "0-1%1" and sb["job-name"] == "lerowds_convert"
    assert (sb["partition"], sb["time"], sb["mem-per-cpu"], sb["account"]) == (
        "cpu",
        "01:30:00",
        "1950M",
        "robots",
    )
    assert sb["cpus-per-task"] == "1"  # --workers 1 per task
    assert f"launch_pickled_pipeline {logs / 'convert' / 'executor.pik'}" in tasks_script
    assert "--dependency" not in " ".join((jobs / "job-100.args").read_text().split())

    final_script = (jobs / "job-102.sh").read_text()
    sf = _sbatch_lines(final_script)
    assert sf["array"] == "0-0" and sf["job-name"] == "lerowds_convert_finalize"
    assert f"launch_pickled_pipeline {logs / 'finalize' / 'executor.pik'}" in final_script
    assert "--dependency=afterany:100" in (jobs / "job-102.args").read_text().split()  # after the whole array
    assert "afterok:100" in (jobs / "job-101.sh").read_text()  # datatrove's stats merge
    assert not (out / "index.json").exists()

    # the scheduler's part: each array task, then the finalize job, with the environment Slurm gives them
    def slurm_run(script: Path, task: int) -> None:
        job_env = {**env, "SLURM_ARRAY_TASK_ID": str(task), "SLURM_JOB_ID": script.stem, "RUN_OFFSET": "0",
                   "SLURM_NODELIST": "localhost"}  # fmt: skip
        ran = subprocess.run(
            ["bash", str(script)], check=False, env=job_env, capture_output=True, text=True, timeout=300
        )
        assert ran.returncode == 0, ran.stderr[-3000:]

    for task in (1, 0):  # any order
        slurm_run(jobs / "job-100.sh", task)
    assert not (out / "index.json").exists()
    slurm_run(jobs / "job-102.sh", 0)
    assert _dataset_bytes(out) == _dataset_bytes(small_out)

    again = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert (
        "every task completed already; submitted finalize job 104" in again.stdout
    )  # it rechecks the shards
    assert "--dependency" not in (jobs / "job-104.args").read_text()
    assert len(list(jobs.glob("*.sh"))) == 6  # the finalize and its stats merge


def test_slurm_dry_run_writes_the_scripts_and_submits_nothing(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch was called' >&2\nexit 3\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    out, logs = tmp_path / "out", tmp_path / "logs"
    args = [*_convert_args(small_root, out), "--executor", "slurm", "--tasks", "2", "--partition", "cpu",
            "--workers", "4", "--logs-dir", str(logs), "--slurm-dry-run"]  # fmt: skip
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "dry run, nothing submitted" in stdout
    lines = [line for line in stdout.splitlines() if line.startswith("DRYRUN")]
    assert [line.split(":")[0] for line in lines] == ["DRYRUN1", "DRYRUN2", "DRYRUN3", "DRYRUN4"]
    assert "--dependency=afterany:DRYRUN1" in lines[2]
    tasks_script = (logs / "dry_run" / "DRYRUN1.slurm").read_text()
    sb = _sbatch_lines(tasks_script)
    assert sb["array"] == "0-1" and sb["cpus-per-task"] == "4" and sb["time"] == "08:00:00"
    assert f"launch_pickled_pipeline {logs / 'convert' / 'executor.pik'}" in tasks_script
    assert (logs / "convert" / "executor.pik").is_file()  # what the real job would load
    assert "finalize" in (logs / "dry_run" / "DRYRUN3.slurm").read_text()
    assert not (out / "shards").exists() or not any((out / "shards").iterdir())  # nothing ran


# ----------------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--executor", "slurm", "--tasks", "2"], "--executor slurm needs --partition"),
        (["--executor", "local"], "--executor needs --tasks N"),
        (["--tasks", "2"], "--tasks need --executor local|slurm"),
        (
            ["--executor", "local", "--tasks", "2", "--partition", "p"],
            "--partition only apply to --executor slurm",
        ),
        (["--executor", "local", "--tasks", "2", "--num-tasks", "2"], "drop --num-tasks"),
        (["--executor", "local", "--tasks", "0"], "--tasks must be an integer >= 1, got 0"),
        (["--executor", "slurm", "--tasks", "2", "--partition", "p", "--sbatch", "x"], "expected KEY=VALUE"),
    ],
)
def test_bad_executor_arguments_are_one_line_errors(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "out"
    assert main([*_convert_args(small_root, out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_extra_names_it(
    small_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "datatrove" or m.startswith("datatrove.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "lerowds.convert.datatrove")
    args = [*_convert_args(small_root, tmp_path / "out"), "--executor", "local", "--tasks", "2"]
    assert main(args) == 2
    assert "pip install 'lerowds[datatrove]'" in capsys.readouterr().err
    with pytest.raises(ImportError, match=re.escape("pip install 'lerowds[datatrove]'")):
        import lerowds.convert.datatrove  # noqa: F401


def test_executor_options_check_their_values() -> None:
    with pytest.raises(ConfigError, match="--executor must be one of local, slurm, got 'ray'"):
        ExecutorOptions(kind="ray", tasks=2)
    with pytest.raises(ConfigError, match="--parallel-tasks must be an integer >= 1, got 0"):
        ExecutorOptions(kind="local", tasks=2, parallel_tasks=0)
    with pytest.raises(ConfigError, match="takes its task split from datatrove"):
        from lerowds.convert.datatrove import ConvertShards

        ConvertShards(ConvertOptions(repo_id="a/b", output=Path("x"), num_tasks=2, task_index=1))
