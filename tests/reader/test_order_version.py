"""A resume state saved under another sample-order version is refused with a named error; a version-2 state
whose order version 3 keeps (the per-sample order, run_length=1) resumes as before."""

from __future__ import annotations

from itertools import islice

import pytest

import lerowds
from lerowds.errors import OrderVersionError, ResumeMismatchError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.order.pool import ORDER_VERSION


def test_state_records_the_order_version_and_old_states_are_refused(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1)
    state = ds.state_dict(batches_consumed=3, batch_size=4, epoch=0, num_workers=0)
    assert state["config"]["order_version"] == ORDER_VERSION == 3
    LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(state)

    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "order_version"}}
    with pytest.raises(
        OrderVersionError, match="order version 1 but this lerowds samples in order version 3"
    ):
        LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(old)
    future = {**state, "config": {**state["config"], "order_version": 4}}
    with pytest.raises(ResumeMismatchError, match="version 4"):
        LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(future)
    plain = {"epoch": 0, "batches_consumed": 3, "batch_size": 4}  # a trainer's own counters: nothing to check
    LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=1).load_state_dict(plain)


def _as_version_2(state: dict, *, keep_run_mode: bool = True) -> dict:
    """``state`` as lerowds at order version 2 saved it (without run mode's fields: before run mode)."""
    config = {**state["config"], "order_version": 2}
    if "source" in config:  # a mix records each source's config, its order version included
        config["source"] = {n: {**c, "order_version": 2} for n, c in config["source"].items()}
    if not keep_run_mode:
        config = {k: v for k, v in config.items() if k not in ("run_length", "shuffle_buffer")}
    return {**state, "config": config}


@pytest.mark.parametrize("keep_run_mode", [True, False])
def test_a_version_2_per_sample_state_resumes_as_before(tabular_converted, keep_run_mode: bool) -> None:
    def make() -> LeRobotWebDataset:
        return LeRobotWebDataset(tabular_converted, episode_pool_size=3, seed=2)

    whole = [int(s["index"]) for s in make()]
    state = _as_version_2(make().state_dict(batches_consumed=5, batch_size=4), keep_run_mode=keep_run_mode)
    resumed = make()
    resumed.load_state_dict(state)
    assert [int(s["index"]) for s in resumed] == whole[20:]


def test_a_version_2_run_mode_state_is_refused_naming_run_length(tabular_converted) -> None:
    def make() -> LeRobotWebDataset:
        return LeRobotWebDataset(
            tabular_converted, episode_pool_size=3, seed=2, run_length=4, shuffle_buffer=8
        )

    state = _as_version_2(make().state_dict(batches_consumed=5, batch_size=4))
    with pytest.raises(OrderVersionError, match=r"version 2 with run_length=4.*start the next epoch"):
        make().load_state_dict(state)


def test_a_version_2_mix_state_resumes_per_sample_and_is_refused_in_run_mode(tabular_converted) -> None:
    def make(r: int) -> lerowds.MixedDataset:
        sources = {"a": tabular_converted, "b": tabular_converted}
        return lerowds.mix(
            sources, [0.5, 0.5], samples_per_epoch=40, seed=1, episode_pool_size=2, run_length=r
        )

    whole = [int(s["index"]) for s in make(1)]
    resumed = make(1)
    resumed.load_state_dict(_as_version_2(make(1).state_dict(batches_consumed=3, batch_size=4)))
    assert [int(s["index"]) for s in resumed] == whole[12:]
    with pytest.raises(OrderVersionError, match=r"source\.a\.run_length=4"):
        make(4).load_state_dict(_as_version_2(make(4).state_dict(batches_consumed=3, batch_size=4)))
    assert list(islice(make(4), 1))  # (the mix does run in run mode)
