"""The consumers of one epoch as threads of this process: thread ``w`` plays DataLoader worker ``w``.

``start_epoch(ds, num_threads)`` does for all threads at once what a dataset's ``__iter__`` does inside each
DataLoader worker: ``ds.stream.begin_threads`` picks the epoch on the dataset's clock and applies a pending
resume (which original worker's stream each thread continues, after how many samples); this module returns
one stream factory per thread. A factory runs in its thread and iterates a *thread copy* of the dataset
(``ds.thread_copy``): its own store (own file descriptors, own remote prefetcher, as a worker process's
unpickled copy has), so the threads share no mutable reader state.

Two things a worker process gets for free need care in threads:

* **Camera dtype.** When the dataset promises float32 cameras and has no transforms
  (``plain_float_cameras``), the copy builds uint8 cameras (a quarter of the bytes to copy into the batch);
  ``Loader`` converts them to float32 afterwards.
* **Seeded transforms.** ``transform``/``image_transforms`` run under torch's *process-wide* RNG seeded per
  sample. Threads drawing from it concurrently would race, so the copy builds samples without transforms
  (decoding stays parallel) and applies them afterwards one sample at a time under one lock, with the same
  seed and in the same order as the sample loop does: identical augmentations.

The loader needs only the ``LoaderSource`` protocol below (``LeRobotWebDataset`` and ``MixedDataset``
implement it); it imports neither.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from lerowds.errors import ConfigError
from lerowds.reader.meta import DatasetMeta
from lerowds.reader.stream import Sample, Stream, StreamSource

StreamFactory = Callable[[], Iterator[Sample]]

_TRANSFORM_LOCK = threading.Lock()  # torch's CPU RNG is one per process: one seeded transform at a time


@runtime_checkable
class LoaderSource(StreamSource, Protocol):
    """What ``lerowds.Loader`` and ``StatefulLoader`` use of a dataset or a mix: a ``StreamSource`` with its
    ``Stream``, the ``IterableDataset`` face of ``StreamDataset``, and thread copies."""

    stream: Stream
    meta: DatasetMeta

    @property
    def epoch(self) -> int: ...

    @property
    def plain_float_cameras(self) -> bool: ...

    def thread_copy(
        self, thread: int, threads: int, *, uint8: bool, lock: threading.Lock
    ) -> LoaderSource: ...

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self, **counters: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class EpochStart:
    """One epoch of ``num_threads`` thread consumers: what each thread iterates, and where the epoch starts."""

    epoch: int
    batches_consumed: int  # batches of this epoch already consumed before this iteration (a resume)
    total_batches: int  # batches of the whole epoch for this rank
    streams: tuple[StreamFactory, ...]


def transform_lock() -> threading.Lock:
    """The lock under which loader threads run seeded transforms, each inside a ``fork_rng`` of torch's CPU
    RNG. Another thread that draws from, saves or restores torch's CPU RNG while such a loader runs must hold
    it meanwhile, or each sees the other's RNG state (``lerowds train`` holds it around its training step)."""
    return _TRANSFORM_LOCK


def camera_keys(ds: LoaderSource) -> tuple[str, ...]:
    return tuple(ds.meta.camera_keys)


def travels_uint8(ds: LoaderSource) -> bool:
    """True when cameras can be built as uint8 and converted to float32/255 per batch: the dataset promises
    float32 cameras and no transform sees them first."""
    return ds.plain_float_cameras


def thread_view(ds: LoaderSource, thread: int, threads: int, *, uint8: bool) -> LoaderSource:
    """A copy of ``ds`` for consumer thread ``thread`` of ``threads`` (see the module docstring)."""
    return ds.thread_copy(thread, threads, uint8=uint8, lock=_TRANSFORM_LOCK)


def check_dataset(ds: Any) -> None:
    if not isinstance(ds, LoaderSource) or not isinstance(ds.stream, Stream):
        raise ConfigError(
            f"lerowds.Loader reads a LeRobotWebDataset or a lerowds.mix(...), got {type(ds).__name__}; "
            "use torch's DataLoader for other datasets"
        )


def epoch_batches(ds: LoaderSource, num_threads: int, batch_size: int, drop_last: bool) -> int:
    """Batches this rank's loader yields in one epoch."""
    return ds.stream.epoch_batches(ds, num_threads, batch_size=batch_size, drop_last=drop_last)


def start_epoch(ds: LoaderSource, num_threads: int, *, batch_size: int, drop_last: bool) -> EpochStart:
    """Begin the dataset's next epoch for ``num_threads`` thread consumers (call from the training thread)."""
    check_dataset(ds)
    total = epoch_batches(ds, num_threads, batch_size, drop_last)
    plan = ds.stream.begin_threads(ds, num_threads, batch_size=batch_size, drop_last=drop_last)
    uint8 = travels_uint8(ds)

    def factory(thread: int) -> StreamFactory:
        def open_stream() -> Iterator[Sample]:
            view = thread_view(ds, thread, num_threads, uint8=uint8)
            return view.consumer_stream(plan.epoch, plan.consumers[thread], plan.skips[thread])

        return open_stream

    return EpochStart(plan.epoch, plan.batches_consumed, total, tuple(factory(w) for w in range(num_threads)))
