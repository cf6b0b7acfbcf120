"""A resume state saved under another sample-order version is refused with a named error."""

from __future__ import annotations

import pytest

from lerowds.errors import OrderVersionError, ResumeMismatchError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.order.pool import ORDER_VERSION


def test_state_records_the_order_version_and_old_states_are_refused(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1)
    state = ds.state_dict(batches_consumed=3, batch_size=4, epoch=0, num_workers=0)
    assert state["config"]["order_version"] == ORDER_VERSION == 2
    LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(state)

    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "order_version"}}
    with pytest.raises(
        OrderVersionError, match="order version 1 but this lerowds samples in order version 2"
    ):
        LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(old)
    future = {**state, "config": {**state["config"], "order_version": 3}}
    with pytest.raises(ResumeMismatchError, match="version 3"):
        LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(future)
    plain = {"epoch": 0, "batches_consumed": 3, "batch_size": 4}  # a trainer's own counters: nothing to check
    LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(plain)
