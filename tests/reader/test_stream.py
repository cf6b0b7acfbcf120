"""``Stream`` on a list-backed source: epochs, resume and thread starts need only the ``Source`` methods."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from types import SimpleNamespace
from typing import Any

import pytest

from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.env import Consumer
from lerowds.reader.order.pool import ORDER_VERSION
from lerowds.reader.order.ranks import consumer_sample_count
from lerowds.reader.stream import Source, Stream, StreamDataset


class Numbers(StreamDataset):
    """Sample ``(epoch, i)`` for the frames ``i`` of ``n``: each consumer owns a contiguous run of them."""

    remainder = "drop"
    meta = SimpleNamespace(camera_keys=[])  # no cameras
    plain_float_cameras = False

    def thread_copy(self, thread: int, threads: int, *, uint8: bool, lock: Any) -> Numbers:
        return self  # nothing mutable to copy

    def __init__(self, n: int, seed: int = 0, rank: int | None = None, world_size: int | None = None) -> None:
        super().__init__()
        self.n, self.seed = n, seed
        self.stream = Stream(rank, world_size)

    def sample_counts(self, world_size: int, num_workers: int) -> list[int]:
        return [
            consumer_sample_count(self.n, world_size=world_size, num_workers=num_workers, worker=w)
            for w in range(num_workers)
        ]

    def consumer_stream(self, epoch: int, consumer: Consumer, skip: int = 0) -> Iterator[Any]:
        counts = self.sample_counts(consumer.world_size, consumer.num_workers)
        start = consumer.rank * sum(counts) + sum(counts[: consumer.worker])
        return iter([(epoch, i) for i in range(start + skip, start + counts[consumer.worker])])

    def config(self, num_workers: int | None = None) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "order_version": ORDER_VERSION,
            "world_size": self.stream.consumer().world_size,
            "num_workers": num_workers,
            "source": {"numbers": {"num_frames": self.n}},
        }


def _round_robin(streams: list[Iterator[Any]], batch_size: int) -> list[list[Any]]:
    """Batches in DataLoader order: one batch per stream in turn, skipping ended streams."""
    out, active = [], list(streams)
    while active:
        for it in list(active):
            batch = list(islice(it, batch_size))
            if batch:
                out.append(batch)
            else:
                active.remove(it)
    return out


def _thread_batches(ds: Numbers, threads: int, batch_size: int) -> tuple[int, int, list[list[Any]]]:
    start = ds.stream.begin_threads(ds, threads)
    streams = [start.stream(ds, t) for t in range(threads)]
    return start.epoch, start.batches_consumed, _round_robin(streams, batch_size)


def test_a_numbers_dataset_is_a_stream_source() -> None:
    assert isinstance(Numbers(3), Source)
    assert not isinstance(object(), Source)


def test_the_dataset_and_the_mix_are_the_one_source(tabular_converted) -> None:
    from lerowds import LeRobotWebDataset, mix

    a = LeRobotWebDataset(tabular_converted, episodes=range(6))
    b = LeRobotWebDataset(tabular_converted, episodes=range(6, 13))
    assert isinstance(a, Source) and isinstance(mix({"a": a, "b": b}), Source)


def test_epochs_count_up_and_set_epoch_restarts_them() -> None:
    ds = Numbers(5)
    assert list(ds) == [(0, i) for i in range(5)]
    assert list(ds) == [(1, i) for i in range(5)]
    ds.set_epoch(7)
    assert ds.epoch == 7
    assert [e for e, _ in ds] == [7] * 5
    assert [e for e, _ in ds] == [8] * 5
    for bad in (-1, True, 1.0, "2"):
        with pytest.raises(ConfigError, match="epoch must be an integer >= 0"):
            ds.set_epoch(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("consumed", [0, 1, 3, 6, 7])
def test_resume_in_one_process_yields_the_rest(consumed: int) -> None:
    """Save after ``consumed`` batches of 3 (one consumer), restore into a fresh object: the rest, once."""
    ds = Numbers(20)
    ds.set_epoch(2)
    whole = list(ds)
    state = ds.state_dict(batches_consumed=consumed, batch_size=3, epoch=2, num_workers=0)
    again = Numbers(20)
    again.load_state_dict(state)
    rest = list(again)
    if consumed * 3 >= 20:  # the epoch was complete: the next one starts
        assert rest == [(3, i) for i in range(20)]
    else:
        assert rest == whole[consumed * 3 :]
    assert again.state_dict(batches_consumed=0, batch_size=3, num_workers=0)["config"] == state["config"]


@pytest.mark.parametrize("consumed", [0, 2, 5, 8])
def test_threads_resume_where_the_batches_stopped(consumed: int) -> None:
    """``begin_threads``: each thread continues the right consumer after the right skip, in DataLoader order."""
    ds = Numbers(23)
    epoch, before, whole = _thread_batches(ds, 3, 2)
    assert (epoch, before) == (0, 0) and sorted(i for b in whole for _, i in b) == list(range(23))
    state = ds.state_dict(batches_consumed=consumed, batch_size=2, epoch=0, num_workers=3)
    again = Numbers(23)
    again.load_state_dict(state)
    epoch, before, rest = _thread_batches(again, 3, 2)
    assert (epoch, before) == (0, consumed)
    assert rest == whole[consumed:]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ((1, 2, 2, 3), (1, 2, 4)),
        ((1, 2, 2, 3), (1, 3, 2)),
        ((2, 3, 2, 2), (3, 1, 3)),
        ((3, 1, 4, 1), (1, 4, 1)),
    ],
    ids=str,
)
def test_threads_resume_elastically_on_another_setup(old: tuple[int, ...], new: tuple[int, ...]) -> None:
    """(world, threads, batch size, batches consumed) -> (world', threads', batch size'): the rest of the
    epoch comes once over the new ranks (the last R % W' dropped), every rank yields as many samples."""
    (w0, k0, b0, n), (w1, k1, b1) = old, new
    consumed, state = [], None
    for rank in range(w0):
        ds = Numbers(40, rank=rank, world_size=w0)
        consumed += [i for b in _thread_batches(ds, k0, b0)[2][:n] for _, i in b]
        state = ds.state_dict(batches_consumed=n, batch_size=b0, epoch=0, num_workers=k0)
    rest = []
    for rank in range(w1):
        ds = Numbers(40, rank=rank, world_size=w1)
        ds.load_state_dict(state)
        epoch, before, batches = _thread_batches(ds, k1, b1)
        assert (epoch, before) == (0, n)
        rest.append([i for b in batches for _, i in b])
    assert len({len(r) for r in rest}) == 1
    got = consumed + [i for r in rest for i in r]
    assert len(set(got)) == len(got)
    left = 40 - 40 % w0 - len(consumed)
    assert len(got) == len(consumed) + left - left % w1


def test_load_refuses_a_nested_config_that_differs() -> None:
    state = Numbers(10).state_dict(batches_consumed=1, batch_size=2, num_workers=0)
    with pytest.raises(ResumeMismatchError, match=r"source\.numbers\.num_frames=10 but this run has .*=11"):
        Numbers(11).load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match="batches_consumed=9 but this epoch has 5 batches"):
        Numbers(10).load_state_dict(state | {"batches_consumed": 9})
