"""Consumer detection, rank/worker split stages, and the accelerate dispatch/re-shard trap."""

from __future__ import annotations

import logging
from functools import partial
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, IterableDataset

from lerowds.errors import ConfigError
from lerowds.reader.env import (
    Consumer,
    accelerate_trap,
    detect_consumer,
    split_by_rank,
    split_by_worker,
    warn_if_dispatching,
)


def test_consumer_validates_and_names_the_bad_value() -> None:
    assert Consumer().index == 0 and Consumer(rank=1, world_size=2, worker=2, num_workers=3).index == 5
    with pytest.raises(ConfigError, match="rank=2 world_size=2"):
        Consumer(rank=2, world_size=2)
    with pytest.raises(ConfigError, match="worker=0 num_workers=0"):
        Consumer(num_workers=0)


def test_detect_consumer_from_env_defaults_and_arguments() -> None:
    assert detect_consumer(environ={}) == Consumer()
    c = detect_consumer(environ={"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (c.rank, c.world_size, c.worker, c.num_workers, c.local_rank) == (3, 8, 0, 1, 1)
    c = detect_consumer(rank=1, world_size=2, environ={"RANK": "3", "WORLD_SIZE": "8"})
    assert (c.rank, c.world_size) == (1, 2)
    with pytest.raises(ConfigError, match="WORLD_SIZE='eight'"):
        detect_consumer(environ={"RANK": "3", "WORLD_SIZE": "eight"})
    with pytest.raises(ConfigError, match="rank=3 world_size=1"):
        detect_consumer(environ={"RANK": "3"})


def test_detect_consumer_prefers_initialized_torch_distributed(tmp_path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        c = detect_consumer(environ={"RANK": "3", "WORLD_SIZE": "8"})
        assert (c.rank, c.world_size) == (0, 1)
        assert detect_consumer(rank=0, world_size=4).world_size == 4
    finally:
        dist.destroy_process_group()


class _WhoAmI(IterableDataset):
    """Each worker yields its detected consumer and its share of 10 shard names."""

    def __iter__(self):
        c = detect_consumer(environ={"RANK": "1", "WORLD_SIZE": "2"})
        shards = [f"shard-{i}" for i in range(10)]
        for shard in split_by_worker(split_by_rank(shards, c)):  # the worker split detects by itself
            yield (c.rank, c.world_size, c.worker, c.num_workers, shard)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_split_inside_a_real_dataloader(num_workers: int) -> None:
    loader = DataLoader(_WhoAmI(), batch_size=None, num_workers=num_workers)
    got = sorted(tuple(x) for x in loader)
    workers = max(num_workers, 1)
    rank_shards = [f"shard-{i}" for i in range(1, 10, 2)]
    expected = sorted((1, 2, i % workers, workers, s) for i, s in enumerate(rank_shards))
    assert got == expected


@given(n=st.integers(0, 50), world=st.integers(1, 5), workers=st.integers(1, 4))
def test_split_stages_partition_the_input(n: int, world: int, workers: int) -> None:
    items = list(range(n))
    parts = [
        list(split_by_worker(split_by_rank(items, c), c))
        for c in (Consumer(r, world, w, workers) for r in range(world) for w in range(workers))
    ]
    assert sorted(x for p in parts for x in p) == items
    assert list(split_by_rank(items, Consumer(rank=1, world_size=3))) == items[1::3]


def test_split_stages_compose_in_a_webdataset_pipeline() -> None:
    wds = pytest.importorskip("webdataset")
    c = Consumer(rank=1, world_size=2, worker=1, num_workers=2)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([f"s{i}.tar" for i in range(9)]),
        partial(split_by_rank, consumer=c),
        partial(split_by_worker, consumer=c),
    )
    assert [x["url"] for x in pipeline] == ["s3.tar", "s7.tar"]


# ---- accelerate ---------------------------------------------------------------------------------------


class _Numbers(IterableDataset):
    def __iter__(self):
        return iter(range(10))


def test_prepared_dataloaders_are_flagged(caplog) -> None:
    prepare_data_loader = pytest.importorskip("accelerate.data_loader").prepare_data_loader
    loader = DataLoader(_Numbers(), batch_size=2)
    dispatched = prepare_data_loader(loader, num_processes=2, process_index=0, put_on_device=True)
    resharded = prepare_data_loader(
        loader, num_processes=2, process_index=1, put_on_device=True, dispatch_batches=False
    )
    single = prepare_data_loader(loader, num_processes=1, process_index=0, dispatch_batches=False)
    # What the trap does to a dataset: rank 1 keeps 1/2 of what it yields (and pads with the start).
    assert [b.tolist() for b in resharded] == [[2, 3], [6, 7], [0, 1]]
    with caplog.at_level(logging.WARNING, logger="lerowds.reader.env"):
        assert warn_if_dispatching(dispatched) is True
        assert "DataLoaderDispatcher" in caplog.text and "accelerator.prepare" in caplog.text
        assert warn_if_dispatching(resharded) is True
        assert "IterableDatasetShard(num_processes=2)" in caplog.text
    assert warn_if_dispatching(single) is False
    assert warn_if_dispatching(loader) is False


def test_accelerator_configs_are_flagged() -> None:
    accelerate = pytest.importorskip("accelerate")
    config = accelerate.DataLoaderConfiguration
    assert "dispatch_batches=None" in accelerate_trap(
        SimpleNamespace(dataloader_config=config(), num_processes=1)
    )
    on = SimpleNamespace(dataloader_config=config(dispatch_batches=True), num_processes=4)
    off = SimpleNamespace(dataloader_config=config(dispatch_batches=False), num_processes=4)
    alone = SimpleNamespace(dataloader_config=config(dispatch_batches=False), num_processes=1)
    assert "rank 0 only" in accelerate_trap(on)
    assert "IterableDatasetShard" in accelerate_trap(off)
    assert accelerate_trap(alone) is None


def test_a_real_accelerator_is_flagged() -> None:
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState

    try:
        assert warn_if_dispatching(accelerate.Accelerator(cpu=True)) is True  # dispatch_batches=None
        off = accelerate.DataLoaderConfiguration(dispatch_batches=False)
        accelerator = accelerate.Accelerator(cpu=True, dataloader_config=off)
        assert warn_if_dispatching(accelerator) is False  # one process: prepare() leaves the data alone
        prepared = accelerator.prepare(DataLoader(_Numbers(), batch_size=2))
        assert warn_if_dispatching(prepared) is False
        assert torch.cat(list(prepared)).tolist() == list(range(10))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
