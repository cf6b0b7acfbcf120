"""Which lerobot ``lerowds train`` runs on, checked before anything of lerobot's is imported."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re

from lerowds.errors import ConfigError

# lerowds train calls lerobot's own training functions (see docs/LEROBOT.md for the list); their signatures
# change between lerobot's minor versions, so only the versions CI runs are accepted.
SUPPORTED_LEROBOT = (">=0.6.1", "<0.7")
TESTED_LEROBOT = "0.6.1"
INSTALL_HINT = f"pip install 'lerobot[dataset]=={TESTED_LEROBOT}' accelerate"


class LerobotVersionError(ConfigError):
    """lerobot is missing, or of a version whose training API lerowds train does not know."""


def supported_text() -> str:
    return f"lerobot {','.join(SUPPORTED_LEROBOT)} (tested with {TESTED_LEROBOT})"


def parse_version(text: str) -> tuple[int, int, int]:
    """``"0.6.1"`` → ``(0, 6, 1)``; pre-release and local suffixes are ignored (``"0.6.2.dev0"`` → 0.6.2)."""
    m = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if m is None:
        raise LerobotVersionError(
            f"cannot read lerobot's version {text!r}; lerowds train needs {supported_text()}"
        )
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def is_supported(version: str) -> bool:
    v = parse_version(version)
    return (0, 6, 1) <= v < (0, 7, 0)


def require_lerobot() -> str:
    """The installed lerobot's version; a ``LerobotVersionError`` naming the supported ones otherwise."""
    try:
        version = importlib.metadata.version("lerobot")
    except importlib.metadata.PackageNotFoundError:
        raise LerobotVersionError(
            f"lerowds train runs lerobot's training and needs {supported_text()}, but lerobot is not "
            f"installed: {INSTALL_HINT}"
        ) from None
    if not is_supported(version):
        raise LerobotVersionError(
            f"lerowds train needs {supported_text()}, found lerobot {version}: {INSTALL_HINT}"
        )
    if importlib.util.find_spec("accelerate") is None:  # lerobot's training runs through accelerate
        raise LerobotVersionError(
            f"lerowds train needs accelerate next to lerobot {version}: pip install accelerate"
        )
    return version
