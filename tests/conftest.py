"""Session fixtures that several test directories read: each dataset written (and converted) once per run.

Read-only: a test that changes one copies it first. ``tests/convert/conftest.py``, ``tests/reader/conftest.py``
and the lerobot tests build on these (the same options they used to repeat)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lerowds.convert import ConvertOptions, convert
from lerowds.testing.v3writer import sample_spec, write_v3_dataset

SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "lerobot_v3_small"


@pytest.fixture(scope="session")
def small_converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real lerobot fixture (``../shared/fixtures``) converted as ``lerowds/fixture_small`` into several
    64 KiB shards. A missing fixture fails under CI=true and skips elsewhere."""
    if not (SMALL / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared fixture missing at {SMALL}")
        pytest.skip(f"shared fixture missing at {SMALL}")
    out = tmp_path_factory.mktemp("small") / "out"
    options = ConvertOptions(
        repo_id="lerowds/fixture_small", root=SMALL, output=out, shard_size=64 * 1024, progress=False
    )
    convert(options)
    return out


@pytest.fixture(scope="session")
def edge_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v3writer's "edge" preset: 1/2/3-frame episodes, 4 cameras (one image-dtype), fps 10, unicode and long
    tasks, task changes mid-episode, non-keyframe episode starts (2, 5, 9, 10)."""
    return write_v3_dataset(tmp_path_factory.mktemp("edge") / "src", sample_spec("edge"))


@pytest.fixture(scope="session")
def edge_out(edge_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The edge preset converted into 60 kB shards, mid-GOP episode starts re-encoded."""
    out = tmp_path_factory.mktemp("edge_out") / "out"
    options = ConvertOptions(
        repo_id="lerowds/edge", root=edge_root, output=out, shard_size=60_000, reencode=True, progress=False
    )
    convert(options)
    return out


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo preset: 36 episodes incl. 1/2/3-frame ones, 2 video cameras + 1 image camera."""
    return write_v3_dataset(tmp_path_factory.mktemp("demo") / "src", sample_spec("demo"))
