"""The consumers of one epoch as threads of this process: thread ``w`` plays DataLoader worker ``w``.

``start_epoch(ds, num_threads)`` does for all threads at once what ``LeRobotWebDataset.__iter__`` (or
``MixedDataset.__iter__``) does inside each DataLoader worker: pick the epoch on the dataset's clock, apply
a pending resume (which original worker's stream each thread continues, after how many samples), and
return one stream factory per thread. A factory runs in its thread and iterates a *thread view* of the
dataset: a shallow copy with its own store (own file descriptors, own remote prefetcher, as a worker
process's unpickled copy has), so the threads share no mutable reader state.

Two things a worker process gets for free need care in threads:

* **Camera dtype.** When the dataset promises float32 cameras and has no transforms, the view builds uint8
  cameras (a quarter of the bytes to copy into the batch); ``Loader`` converts whole batches at the end.
* **Seeded transforms.** ``transform``/``image_transforms`` run under torch's *process-wide* RNG seeded per
  sample. Threads drawing from it concurrently would race, so the view builds samples without transforms
  (decoding stays parallel) and applies them afterwards one sample at a time under a lock, with the same
  seed and in the same order as ``consumer.consume`` does: identical augmentations.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.env import Consumer
from lerowds.reader.mix import MixedDataset
from lerowds.reader.resume.batches import worker_batch_counts
from lerowds.reader.resume.state import ResumeState, plan_for_worker
from lerowds.reader.sample.augment import sample_seed, seeded_rng

Sample = dict[str, Any]
StreamFactory = Callable[[], Iterator[Sample]]

_TRANSFORM_LOCK = threading.Lock()  # torch's CPU RNG is one per process: one seeded transform at a time


@dataclass(frozen=True, slots=True)
class EpochStart:
    """One epoch of ``num_threads`` thread consumers: what each thread iterates, and where the epoch starts."""

    epoch: int
    batches_consumed: int  # batches of this epoch already consumed before this iteration (a resume)
    total_batches: int  # batches of the whole epoch for this rank
    streams: tuple[StreamFactory, ...]


def camera_keys(ds: LeRobotWebDataset | MixedDataset) -> tuple[str, ...]:
    return tuple(ds.meta.camera_keys)


def _sources(ds: LeRobotWebDataset | MixedDataset) -> list[LeRobotWebDataset]:
    return list(ds.sources.values()) if isinstance(ds, MixedDataset) else [ds]


def travels_uint8(ds: LeRobotWebDataset | MixedDataset) -> bool:
    """True when cameras can be built as uint8 and converted to float32/255 per batch: the dataset promises
    float32 cameras and no transform sees them first."""
    return all(
        not s._spec.return_uint8 and s._spec.image_transforms is None and s.transform is None
        for s in _sources(ds)
    )


class _ThreadBoard:
    """A dataset's stats board as seen from thread ``slot``: each thread writes its own slot."""

    def __init__(self, board: Any, slot: int) -> None:
        self._board, self._slot = board, slot

    def slot(self, _worker: int) -> Any:
        return self._board.slot(self._slot)

    def format(self) -> str:
        return self._board.format()

    def snapshot(self) -> dict[str, float]:
        return self._board.snapshot()


def _augmented(stream: Iterator[Sample], ds: LeRobotWebDataset, epoch: int) -> Iterator[Sample]:
    """Apply ``ds``'s transforms to samples built without them, exactly as ``consume`` would have."""
    spec, transform = ds._spec, ds.transform
    windowed = set() if spec.windows is None else set(spec.windows.offsets)
    cameras = set(spec.camera_keys)
    for sample in stream:
        if "index" in sample:
            index = int(sample["index"])
        elif "frame_index" in sample:
            index = int(sample["frame_index"])
        else:
            raise ConfigError(
                f"{ds.source}: transforms under lerowds.Loader need an 'index' or 'frame_index' column to "
                "seed each sample's augmentation"
            )
        with _TRANSFORM_LOCK, seeded_rng(sample_seed(ds.seed, epoch, index)):
            if spec.image_transforms is not None:
                for key in [k for k in sample if k in cameras]:  # build order: the RNG draws match
                    t = sample[key] if key in windowed else sample[key].unsqueeze(0)
                    t = spec.image_transforms(t)
                    sample[key] = t if key in windowed else t[0]
            if transform is not None:
                sample = transform(sample)
        yield sample


def _source_view(ds: LeRobotWebDataset, thread: int, threads: int, uint8: bool) -> LeRobotWebDataset:
    view = copy.copy(ds)
    view._store = copy.copy(ds._store)  # own fds / prefetcher / pins (its __getstate__ drops them)
    if hasattr(view._store, "consumer_threads"):
        view._store.consumer_threads = threads  # a remote cache's limit is shared by the threads
    if ds._stats is not None:
        view._stats = _ThreadBoard(ds._stats, thread)  # type: ignore[assignment]
    spec = ds._spec
    if uint8 or spec.image_transforms is not None or ds.transform is not None:
        view._spec = dataclasses.replace(spec, image_transforms=None, return_uint8=spec.return_uint8 or uint8)
        view.transform = None
    if spec.image_transforms is not None or ds.transform is not None:
        raw = view._consumer_stream

        def stream(epoch: int, consumer: Consumer, skip: int = 0) -> Iterator[Sample]:
            return _augmented(raw(epoch, consumer, skip), ds, epoch)

        view._consumer_stream = stream  # type: ignore[method-assign]  # a mix calls it per source
    return view


def thread_view(
    ds: LeRobotWebDataset | MixedDataset, thread: int, threads: int, *, uint8: bool
) -> LeRobotWebDataset | MixedDataset:
    """A copy of ``ds`` for consumer thread ``thread`` of ``threads`` (see the module docstring)."""
    if isinstance(ds, MixedDataset):
        view = copy.copy(ds)
        view.sources = {name: _source_view(s, thread, threads, uint8) for name, s in ds.sources.items()}
        return view
    return _source_view(ds, thread, threads, uint8)


def _stream_of(view: LeRobotWebDataset | MixedDataset) -> Callable[[int, Consumer, int], Iterator[Sample]]:
    return view._mix_stream if isinstance(view, MixedDataset) else view._consumer_stream


def check_dataset(ds: Any) -> None:
    if not isinstance(ds, (LeRobotWebDataset, MixedDataset)):
        raise ConfigError(
            f"lerowds.Loader reads a LeRobotWebDataset or a lerowds.mix(...), got {type(ds).__name__}; "
            "use torch's DataLoader for other datasets"
        )


def epoch_batches(
    ds: LeRobotWebDataset | MixedDataset, num_threads: int, batch_size: int, drop_last: bool
) -> int:
    """Batches this rank's loader yields in one epoch."""
    c = ds._consumer()
    counts = ds._worker_counts(Consumer(c.rank, c.world_size, 0, num_threads))
    return sum(worker_batch_counts(counts, batch_size=batch_size, drop_last=drop_last))


def _refuse_elastic(resume: ResumeState, world_size: int, num_threads: int) -> None:
    """The Loader continues an epoch only on the world size and consumer count it was saved on."""
    legs = resume.all_legs()
    if legs is None:
        saved = resume.config.get("world_size")
        same = saved is None or saved == world_size
    else:
        same = len(legs) == 1 and legs[0].topology.world_size == world_size  # threads: plan_for_worker checks
    if not same:
        where = (
            "several setups"
            if legs and len(legs) > 1
            else f"{legs[0].topology}"
            if legs
            else f"world_size={saved}"
        )
        raise ResumeMismatchError(
            f"resume state was saved on {where}; this Loader runs world_size={world_size} with "
            f"num_threads={num_threads}: lerowds.Loader resumes on the same setup only; for an elastic resume "
            "iterate a DataLoader over the dataset (ds.load_state_dict), see docs/ELASTIC.md"
        )


def start_epoch(
    ds: LeRobotWebDataset | MixedDataset, num_threads: int, *, batch_size: int, drop_last: bool
) -> EpochStart:
    """Begin the dataset's next epoch for ``num_threads`` thread consumers (call from the training thread)."""
    check_dataset(ds)
    c = ds._consumer()
    epoch = ds._clock.begin(None)  # a new iteration of this process's copy: advances like a plain iter(ds)
    counts = ds._worker_counts(Consumer(c.rank, c.world_size, 0, num_threads))
    total = sum(worker_batch_counts(counts, batch_size=batch_size, drop_last=drop_last))
    roles, skips, consumed = list(range(num_threads)), [0] * num_threads, 0
    resume = ds._resume
    if resume is not None and resume.epoch == epoch:
        if resume.batch_size != batch_size or resume.drop_last != drop_last:
            raise ConfigError(
                f"resume state was saved with batch_size={resume.batch_size} drop_last={resume.drop_last}, "
                f"this loader has batch_size={batch_size} drop_last={drop_last}"
            )
        _refuse_elastic(resume, c.world_size, num_threads)
        steps = [plan_for_worker(resume, counts, w) for w in range(num_threads)]
        if steps[0].epoch_complete:
            epoch = ds._clock.advance_past(epoch)
        else:
            roles, skips = [s.role for s in steps], [s.skip for s in steps]
            consumed = resume.batches_consumed
    uint8 = travels_uint8(ds)

    def factory(thread: int) -> StreamFactory:
        me = Consumer(c.rank, c.world_size, roles[thread], num_threads)

        def open_stream() -> Iterator[Sample]:
            view = thread_view(ds, thread, num_threads, uint8=uint8)
            return _stream_of(view)(epoch, me, skips[thread])

        return open_stream

    return EpochStart(epoch, consumed, total, tuple(factory(w) for w in range(num_threads)))
