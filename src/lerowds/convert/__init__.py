"""LeRobot v3 -> lerowds: source -> shard plan -> tar shards -> episode table -> index (no torch here)."""

from lerowds.convert.finalize import finalize
from lerowds.convert.info import describe
from lerowds.convert.plan import parse_episodes, parse_size
from lerowds.convert.run import ConvertOptions, ConvertResult, convert
from lerowds.convert.verify import VerifyReport, verify

__all__ = [
    "ConvertOptions",
    "ConvertResult",
    "VerifyReport",
    "convert",
    "describe",
    "finalize",
    "parse_episodes",
    "parse_size",
    "verify",
]
