"""Session fixtures of the converter tests: source datasets (the real lerobot fixture, synthetic ones from
``lerowds.testing.v3writer``) and their conversions, each made once (``small_converted``, ``edge_root`` and
``edge_out``: tests/conftest.py, shared with the reader tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from convert_helpers import SMALL_CAMS, need_fixture, run_convert

from lerowds.testing.v3writer import sample_spec, write_v3_dataset


@pytest.fixture(scope="session")
def small_root() -> Path:
    """The real lerobot 0.4.4 fixture (read-only: copy it before changing anything)."""
    return need_fixture()


@pytest.fixture(scope="session")
def small_out(small_converted: Path) -> Path:
    """The real fixture converted with a small shard size (several shards: SMALL_SHARD_SIZE, as SMALL_REPO);
    read-only, copy to modify."""
    return small_converted


@pytest.fixture(scope="session")
def novideo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_v3_dataset(tmp_path_factory.mktemp("novideo") / "src", sample_spec("novideo"))


@pytest.fixture(scope="session")
def novideo_out(novideo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("novideo_out") / "out"
    run_convert(novideo_root, "lerowds/novideo", out, shard_size=20_000)
    return out


@pytest.fixture
def dataset(request: pytest.FixtureRequest) -> Callable[[str], tuple[Path, Path, dict[str, int]]]:
    """(source root, converted output, camera numbers) of a named dataset: "small", "edge" or "novideo"."""

    def get(name: str) -> tuple[Path, Path, dict[str, int]]:
        if name == "small":
            return request.getfixturevalue("small_root"), request.getfixturevalue("small_out"), SMALL_CAMS
        spec = sample_spec(name)
        cams = {c.key: i for i, c in enumerate(spec.cameras)}
        return request.getfixturevalue(f"{name}_root"), request.getfixturevalue(f"{name}_out"), cams

    return get
