"""``lerowds train`` refuses a missing or unsupported lerobot with a message naming the supported versions
(runs where lerobot is absent as well as in the lerobot environment)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lerowds.train import compat
from lerowds.train.compat import LerobotVersionError, is_supported, parse_version, require_lerobot


def test_version_range() -> None:
    assert parse_version("0.6.1") == (0, 6, 1) and parse_version("0.6.2.dev0") == (0, 6, 2)
    assert parse_version("1.0") == (1, 0, 0)
    assert [is_supported(v) for v in ("0.4.4", "0.6.0", "0.6.1", "0.6.9", "0.7.0", "1.0.0")] == [
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    with pytest.raises(LerobotVersionError, match="cannot read lerobot's version 'unknown'"):
        parse_version("unknown")


def test_missing_lerobot_names_the_supported_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(compat.importlib.metadata, "version", not_installed)
    with pytest.raises(
        LerobotVersionError,
        match=r"needs lerobot >=0\.6\.1,<0\.7 \(tested with 0\.6\.1\), "
        r"but lerobot is not installed: pip install",
    ):
        require_lerobot()


def fake_lerobot(root: Path, version: str) -> Path:
    """A package named lerobot of ``version`` (a dist-info is what importlib.metadata reads)."""
    (root / "lerobot").mkdir(parents=True)
    (root / "lerobot" / "__init__.py").write_text(f"__version__ = {version!r}\n")
    info = root / f"lerobot-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lerobot\nVersion: {version}\n")
    return root


def run_cli(args: list[str], pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*pythonpath, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "lerowds.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_refuses_an_unsupported_lerobot(tmp_path: Path) -> None:
    root = fake_lerobot(tmp_path / "site", "0.4.4")
    done = run_cli(["train", "--policy.type=act", "--lerowds.source=DIR"], [str(root)])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        "lerowds train: error: lerowds train needs lerobot >=0.6.1,<0.7 (tested with 0.6.1), found lerobot "
        "0.4.4: pip install 'lerobot[dataset]==0.6.1' accelerate"
    )
    module = subprocess.run(
        [sys.executable, "-m", "lerowds.lerobot_train", "--steps=1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])},
    )
    assert module.returncode == 2 and "found lerobot 0.4.4" in module.stderr, module.stderr
