"""A rerun never keeps shards built from source bytes that have changed since, and the output directory's
resume state is robust: a changed or replaced source rebuilds exactly the shards that read it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert, tree_bytes

from lerowds.convert.source import load_local
from lerowds.convert.state import load_plan
from lerowds.convert.verify import verify
from lerowds.errors import ConversionError


def _dataset_bytes(out: Path) -> dict[str, bytes]:
    """The converted dataset itself (shards, table, index), without the resume state."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".lerowds" not in p.parts
    }


def _flip(path: Path, at: int) -> None:
    """Flip one byte in place; the file keeps its size."""
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0xFF]))


def _shards_reading(out: Path, src: Path, rel: str) -> tuple[int, ...]:
    source = load_local(src, SMALL_REPO)
    return tuple(
        s.shard for s in load_plan(out).shards if any(rel in source.files_for([e]) for e in s.episodes)
    )


def test_changed_source_bytes_rebuild_exactly_the_shards_that_read_them(
    small_root: Path, tmp_path: Path
) -> None:
    src = shutil.copytree(small_root, tmp_path / "src")
    out = tmp_path / "out"
    first = run_convert(src, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    clean = _dataset_bytes(out)
    rel = "videos/observation.images.front/chunk-002/file-000.mp4"
    affected = _shards_reading(out, src, rel)
    assert 0 < len(affected) < first.num_shards

    mp4 = src / rel
    at = mp4.stat().st_size // 2  # inside the packets (mdat), copied verbatim into the clips
    _flip(mp4, at)
    flipped = run_convert(src, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert flipped.converted == affected
    assert set(flipped.reused) == set(range(first.num_shards)) - set(affected)
    fresh = tmp_path / "fresh"
    run_convert(src, SMALL_REPO, fresh, shard_size=SMALL_SHARD_SIZE)
    assert _dataset_bytes(out) == _dataset_bytes(fresh) != clean

    _flip(mp4, at)  # restored: the bytes of the first conversion again (the mtime is newer)
    restored = run_convert(src, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert restored.converted == affected
    assert _dataset_bytes(out) == clean
    assert verify(out, deep=True).ok

    st = mp4.stat()  # a content change that puts the mtime back (``touch -r``) still changes the ctime
    _flip(mp4, at)
    os.utime(mp4, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run_convert(src, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE).converted == affected
    assert _dataset_bytes(out) == _dataset_bytes(fresh)


def test_another_source_with_the_same_file_sizes_is_not_mistaken_for_this_one(
    small_root: Path, tmp_path: Path
) -> None:
    a = shutil.copytree(small_root, tmp_path / "a")
    b = shutil.copytree(small_root, tmp_path / "b")
    out = tmp_path / "out"
    run_convert(a, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    # b: the same files but for a flipped byte inside one video's packets: every size is the same
    mp4 = b / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    _flip(mp4, mp4.stat().st_size // 2)
    result = run_convert(b, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert result.converted == tuple(range(result.num_shards)) and result.reused == ()
    fresh = tmp_path / "fresh"
    run_convert(b, SMALL_REPO, fresh, shard_size=SMALL_SHARD_SIZE)
    assert _dataset_bytes(out) == _dataset_bytes(fresh)


def test_a_run_killed_before_writing_its_plan_is_resumable(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    (empty / ".lerowds").mkdir(parents=True)  # killed right after creating it
    run_convert(small_root, SMALL_REPO, empty, shard_size=SMALL_SHARD_SIZE)
    assert tree_bytes(empty) == tree_bytes(small_out)

    partial = tmp_path / "partial"  # killed while writing plan.json: its temp file, an empty done/
    (partial / ".lerowds/done").mkdir(parents=True)
    (partial / ".lerowds/.plan.json.k1ll3d.tmp").write_bytes(b'{"format": "ler')
    (partial / ".lerowds/lock").write_text("12345\n")
    run_convert(small_root, SMALL_REPO, partial, shard_size=SMALL_SHARD_SIZE)
    assert tree_bytes(partial) == tree_bytes(small_out)

    foreign = tmp_path / "foreign"  # anything else in it is still not ours to take
    (foreign / ".lerowds").mkdir(parents=True)
    (foreign / ".lerowds/notes.txt").write_text("mine")
    with pytest.raises(ConversionError, match="exists and is not an empty directory"):
        run_convert(small_root, SMALL_REPO, foreign, shard_size=SMALL_SHARD_SIZE)
    assert sorted(p.name for p in foreign.rglob("*")) == [".lerowds", "notes.txt"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("mine")
    with pytest.raises(ConversionError, match="exists and is not an empty directory"):
        run_convert(small_root, SMALL_REPO, other, shard_size=SMALL_SHARD_SIZE)
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]  # no .lerowds/ left in someone's directory
