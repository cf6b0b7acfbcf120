"""A full disk, on a real (tiny tmpfs) file system: the free-space check counts what a shard really takes,
and a disk that fills up while writing leaves no ``.partial`` file behind; freeing space and rerunning
finishes the conversion."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert

import lerowds.convert.run as run_module
from lerowds.convert.source import load_local
from lerowds.convert.space import bytes_needed
from lerowds.convert.state import load_plan
from lerowds.errors import ConversionError
from lerowds.format import read_local_index


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (needs root); skipped where it cannot be mounted, a failure under CI=true."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = f"cannot mount a tmpfs at {mnt}: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(mnt: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free."""
    filler = mnt / "filler"
    free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
    filler.write_bytes(bytes(max(0, free - leave)))
    return filler


def _partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith((".partial", ".tmp"))]


def test_disk_filling_up_while_writing_leaves_no_partial_file(
    tmpfs: Path, small_root: Path, small_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmpfs / "out"
    filler = _fill(tmpfs, 160 * 1024)  # the output needs ~300 kB
    with monkeypatch.context() as m:  # the check passes: someone else fills the disk after it
        m.setattr(run_module, "free_bytes", lambda path: 10**12)
        with pytest.raises(ConversionError, match="no space left on device"):
            run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert _partials(out) == []
    assert (out / "shards").is_dir() and not (out / "index.json").exists()
    filler.unlink()
    run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)  # "free some space and rerun"
    for shard in read_local_index(small_out)[0].shards:
        assert (out / shard.name).read_bytes() == (small_out / shard.name).read_bytes()
    assert _partials(out) == []


def test_free_space_check_counts_headers_and_padding(tmpfs: Path, small_root: Path, small_out: Path) -> None:
    plan = load_plan(small_out)
    written = sum(s.size for s in read_local_index(small_out)[0].shards)
    assert bytes_needed(load_local(small_root, SMALL_REPO), plan.shards) >= written
    # free space between the payload estimate and what is really written: refused up front, not mid-write
    estimate = sum(s.estimated_bytes for s in plan.shards)
    assert estimate * run_module.DISK_MARGIN < written
    _fill(tmpfs, (int(estimate * run_module.DISK_MARGIN) + written) // 2 + 16 * 1024)
    out = tmpfs / "out"
    with pytest.raises(ConversionError, match=r"not enough disk space .*tar headers and padding counted"):
        run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert not (out / "shards").exists()
