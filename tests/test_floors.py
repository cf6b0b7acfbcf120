"""CI's env 3 tests the floors pyproject.toml declares: .ci/floors.lock pins every direct dependency at
exactly its declared floor (made by .ci/lock-floors-env; a floor raised or lowered without a new lock fails)."""

from __future__ import annotations

import re
from pathlib import Path

from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_floors() -> dict[str, Version]:
    """``[project] dependencies`` of pyproject.toml: name -> the version after ``>=`` (tomllib is 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.DOTALL | re.MULTILINE)
    assert block is not None, "no [project] dependencies list in pyproject.toml"
    floors = {}
    for name, version in re.findall(r'^\s*"([A-Za-z0-9_.-]+)>=([0-9][^",;]*)"', block.group(1), re.MULTILINE):
        floors[normalized(name)] = Version(version)
    return floors


def test_floors_lock_pins_every_declared_floor() -> None:
    floors = declared_floors()
    assert {"numpy", "torch", "webdataset", "fsspec", "pillow", "urllib3"} <= floors.keys(), floors
    pinned = {}
    for line in (ROOT / ".ci" / "floors.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[normalized(name)] = Version(version)
    wrong = {
        name: (str(floor), str(pinned.get(name)))
        for name, floor in floors.items()
        if pinned.get(name) != floor
    }
    assert not wrong, f"declared floor != .ci/floors.lock (run .ci/lock-floors-env): {wrong}"
