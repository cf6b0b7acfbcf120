"""Shared by the tests that run against lerobot itself: they need lerobot importable (the lerobot CI
environment sets LEROWDS_LEROBOT_ENV=1, where a missing lerobot fails instead of skipping) and the shared
fixture converted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lerowds.convert import ConvertOptions, convert

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SMALL = FIXTURES / "lerobot_v3_small"
REPO_ID = "lerowds/fixture_small"
FPS = 15


def need_lerobot() -> None:
    """Skip where lerobot is not installed, unless this is the lerobot environment (then fail)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach the Hub
    try:
        import lerobot  # noqa: F401
        import lerobot.datasets.lerobot_dataset  # noqa: F401
    except ImportError as exc:
        if os.environ.get("LEROWDS_LEROBOT_ENV") == "1":
            pytest.fail(f"LEROWDS_LEROBOT_ENV=1 but lerobot cannot be imported: {exc!r}")
        pytest.skip(f"lerobot is not installed here ({exc}); these tests run in the lerobot environment")


def need_shared_fixture() -> Path:
    """The real lerobot fixture; a missing one fails under CI=true (or in the lerobot environment)."""
    if not (SMALL / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true" or os.environ.get("LEROWDS_LEROBOT_ENV") == "1":
            pytest.fail(f"shared fixture missing at {SMALL}")
        pytest.skip(f"shared fixture missing at {SMALL}")
    return SMALL


def convert_fixture(out: Path) -> Path:
    """The shared fixture converted into several shards, as tests/reader/conftest.py does."""
    convert(ConvertOptions(repo_id=REPO_ID, root=need_shared_fixture(), output=out, progress=False,
                           shard_size=64 * 1024))
    return out
