"""lerowds: LeRobot v3 datasets as per-episode WebDataset shards, streamed fast.

The converter (``lerowds convert``) repacks a LeRobot v3 dataset into tar shards, one whole episode per
sample; ``LeRobotWebDataset`` streams them with an episode pool, delta windows, decode-on-exit, a
rank/worker split with equal batches, and exact counter-based resume.
"""

from lerowds.errors import (
    ConfigError,
    ConversionError,
    FormatError,
    LerowdsError,
    OrderVersionError,
    RemoteError,
    ResumeMismatchError,
    SourceError,
    VerifyError,
    VideoDecodeError,
)

__version__ = "0.1.0"

# The reader pulls in torch; load it on first use so the converter CLI starts fast without it.
_LAZY = {
    "LeRobotWebDataset": "lerowds.reader.dataset",
    "MixedDataset": "lerowds.reader.mix",
    "mix": "lerowds.reader.mix",
    "Consumer": "lerowds.reader.env",
    "detect_consumer": "lerowds.reader.env",
    "split_by_rank": "lerowds.reader.env",
    "split_by_worker": "lerowds.reader.env",
    "warn_if_dispatching": "lerowds.reader.env",
    "plan_dataset": "lerowds.reader.extras.dryrun",
    "Loader": "lerowds.reader.loader.core",
    "StatefulLoader": "lerowds.reader.loader.stateful",
    "RemoteOptions": "lerowds.reader.io.options",
}


def __getattr__(name: str) -> object:
    import importlib

    if name == "wds":
        value: object = importlib.import_module("lerowds.wds")
    else:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'lerowds' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "ConfigError",
    "Consumer",
    "ConversionError",
    "FormatError",
    "LeRobotWebDataset",
    "LerowdsError",
    "Loader",
    "MixedDataset",
    "OrderVersionError",
    "RemoteError",
    "RemoteOptions",
    "ResumeMismatchError",
    "SourceError",
    "StatefulLoader",
    "VerifyError",
    "VideoDecodeError",
    "detect_consumer",
    "mix",
    "plan_dataset",
    "split_by_rank",
    "split_by_worker",
    "warn_if_dispatching",
]
