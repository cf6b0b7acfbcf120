"""``lerowds train``: lerobot's own training (lerobot-train's flags, policies, processors, checkpoints,
logging) on a dataset converted by lerowds. ``main(argv)`` takes lerobot-train's arguments plus
``--lerowds.source=...``; see docs/LEROBOT.md. Needs lerobot (``compat.SUPPORTED_LEROBOT``) and accelerate.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lerowds.errors import LerowdsError
from lerowds.train.compat import SUPPORTED_LEROBOT, LerobotVersionError, require_lerobot

logger = logging.getLogger(__name__)

__all__ = ["SUPPORTED_LEROBOT", "LerobotVersionError", "main", "parse_config", "require_lerobot", "run"]


def parse_config(argv: Sequence[str]) -> Any:
    """lerobot-train's arguments (+ ``--lerowds.*``) → a validated ``LerowdsTrainConfig``, parsed by lerobot's
    own parser (``--config_path``, ``--policy.path``, ``--resume``, plugins). lerobot's parser and
    ``validate()`` read ``sys.argv``, so it is set to ``argv`` meanwhile."""
    require_lerobot()
    from lerobot.configs import parser
    from lerobot.utils.import_utils import register_third_party_plugins

    from lerowds.train.config import LerowdsTrainConfig

    def parsed(cfg: LerowdsTrainConfig) -> LerowdsTrainConfig:
        cfg.validate()
        return cfg

    # real types for lerobot's parser
    parsed.__annotations__ = {"cfg": LerowdsTrainConfig, "return": LerowdsTrainConfig}
    saved = sys.argv
    sys.argv = ["lerowds train", *argv]
    try:
        register_third_party_plugins()
        return parser.wrap()(parsed)()
    finally:
        sys.argv = saved


def run(argv: Sequence[str], on_step: Callable[[Any], None] | None = None) -> None:
    """Parse ``argv`` as ``main`` does and train; ``on_step`` sees each step's ``StepRecord``."""
    cfg = parse_config(argv)
    from lerowds.train.loop import train

    train(cfg, on_step=on_step)


def main(argv: Sequence[str] | None = None) -> int:
    """The command: exit status 0, or 2 with a one-line message for errors lerowds raises on purpose."""
    try:
        run(list(sys.argv[1:] if argv is None else argv))
    except LerowdsError as e:
        sys.stderr.write(f"lerowds train: error: {e}\n")
        return 2
    return 0
