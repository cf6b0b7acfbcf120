"""The Hub path goes through huggingface_hub (its cache, HF_HUB_OFFLINE), with no network here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
from convert_helpers import SMALL_REPO, SMALL_SHARD_SIZE, run_convert, tree_bytes

from lerowds.convert.hub import open_source

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(small_root: Path, cache: Path, repo_id: str = SMALL_REPO) -> Path:
    """A Hugging Face cache holding ``repo_id`` at ``COMMIT`` (refs/main points at it), as a download leaves it."""
    repo_dir = cache / f"datasets--{repo_id.replace('/', '--')}"
    shutil.copytree(small_root, repo_dir / "snapshots" / COMMIT)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return cache


def _offline_env(tmp_path: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


def test_offline_hub_cache_converts_like_a_local_root(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    cache = _hub_cache(small_root, tmp_path / "cache")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "lerowds.cli", "convert", "--repo-id", SMALL_REPO, "--output", str(out)]
    args += ["--shard-size", "64KiB", "--no-progress"]
    done = subprocess.run(
        args, env=_offline_env(tmp_path, cache), check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["source"]["repo_id"] == SMALL_REPO and index["source"]["revision"] == COMMIT
    got, want = tree_bytes(out), tree_bytes(small_out)
    shards = [k for k in want if k.startswith("shards/")]
    assert shards and all(got[k] == want[k] for k in shards)  # same shards as from --root


def test_offline_without_the_dataset_in_the_cache(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    args = [
        sys.executable,
        "-m",
        "lerowds.cli",
        "convert",
        "--repo-id",
        "nobody/nothing",
        "-o",
        str(tmp_path / "o"),
    ]
    done = subprocess.run(
        args, env=_offline_env(tmp_path, tmp_path / "cache"), check=False, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "nobody/nothing (revision main) is not in the local Hugging Face cache" in done.stderr
    assert "Traceback" not in done.stderr


def test_hub_downloads_meta_first_then_only_the_selected_episodes_files(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = shutil.copytree(small_root, tmp_path / COMMIT)
    calls: list[tuple[str, str | None, list[str]]] = []

    def fake_snapshot_download(
        *, repo_id: str, repo_type: str, revision: str | None, allow_patterns: list[str]
    ) -> str:
        assert repo_type == "dataset"
        calls.append((repo_id, revision, allow_patterns))
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    source, selected = open_source(SMALL_REPO, revision="v1.0", select=lambda s: (2, 3))
    assert selected == (2, 3) and source.revision == COMMIT
    assert calls[0] == (SMALL_REPO, "v1.0", ["meta/*", "meta/**", "README.md"])
    repo, revision, files = calls[1]
    assert (repo, revision) == (
        SMALL_REPO,
        COMMIT,
    )  # the second request pins the commit the metadata came from
    assert files == source.files_for(selected)
    assert (
        "data/chunk-000/file-001.parquet" in files
        and "videos/observation.images.front/chunk-000/file-001.mp4" in files
    )
    everything = [
        str(p.relative_to(small_root)) for d in ("data", "videos") for p in (small_root / d).rglob("*.*")
    ]
    assert len(files) < len(everything) / 2  # only what episodes 2 and 3 need
    result = run_convert(None, SMALL_REPO, tmp_path / "out", episodes="2:4", shard_size=SMALL_SHARD_SIZE)  # type: ignore[arg-type]
    assert result.finalized and len(calls) == 4
    open_source(SMALL_REPO, select=lambda s: [e.episode_index for e in s.episodes])
    assert calls[-1] == (SMALL_REPO, COMMIT, ["data/*", "videos/*"])  # all episodes: whole folders


def test_convert_and_reader_paths_import_no_torch() -> None:
    code = "import sys, lerowds.convert, lerowds.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
