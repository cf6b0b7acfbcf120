"""Bad reader arguments are named errors up front: non-finite or non-numeric delta_timestamps, non-integer
episode indices, and a resume state past the end of its epoch (in load_state_dict, not in a worker)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lerowds import LeRobotWebDataset
from lerowds.errors import ConfigError, ResumeMismatchError


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "0.1", True])
def test_delta_timestamps_that_are_not_finite_seconds_name_the_key(
    tabular_converted: Path, bad: object
) -> None:
    with pytest.raises(
        ConfigError, match=r"delta_timestamps\['action'\] must hold (finite|numbers of) seconds"
    ):
        LeRobotWebDataset(tabular_converted, delta_timestamps={"action": [0.0, bad]})


@pytest.mark.parametrize("bad", [[1.5], [True], [np.float64(1.0)], ["1"], [0, False]])
def test_episodes_must_be_integers(tabular_converted: Path, bad: list) -> None:
    with pytest.raises(ConfigError, match=r"episodes= must list integer episode indices, got"):
        LeRobotWebDataset(tabular_converted, episodes=bad)


def test_episodes_accepts_numpy_integers(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted, episodes=np.array([1, 3]), shuffle=False)
    assert sorted({int(s["episode_index"]) for s in ds}) == [1, 3]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_batches_consumed_past_the_epoch_is_refused_by_load_state_dict(
    tabular_converted: Path, num_workers: int
) -> None:
    ds = LeRobotWebDataset(tabular_converted, seed=1)
    batches = math.ceil(len(ds) / 8) if num_workers == 0 else None
    state = ds.state_dict(batches_consumed=10_000, batch_size=8, epoch=0, num_workers=num_workers)
    fresh = LeRobotWebDataset(tabular_converted, seed=1)
    with pytest.raises(ResumeMismatchError, match=r"batches_consumed=10000 but this epoch has \d+ batches"):
        fresh.load_state_dict(state)
    if batches is not None:  # the last batch of the epoch is still a valid point to resume from
        fresh.load_state_dict(ds.state_dict(batches_consumed=batches, batch_size=8, epoch=0, num_workers=0))
