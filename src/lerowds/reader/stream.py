"""One stream type for ``LeRobotWebDataset`` and the mix: epoch clock, resume state, per-consumer entry point.

A dataset or a mix is a ``Source``: it says how many samples each consumer of a rank yields in a fresh epoch
(``sample_counts``) and what consumer ``c`` yields in epoch ``e`` after its first ``skip`` samples
(``consumer_stream``, a pure replay). ``Stream`` owns the rest, the same for both: which epoch an iteration
is (``EpochClock``), the state loaded by ``load_state_dict`` and, from it, which original consumer's stream
each consumer continues after how many samples (``resume/``). ``StreamDataset`` is the ``IterableDataset``
face the dataset and the mix share (``__iter__``, ``set_epoch``, ``state_dict``, ``load_state_dict``);
``lerowds.Loader`` drives the same ``Stream`` for its threads (``begin_threads``) and imports neither class.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch.utils.data import IterableDataset, get_worker_info

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.env import Consumer, detect_consumer
from lerowds.reader.meta import DatasetMeta
from lerowds.reader.order.ranks import Remainder
from lerowds.reader.resume.batches import worker_batch_counts
from lerowds.reader.resume.elastic import ElasticEpoch
from lerowds.reader.resume.state import (
    ResumeState,
    check_config,
    elastic_epoch,
    plan_for_worker,
    state_to_save,
)
from lerowds.reader.shared import EpochClock

Sample = dict[str, Any]


@runtime_checkable
class Source(Protocol):
    """What the stream and ``lerowds.Loader`` need of a dataset (its pool order) or a mix (weighted draws over
    datasets): ``LeRobotWebDataset`` and ``MixedDataset`` are the two."""

    remainder: Remainder  # how an epoch that does not divide by the world size is cut (elastic resume)
    meta: DatasetMeta  # the camera keys (the Loader converts cameras), fps, features

    def sample_counts(self, world_size: int, num_workers: int) -> list[int]:
        """Samples each of ``num_workers`` consumers of a rank yields in a fresh epoch on ``world_size`` ranks."""
        ...

    def consumer_stream(self, epoch: int, consumer: Consumer, skip: int = 0) -> Iterator[Sample]:
        """The samples ``consumer`` yields in ``epoch`` after its first ``skip`` (integers only until then)."""
        ...

    def config(self, num_workers: int | None = None) -> dict[str, Any]:
        """The configuration a resume state records and must match on load."""
        ...

    @property
    def plain_float_cameras(self) -> bool:
        """Cameras come out as float32 and no transform sees them (threads may build them as uint8)."""
        ...

    def thread_copy(self, thread: int, threads: int, *, uint8: bool, lock: threading.Lock) -> Source:
        """A copy for consumer thread ``thread`` of ``threads`` of this process: its own store and stats slot,
        cameras built as uint8 when ``uint8``, transforms applied one sample at a time under ``lock``."""
        ...


def check_source(ds: Any) -> None:
    """Refuse what ``lerowds.Loader`` and ``StatefulLoader`` cannot read: anything but a ``StreamDataset``
    that is a ``Source`` (a ``LeRobotWebDataset`` or a ``lerowds.mix``)."""
    if not isinstance(ds, StreamDataset) or not isinstance(ds, Source) or not isinstance(ds.stream, Stream):
        raise ConfigError(
            f"lerowds.Loader reads a LeRobotWebDataset or a lerowds.mix(...), got {type(ds).__name__}; "
            "use torch's DataLoader for other datasets"
        )


@dataclass(frozen=True, slots=True)
class EpochStart:
    """How consumers ``workers`` of one rank begin an epoch: the stream each continues, from where."""

    epoch: int
    batches_consumed: int  # batches of this epoch consumed before this iteration (a resume), else 0
    workers: tuple[int, ...]  # the consumers (DataLoader workers or Loader threads) this start is for
    consumers: tuple[Consumer, ...]  # consumers[i]: whose stream workers[i] continues (its worker: the role)
    skips: tuple[int, ...]  # samples of that stream already consumed
    elastic: ElasticEpoch | None = None  # set when the epoch continues on another setup: it decides instead

    def stream(self, source: Source, i: int) -> Iterator[Sample]:
        """Consumer ``workers[i]``'s samples of this epoch, read through ``source`` (a thread's own copy)."""
        me = self.consumers[i]
        if self.elastic is None:
            return source.consumer_stream(self.epoch, me, self.skips[i])
        first = self.elastic.legs[0].topology

        def open_first(rank: int, worker: int, skip: int) -> Iterator[Sample]:
            old = Consumer(rank, first.world_size, worker, first.streams)
            return source.consumer_stream(self.epoch, old, skip)

        return self.elastic.stream(me.rank, self.workers[i], open_first)


class Stream:
    """The epoch clock and resume state of one dataset or mix, shared with its DataLoader workers, and the
    ``rank``/``world_size`` it was opened with (None: detected at iteration time)."""

    def __init__(self, rank: int | None = None, world_size: int | None = None) -> None:
        self.rank, self.world_size = rank, world_size
        self._clock = EpochClock(0)
        self._resume: ResumeState | None = None

    def consumer(self) -> Consumer:
        """The calling process's consumer (call it inside the DataLoader worker)."""
        return detect_consumer(self.rank, self.world_size)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use if ``set_epoch`` was called, else the last one started."""
        return self._clock.peek()

    @property
    def resume(self) -> ResumeState | None:
        """The state ``load_state_dict`` loaded (None if none)."""
        return self._resume

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration (of any copy, DataLoader workers included) use ``epoch``."""
        check_int("epoch", epoch)
        self._clock.set(int(epoch))

    # ------------------------------------------------------------------------------------------ state
    def load_state_dict(self, source: Source, state: Mapping[str, Any]) -> None:
        """Check ``state`` against ``source`` now (not in a worker) and make the next iteration resume it."""
        resume = ResumeState.from_dict(state)
        check_config(resume.config, source.config(resume.config.get("num_workers")))
        legs = resume.all_legs()
        if legs is not None:  # counters past their legs' batches are an error here, not in a worker
            world, workers = legs[-1].topology.split
            ElasticEpoch(
                source.sample_counts, legs, world_size=world, num_workers=workers, remainder=source.remainder
            )
        self._resume = resume
        self._clock.set(resume.epoch)

    # ------------------------------------------------------------------------------------------ iteration
    def iterate(self, source: Source) -> Iterator[Sample]:
        """This consumer's samples of the next epoch: a DataLoader worker's (or the main process's) iteration."""
        info = get_worker_info()
        c = self.consumer()
        epoch = self._clock.begin(None if info is None else info.seed - info.id)
        return self._start(source, c, epoch, (c.worker,)).stream(source, 0)

    def begin_threads(self, source: Source, num_threads: int) -> EpochStart:
        """Begin the next epoch for ``num_threads`` consumer threads at once (call from the training thread):
        what ``iterate`` does in each of ``num_threads`` DataLoader workers, a pending resume included (on
        another world size, thread count or batch size it continues elastically, as a DataLoader's does)."""
        c = self.consumer()
        epoch = self._clock.begin(None)  # a new iteration of this process's copy: advances like iter(ds)
        me = Consumer(c.rank, c.world_size, 0, num_threads)
        return self._start(source, me, epoch, tuple(range(num_threads)))

    def _start(self, source: Source, c: Consumer, epoch: int, workers: tuple[int, ...]) -> EpochStart:
        """How ``workers`` of ``c``'s rank (``c.num_workers`` in all) begin ``epoch``: fresh, the plain exact
        resume of a pending state, or its elastic continuation; a finished epoch moves the clock on."""
        roles, skips, consumed, elastic = list(workers), [0] * len(workers), 0, None
        resume = self._resume
        if resume is not None and resume.epoch == epoch:
            elastic = elastic_epoch(resume, c, first_counts=source.sample_counts, remainder=source.remainder)
            if elastic is not None and elastic.complete:
                epoch, elastic = self._clock.advance_past(epoch), None
            elif elastic is not None:
                consumed = resume.batches_consumed
            else:
                counts = source.sample_counts(c.world_size, c.num_workers)
                steps = [plan_for_worker(resume, counts, w) for w in workers]
                if steps[0].epoch_complete:
                    epoch = self._clock.advance_past(epoch)
                else:
                    roles, skips = [s.role for s in steps], [s.skip for s in steps]
                    consumed = resume.batches_consumed
        consumers = tuple(Consumer(c.rank, c.world_size, r, c.num_workers) for r in roles)
        return EpochStart(epoch, consumed, workers, consumers, tuple(skips), elastic)

    def epoch_batches(self, source: Source, num_threads: int, *, batch_size: int, drop_last: bool) -> int:
        """Batches this rank's ``num_threads`` consumers yield in one fresh epoch."""
        counts = source.sample_counts(self.consumer().world_size, num_threads)
        return sum(worker_batch_counts(counts, batch_size=batch_size, drop_last=drop_last))


class StreamDataset(IterableDataset):
    """The ``IterableDataset`` face of a ``Source``: iteration, epochs and resume go through ``stream``."""

    stream: Stream

    def __iter__(self) -> Iterator[Sample]:
        return self.stream.iterate(self)  # type: ignore[arg-type]  # subclasses are Sources

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (later iterations count up from it)."""
        self.stream.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use if ``set_epoch`` was called, else the last one started."""
        return self.stream.epoch

    def state_dict(
        self,
        *,
        batches_consumed: int,
        batch_size: int,
        epoch: int | None = None,
        num_workers: int | None = None,
        drop_last: bool = False,
    ) -> dict[str, Any]:
        """The resume state: the trainer's counters plus the configuration that must match on load.

        ``batch_size``, ``num_workers`` and ``drop_last`` are the DataLoader's.
        """
        stream = self.stream
        return state_to_save(
            stream.resume,
            epoch=stream.epoch if epoch is None else epoch,
            world_size=stream.consumer().world_size,
            config=self.config(num_workers),  # type: ignore[attr-defined]  # subclasses are Sources
            batches_consumed=batches_consumed,
            batch_size=batch_size,
            num_workers=num_workers,
            drop_last=drop_last,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next iteration continues epoch ``state['epoch']`` after ``batches_consumed`` batches,
        elastically when the world size or worker count differs (see ``resume/elastic.py``)."""
        self.stream.load_state_dict(self, state)  # type: ignore[arg-type]
