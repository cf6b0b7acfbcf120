"""Session fixtures of the reader tests: converted datasets (the real lerobot fixture and synthetic ones)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from lerowds.convert import ConvertOptions, convert
from lerowds.testing.v3writer import CameraSpec, DatasetSpec, write_v3_dataset

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SMALL = FIXTURES / "lerobot_v3_small"


def need_shared_fixture() -> Path:
    """The real lerobot fixture; a missing one fails under CI=true and skips elsewhere."""
    if not (SMALL / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared fixture missing at {SMALL}")
        pytest.skip(f"shared fixture missing at {SMALL}")
    return SMALL


def convert_to(root: Path, repo_id: str, out: Path, **kw: object) -> Path:
    convert(ConvertOptions(repo_id=repo_id, root=root, output=out, progress=False, **kw))  # type: ignore[arg-type]
    return out


def video_converted(
    base: Path,
    repo_id: str,
    lengths: Sequence[int],
    tasks: Sequence[Sequence[str]] | None = None,
    **kw: object,
) -> Path:
    """Episodes of ``lengths`` frames with one 32x32 video camera at fps 15, written to ``base/src`` and
    converted into ``base/out`` (``kw``: ConvertOptions); ``tasks``: each episode's tasks (default: all "pick
    up the red cube")."""
    tasks = [["pick up the red cube"]] * len(lengths) if tasks is None else tasks
    spec = DatasetSpec(
        repo_id=repo_id,
        fps=15,
        episode_lengths=lengths,
        episode_tasks=tasks,
        cameras=(CameraSpec("observation.images.front", h=32, w=32),),
    )
    return convert_to(write_v3_dataset(base / "src", spec), repo_id, base / "out", **kw)


@pytest.fixture(scope="session")
def fixture_converted(small_converted: Path) -> Path:
    """lerobot's own v3 fixture converted into several shards (tests/conftest.py)."""
    return small_converted


@pytest.fixture(scope="session")
def demo_converted(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo preset: 36 episodes incl. 1/2/3-frame ones, 2 video cameras + 1 image camera."""
    out = tmp_path_factory.mktemp("demo_out") / "out"
    return convert_to(demo_root, "lerowds/demo", out, shard_size=128 * 1024)


@pytest.fixture(scope="session")
def edge_converted(edge_out: Path) -> Path:
    """The edge preset (fps 10, 4 cameras, unicode/long tasks, mid-GOP episode starts re-encoded):
    tests/conftest.py's ``edge_out``."""
    return edge_out


def tabular_spec(lengths: list[int], fps: int = 15) -> DatasetSpec:
    """A dataset without cameras (fast to read): for order, split and resume tests over many configurations."""
    tasks = [["pick up the red cube"] if e % 2 else ["open the top drawer"] for e in range(len(lengths))]
    return DatasetSpec(repo_id="lerowds/tabular", fps=fps, episode_lengths=lengths, episode_tasks=tasks)


@pytest.fixture(scope="session")
def tabular_converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 episodes of uneven lengths (1..23 frames, 150 in all), no cameras, in several shards."""
    base = tmp_path_factory.mktemp("tabular")
    lengths = [7, 1, 23, 12, 2, 19, 9, 3, 16, 11, 20, 13, 14]
    src = write_v3_dataset(base / "src", tabular_spec(lengths))
    return convert_to(src, "lerowds/tabular", base / "out", shard_size=8 * 1024)


@pytest.fixture(scope="session")
def video_small_converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 episodes of 6..13 frames with one small video camera: resume/split checks that decode frames."""
    lengths = [6, 13, 8, 11, 7, 12, 9, 10]
    return video_converted(
        tmp_path_factory.mktemp("video_small"), "lerowds/video_small", lengths, shard_size=16 * 1024
    )


@pytest.fixture(scope="session")
def seed8_converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The issue's seed scenario: 8 episodes x 20 frames, one 32x32 video camera, in several shards."""
    tasks = [["pick up the red cube"] if e % 2 else ["open the top drawer"] for e in range(8)]
    return video_converted(
        tmp_path_factory.mktemp("seed8"), "lerowds/seed8", [20] * 8, tasks, shard_size=16 * 1024
    )


@pytest.fixture(autouse=True)
def no_lerowds_threads_left():
    """A test must not leave lerowds' download threads running: later DataLoader forks would inherit them."""
    import threading
    import time

    yield
    deadline = time.monotonic() + 5.0
    while True:
        alive = [t.name for t in threading.enumerate() if t.name.startswith("lerowds-") and t.is_alive()]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not alive, f"threads left running after the test: {alive}"
