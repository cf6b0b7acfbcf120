"""Every public constructor refuses a bool, a float, a string or an out-of-range value for a count, a flag or
a size, naming the argument and the bad value (one table over LeRobotWebDataset, Loader, StatefulLoader, mix
and plan_dataset)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import lerowds
from lerowds.errors import ConfigError

COUNTS = [True, False, 10.7, 2.0, "8", -1]  # -1 is below every count's lower bound
FLAGS = [1, 0, "yes", None]
SIZES = [True, 1.5, "lots", 0, -1]
SECONDS = [True, "0.1", float("nan"), -1.0]


def _dataset(root: Path, **kw: Any) -> Any:
    return lerowds.LeRobotWebDataset(root, **kw)


def _loader(root: Path, **kw: Any) -> Any:
    return lerowds.Loader(lerowds.LeRobotWebDataset(root), **kw)


def _mix(root: Path, **kw: Any) -> Any:
    return lerowds.mix({"a": root, "b": root}, **kw)


def _plan(root: Path, **kw: Any) -> Any:
    settings = {"world_size": 1, "num_workers": 1, "batch_size": 2, **kw}
    return lerowds.plan_dataset(root, **settings)


def _convert_options(root: Path, **kw: Any) -> Any:
    from lerowds.convert import ConvertOptions

    return ConvertOptions(repo_id="org/name", output=root / "unused", **kw)


def _wds_pool(root: Path, **kw: Any) -> Any:
    return list(lerowds.wds.episode_pool(**kw)(iter([])))


CASES: list[tuple[str, Callable[..., Any], str, list[object]]] = [
    *[("dataset", _dataset, name, COUNTS) for name in ("episode_pool_size", "seed", "rank", "world_size")],
    ("dataset", _dataset, "decoder_cache_size", COUNTS),
    *[("dataset", _dataset, name, FLAGS) for name in ("shuffle", "return_uint8", "stats", "verify_crc")],
    *[("dataset", _dataset, name, SIZES) for name in ("pool_byte_budget", "cache_limit")],
    ("dataset", _dataset, "tolerance_s", SECONDS),
    ("dataset", _dataset, "stats_log_every_s", SECONDS),
    *[("Loader", _loader, name, COUNTS) for name in ("batch_size", "num_threads", "prefetch")],
    ("Loader", _loader, "drop_last", FLAGS),
    ("Loader", _loader, "pin_memory", [1, "yes"]),
    *[("mix", _mix, name, COUNTS) for name in ("seed", "samples_per_epoch", "episode_pool_size")],
    *[("plan", _plan, name, COUNTS) for name in ("world_size", "num_workers", "batch_size")],
    *[("plan", _plan, name, COUNTS) for name in ("episode_pool_size", "seed", "epoch")],
    ("plan", _plan, "shuffle", FLAGS),
    ("plan", _plan, "pool_byte_budget", SIZES),
    *[("ConvertOptions", _convert_options, name, COUNTS) for name in ("shard_size", "workers", "num_tasks")],
    ("ConvertOptions", _convert_options, "task_index", COUNTS),
    *[("wds.episode_pool", _wds_pool, name, COUNTS) for name in ("pool_size", "seed", "epoch")],
]


@pytest.mark.parametrize(
    "make, name, bad",
    [
        pytest.param(make, name, bad, id=f"{who}-{name}={bad!r}")
        for who, make, name, vals in CASES
        for bad in vals
    ],
)
def test_public_constructors_refuse_bad_settings_by_name(
    tabular_converted: Path, make: Callable[..., Any], name: str, bad: object
) -> None:
    with pytest.raises(ConfigError) as e:
        make(tabular_converted, **{name: bad})
    message = str(e.value)
    flag = "--" + name.replace("_", "-")  # the converter's options are named as its command-line flags
    assert re.search(rf"(\b|^){re.escape(name)}\b|{re.escape(flag)}\b", message), message
    assert repr(bad) in message, message


def test_the_settings_after_delta_timestamps_are_keyword_only(tabular_converted: Path) -> None:
    with pytest.raises(TypeError, match="positional"):
        lerowds.LeRobotWebDataset(tabular_converted, None, 8)  # type: ignore[misc]


def test_stateful_loader_refuses_what_is_not_a_dataloader(tabular_converted: Path) -> None:
    ds = lerowds.LeRobotWebDataset(tabular_converted)
    with pytest.raises(ConfigError, match="wraps a torch DataLoader, got LeRobotWebDataset"):
        lerowds.StatefulLoader(ds)  # type: ignore[arg-type]
