"""``--max-source-disk``: a Hub conversion that fetches each shard's source files just before converting it,
against a loopback Hub serving the fixture in the ``resolve`` layout; the bytes held are measured on disk."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, tree_bytes
from hubserver import HubServer
from paused_cli import paused, wait_for

from lerowds.cli import main
from lerowds.convert.fetch import RESERVE
from lerowds.convert.plan import estimate_episode_bytes, plan_shards
from lerowds.convert.source import load_local

if TYPE_CHECKING:
    from typing_extensions import Self

SOURCE_DIR = ".lerowds/source"


@pytest.fixture(scope="module")
def hub(small_root: Path) -> Iterator[HubServer]:
    with HubServer() as server:
        server.seed(SMALL_REPO, small_root)
        yield server


@pytest.fixture(scope="module")
def bound(small_root: Path) -> int:
    """The bytes of the source files of the shard that reads the most (plus what huggingface_hub writes in a
    cache dir besides them): the tightest limit that works."""
    source = load_local(small_root, SMALL_REPO)
    shards = plan_shards(
        estimate_episode_bytes(source, [e.episode_index for e in source.episodes]), SMALL_SHARD_SIZE
    )
    need = max(sum(source.file_size(f) for f in source.files_for(s.episodes)) for s in shards)
    total = sum(source.file_size(f) for f in source.files_for([e.episode_index for e in source.episodes]))
    assert len(shards) >= 4 and total > 2 * need  # the limit binds: the files must be freed and fetched again
    return need + RESERVE


def _env(hub: HubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    cache = tmp_path / "hf" / "hub"
    return {
        **env,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(cache),
        **extra,
    }


def _args(out: Path, *more: str) -> list[str]:
    cli = [sys.executable, "-m", "lerowds.cli", "convert", "--repo-id", SMALL_REPO, "--output", str(out)]
    return [*cli, "--shard-size", "64KiB", "--no-progress", *more]


def _published(out: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree_bytes(out).items() if not k.startswith(".lerowds/")}


class DiskMonitor:
    """The bytes of regular files under a directory (partial downloads included), sampled by a thread and at
    every file download the Hub serves; keeps the maximum."""

    def __init__(self, root: Path, hub: HubServer) -> None:
        self.root, self.hub, self.max_bytes, self.samples = root, hub, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def measure(self, *_: object) -> None:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    st = os.lstat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):  # not the links to the user's cache
                    total += st.st_size
        self.max_bytes = max(self.max_bytes, total)
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.measure()
            self._stop.wait(0.001)

    def __enter__(self) -> Self:
        self.hub.on_resolve = self.measure
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.hub.on_resolve = None
        self.measure()


@pytest.fixture(scope="module")
def unbounded(hub: HubServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same Hub dataset converted without the limit (every file downloaded first, into the Hugging Face
    cache ``../hf``: read-only, copy it to use it)."""
    tmp = tmp_path_factory.mktemp("unbounded")
    done = subprocess.run(_args(tmp / "out"), env=_env(hub, tmp), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return tmp / "out"


@pytest.mark.parametrize("workers", [1, 2])
def test_bounded_conversion_never_holds_more_than_the_limit(
    hub: HubServer, bound: int, unbounded: Path, tmp_path: Path, workers: int
) -> None:
    out = tmp_path / "out"
    before = sum(hub.resolves.values())
    with DiskMonitor(out / SOURCE_DIR, hub) as disk:
        done = subprocess.run(
            _args(out, "--max-source-disk", str(bound), "--workers", str(workers)),
            env=_env(hub, tmp_path),
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert 0 < disk.max_bytes <= bound and disk.samples > 10
    assert _published(out) == _published(unbounded)  # byte-identical output
    assert not (out / SOURCE_DIR).exists()  # everything freed at the end
    cache = tmp_path / "hf" / "hub"
    assert not [
        p for p in cache.rglob("*") if "/data/" in str(p) or "/videos/" in str(p)
    ]  # not in the HF cache
    fetched = sum(hub.resolves.values()) - before
    assert fetched > 21  # some of the 21 data/video files were freed and fetched again (meta counted too)


def test_bounded_num_tasks_then_finalize_equals_a_single_run(
    hub: HubServer, bound: int, unbounded: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = _env(hub, tmp_path)
    for task in ("1", "0"):
        with DiskMonitor(out / SOURCE_DIR, hub) as disk:
            args = _args(out, "--max-source-disk", str(bound), "--num-tasks", "2", "--task-index", task)
            done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        assert disk.max_bytes <= bound
    done = subprocess.run(_args(out, "--finalize"), env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert _published(out) == _published(unbounded)


def test_bounded_resume_after_sigkill(hub: HubServer, bound: int, unbounded: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _args(out, "--max-source-disk", str(bound))
    proc = subprocess.Popen(
        paused(4, args), env=_env(hub, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for("shard 0 done", lambda: (out / ".lerowds/done").is_dir(), proc)
        wait_for(
            "shard 1 half-written", lambda: any((out / "shards").glob(".shard-000001.tar.*.partial")), proc
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert list((out / SOURCE_DIR).rglob("*.parquet"))  # the killed run's files are still there
    with DiskMonitor(out / SOURCE_DIR, hub) as disk:
        done = subprocess.run(args, env=_env(hub, tmp_path), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 reused" in done.stdout  # shard 0 was not converted again
    assert disk.max_bytes <= bound  # what the killed run left counts
    assert _published(out) == _published(unbounded)


def test_limit_below_a_file_or_a_shard_is_a_clear_error(
    hub: HubServer, bound: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = _env(hub, tmp_path)
    done = subprocess.run(
        _args(tmp_path / "a", "--max-source-disk", "17KB"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--max-source-disk 17000 bytes" in done.stderr  # the first file too large, by name:
    assert "data/chunk-000/file-001.parquet alone is 13693 bytes" in done.stderr
    done = subprocess.run(
        _args(tmp_path / "b", "--max-source-disk", "18KB"),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "shard 0 reads" in done.stderr and "lower --shard-size" in done.stderr
    # a local source: refused before any Hub is asked, so in this process
    local = _args(tmp_path / "c", "--max-source-disk", "1GB", "--root", str(tmp_path))[3:]
    assert main(local) == 2
    assert "applies to Hub sources" in capsys.readouterr().err


def test_bounded_offline_reads_the_user_cache_in_place(
    hub: HubServer, bound: int, unbounded: Path, tmp_path: Path
) -> None:
    """Offline, every file comes from the Hugging Face cache (filled by a run without the limit) and stays."""
    env = _env(hub, tmp_path)
    shutil.copytree(unbounded.parent / "hf", tmp_path / "hf", symlinks=True)  # the unbounded run's cache
    cached = sorted(p for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file())
    out = tmp_path / "out"
    with DiskMonitor(out / SOURCE_DIR, hub) as disk:
        done = subprocess.run(
            _args(out, "--max-source-disk", str(bound)),
            env={**env, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert disk.max_bytes == 0
    assert sorted(p for p in (tmp_path / "hf" / "hub").rglob("*") if p.is_file()) == cached  # left alone
    assert _published(out) == _published(unbounded)


def test_bounded_with_the_datatrove_local_executor(
    hub: HubServer, bound: int, unbounded: Path, tmp_path: Path
) -> None:
    pytest.importorskip("datatrove")
    out = tmp_path / "out"
    with DiskMonitor(out / SOURCE_DIR / "task-0-of-2", hub) as task0:
        task1 = DiskMonitor(out / SOURCE_DIR / "task-1-of-2", hub)
        task1._thread.start()
        done = subprocess.run(
            _args(out, "--max-source-disk", str(bound), "--executor", "local", "--tasks", "2"),
            env=_env(hub, tmp_path),
            capture_output=True,
            text=True,
            check=False,
        )
        task1._stop.set()
        task1._thread.join()
    assert done.returncode == 0, done.stderr
    assert 0 < task0.max_bytes <= bound and 0 < task1.max_bytes <= bound  # each task within its own bound
    assert _published(out) == _published(unbounded)
