"""A resume state says what it belongs to: a dataset's state never loads into a mix, a mix's never into a
dataset or into a mix of other sources; fields recorded on one side only are refused too. Counters that are
not integers are named with the bad value, never truncated or passed to a bare ``int()``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset, StatefulLoader
from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.mix import mix

KW = {"seed": 7, "episode_pool_size": 2}


def _mix(root: Path, names: tuple[str, str] = ("a", "b"), **kw: Any):
    a = LeRobotWebDataset(root, episodes=range(6), **KW)
    b = LeRobotWebDataset(root, episodes=range(6, 13), **KW)
    return mix(dict(zip(names, (a, b))), [0.5, 0.5], seed=KW["seed"], samples_per_epoch=60, **kw)


def _state(ds: Any, **kw: Any) -> dict[str, Any]:
    return ds.state_dict(batches_consumed=3, batch_size=4, epoch=0, num_workers=0, **kw)


# ---- which stream a state belongs to ----------------------------------------------------------------------
def test_a_mix_state_is_refused_by_a_dataset(tabular_converted: Path) -> None:
    state = _state(_mix(tabular_converted))
    ds = LeRobotWebDataset(tabular_converted, **KW)
    with pytest.raises(ResumeMismatchError, match=r"saved with kind='mix' .* this run has kind='dataset'"):
        ds.load_state_dict(state)
    assert ds.stream.resume is None  # nothing half-loaded: the next iteration starts the epoch afresh


def test_a_dataset_state_is_refused_by_a_mix(tabular_converted: Path) -> None:
    state = _state(LeRobotWebDataset(tabular_converted, **KW))
    mixed = _mix(tabular_converted)
    with pytest.raises(ResumeMismatchError, match=r"saved with kind='dataset' .* this run has kind='mix'"):
        mixed.load_state_dict(state)


def test_a_mix_state_is_refused_by_a_mix_of_other_sources(tabular_converted: Path) -> None:
    state = _state(_mix(tabular_converted))
    renamed = _mix(tabular_converted, ("a", "c"))
    with pytest.raises(ResumeMismatchError, match=r"mix_sources=\['a', 'b'\] but this run has mix_sources"):
        renamed.load_state_dict(state)
    a = LeRobotWebDataset(tabular_converted, episodes=range(6), **KW)
    other = LeRobotWebDataset(tabular_converted, episodes=range(7, 13), **KW)  # the same names, another "b"
    swapped = mix({"a": a, "b": other}, [0.5, 0.5], seed=KW["seed"], samples_per_epoch=60)
    with pytest.raises(ResumeMismatchError, match=r"source\.b\.num_frames=\d+ but this run has source\.b"):
        swapped.load_state_dict(state)


def test_a_field_recorded_on_one_side_only_is_refused(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted, **KW)
    state = _state(ds)
    dropped = {**state, "config": {k: v for k, v in state["config"].items() if k != "episodes"}}
    with pytest.raises(ResumeMismatchError, match=r"saved with episodes=\(not recorded\) but this run has"):
        ds.load_state_dict(dropped)
    added = {**state, "config": {**state["config"], "samples_per_epoch": 60}}
    with pytest.raises(
        ResumeMismatchError, match=r"samples_per_epoch=60 but this run has samples_per_epoch="
    ):
        ds.load_state_dict(added)


def test_a_state_without_its_kind_is_judged_by_its_fields(tabular_converted: Path) -> None:
    """States saved before ``kind`` was recorded still load into their own kind, and only there."""
    ds = LeRobotWebDataset(tabular_converted, **KW)
    old = _state(ds)
    old["config"].pop("kind")
    ds.load_state_dict(old)
    mixed = _mix(tabular_converted)
    old_mix = _state(mixed)
    old_mix["config"].pop("kind")
    mixed.load_state_dict(old_mix)
    with pytest.raises(ResumeMismatchError, match="kind='mix'"):
        ds.load_state_dict(old_mix)


def test_plain_counters_still_load_anywhere(tabular_converted: Path) -> None:
    counters = {"epoch": 0, "batches_consumed": 2, "batch_size": 4}
    LeRobotWebDataset(tabular_converted, **KW).load_state_dict(counters)
    _mix(tabular_converted).load_state_dict(counters)


# ---- counters that are not integers -----------------------------------------------------------------------
COUNTERS = {"epoch": 0, "batches_consumed": 3, "batch_size": 4}


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (
            COUNTERS | {"batches_consumed": "ten"},
            "resume state's batches_consumed must be an integer >= 0, got 'ten'",
        ),
        (
            COUNTERS | {"batches_consumed": 10.7},
            "resume state's batches_consumed must be an integer >= 0, got 10.7",
        ),
        (
            COUNTERS | {"batches_consumed": True},
            "resume state's batches_consumed must be an integer >= 0, got True",
        ),
        (COUNTERS | {"epoch": "1"}, "resume state's epoch must be an integer >= 0, got '1'"),
        (COUNTERS | {"batch_size": False}, "resume state's batch_size must be an integer >= 1, got False"),
        (COUNTERS | {"drop_last": "no"}, "resume state's drop_last must be True or False, got 'no'"),
        (COUNTERS | {"config": "abc"}, "resume state's config must be a dict .*, got 'abc'"),
        (
            COUNTERS | {"config": {"world_size": "two", "num_workers": 0}},
            "resume state's config world_size must be an integer >= 1, got 'two'",
        ),
        (
            COUNTERS | {"config": {"world_size": 1, "num_workers": 1.5}},
            "resume state's config num_workers must be an integer >= 0, got 1.5",
        ),
        (COUNTERS | {"elastic": "abc"}, "resume state's elastic must be a list of legs .*, got 'abc'"),
        (
            COUNTERS
            | {"elastic": [{"world_size": "two", "num_workers": 1, "batch_size": 2, "batches_consumed": 1}]},
            "resume state's elastic leg 0 world_size must be an integer >= 1, got 'two'",
        ),
        ("abc", r"a resume state must be a dict like .*got 'abc' \(str\)"),
        (None, r"a resume state must be a dict like .*got None \(NoneType\)"),
    ],
    ids=lambda v: v if isinstance(v, str) and " " in v else None,
)
def test_a_malformed_state_is_named_with_its_bad_value(
    tabular_converted: Path, state: Any, message: str
) -> None:
    ds = LeRobotWebDataset(tabular_converted, **KW)
    with pytest.raises(ConfigError, match=message):
        ds.load_state_dict(state)


def test_a_string_state_into_a_stateful_loader_is_named(tabular_converted: Path) -> None:
    loader = StatefulLoader(DataLoader(LeRobotWebDataset(tabular_converted, **KW), batch_size=4))
    with pytest.raises(
        ConfigError, match=r"a resume state must be a dict like .*got '\{\"epoch\": 0\}' \(str\)"
    ):
        loader.load_state_dict('{"epoch": 0}')  # type: ignore[arg-type]  # e.g. a JSON string not parsed
