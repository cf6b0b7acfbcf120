"""``lerowds.Loader``: batches from consumer threads of this process, checkpointable as a torch Stateful.

Thread ``w`` is DataLoader worker ``w``: it owns the same frames in the same pool order, decodes (PyAV
releases the GIL) and writes each sample straight into a preallocated batch buffer (``buffers.py``). The
training thread takes batches round-robin over the threads, skipping threads whose stream has ended:
torch's DataLoader rule, so the batches equal ``DataLoader(ds, batch_size, num_workers=num_threads)``'s,
batch for batch, and the resume arithmetic of ``resume/`` applies as is.

Each iteration begins the dataset's next epoch for all threads at once (``Stream.begin_threads``: the
epoch, and a pending resume's continuation) and each thread iterates a *thread copy* of the dataset
(``Source.thread_copy``): its own store (file descriptors, remote prefetcher), as a worker process's
unpickled copy has, so the threads share no mutable reader state. ``transform``/``image_transforms`` run
under torch's *process-wide* RNG seeded per sample: the copies build samples without them and apply them
afterwards one sample at a time under one lock, with the same seeds: the DataLoader's augmentations.

Where cameras become float32: when the dataset promises float32 cameras and has no transforms, threads
build uint8 cameras. Without ``device`` each thread converts a sample's frames as it writes them into the
batch buffer (``uint8 -> float32, / 255``: the dataset's own values, no extra pass over the batch); with
``device`` the batch crosses to the device as uint8 (a quarter of the bytes) and the training thread
converts it there.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from lerowds.checks import check_bool, check_int
from lerowds.errors import ConfigError
from lerowds.reader.loader.buffers import BufferPool, BufferSet
from lerowds.reader.loader.stateful import Position
from lerowds.reader.stream import EpochStart, Sample

logger = logging.getLogger(__name__)

_POLL_S = 0.05
_JOIN_S = 10.0
_TRANSFORM_LOCK = threading.Lock()  # torch's CPU RNG is one per process: one seeded transform at a time


def transform_lock() -> threading.Lock:
    """The lock under which loader threads run seeded transforms, each inside a ``fork_rng`` of torch's CPU
    RNG. Another thread that draws from, saves or restores torch's CPU RNG while such a loader runs must hold
    it meanwhile, or each sees the other's RNG state (``lerowds train`` holds it around its training step)."""
    return _TRANSFORM_LOCK


class _Pending:
    """The event of a pinned batch not recorded yet: the user may still enqueue copies from it."""

    def query(self) -> bool:
        return False


class _Run:
    """One iteration's threads and queues; ``close()`` stops and joins them."""

    def __init__(
        self,
        streams: list[Callable[[], Iterator[Sample]]],
        pools: list[BufferPool],
        prefetch: int,
        drop_last: bool,
    ) -> None:
        self.queues: list[queue.Queue[tuple[int, BufferSet] | None]] = [
            queue.Queue(maxsize=prefetch) for _ in streams
        ]
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.active = list(range(len(streams)))
        self.pos = 0
        self.threads = [
            threading.Thread(
                target=self._work,
                args=(w, open_stream, pools[w], drop_last),
                name=f"lerowds-loader-{w}",
                daemon=True,
            )
            for w, open_stream in enumerate(streams)
        ]
        for t in self.threads:
            t.start()

    def _put(self, w: int, item: tuple[int, BufferSet] | None) -> bool:
        while not self.stop.is_set():
            try:
                self.queues[w].put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(
        self, w: int, open_stream: Callable[[], Iterator[Sample]], pool: BufferPool, drop_last: bool
    ) -> None:
        stream: Iterator[Sample] | None = None
        try:
            stream = open_stream()
            s: BufferSet | None = None
            for sample in stream:
                if self.stop.is_set():
                    return
                if s is None:
                    s = pool.acquire()
                s.put(sample)
                if s.full:
                    if not self._put(w, (w, s)):
                        return
                    s = None
            if s is not None and s.rows and not drop_last:
                if not self._put(w, (w, s)):
                    return
            elif s is not None:
                pool.release(s)
            self._put(w, None)
        except BaseException as e:  # noqa: BLE001 - handed to the training thread, which raises it
            if self.error is None:
                self.error = e
            self.stop.set()
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the consumer's finally: decoders closed, store downloads stopped

    def _get(self, w: int) -> tuple[int, BufferSet] | None:
        q = self.queues[w]
        while True:
            if self.error is not None:
                raise self.error
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if not self.threads[w].is_alive() and q.empty() and self.error is None:
                    raise RuntimeError(f"lerowds.Loader thread {w} ended without finishing its stream")

    def next_set(self) -> tuple[int, BufferSet] | None:
        """The next batch in DataLoader order (round-robin over threads, skipping ended ones); None at the end."""
        while self.active:
            self.pos %= len(self.active)
            w = self.active[self.pos]
            item = self._get(w)
            if item is None:
                del self.active[self.pos]
                continue
            self.pos += 1
            return item
        return None

    def close(self) -> None:
        self.stop.set()
        for q in self.queues:  # unblock nothing in particular: producers poll ``stop``; drop what is queued
            while not q.empty():
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(_JOIN_S)
        alive = [t.name for t in self.threads if t.is_alive()]
        if alive:
            logger.warning("lerowds.Loader threads %s did not stop within %.0f s", alive, _JOIN_S)


class Loader:
    """Batches of a ``LeRobotWebDataset`` (or ``lerowds.mix``) decoded by ``num_threads`` threads.

    ``for batch in Loader(ds, batch_size=32, num_threads=2):`` yields what ``DataLoader(ds, batch_size=32,
    num_workers=2)`` would: the same batches in the same order (dicts of tensors; ``task`` as a list of
    strings), a new epoch on every iteration. Each thread is one consumer with its own episode pool.

    Args:
        dataset: a ``LeRobotWebDataset`` or ``MixedDataset``.
        batch_size: samples per batch; each thread's last batch may be smaller unless ``drop_last``.
        num_threads: consumer threads (DataLoader workers): about one per core left for decoding.
        drop_last: drop each thread's last partial batch (as the DataLoader does per worker).
        pin_memory: batch buffers in pinned memory (default: when ``device`` is CUDA).
        device: where batches go (e.g. ``"cuda"``); float32 cameras are converted there from uint8.
        prefetch: finished batches each thread keeps ready (with N threads, N batches are ready ahead).

    Batches on the CPU are views of reused buffers; a buffer is refilled only once nothing refers to
    it any more, so keeping a batch (or a view of it) is safe. ``state_dict()`` / ``load_state_dict()``
    make the loader a torch ``Stateful``: a checkpoint taken after any batch resumes with the next one.
    One iteration at a time: a new ``iter()`` stops the previous one's threads. See docs/LOADER.md.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int = 32,
        *,
        num_threads: int = 2,
        drop_last: bool = False,
        pin_memory: bool | None = None,
        device: str | torch.device | None = None,
        prefetch: int = 1,
    ) -> None:
        self._position = Position(dataset)
        for name, value in (("batch_size", batch_size), ("num_threads", num_threads), ("prefetch", prefetch)):
            check_int(name, value, 1)
        self.dataset = dataset
        self.batch_size, self.num_threads, self.drop_last, self.prefetch = (
            batch_size,
            num_threads,
            check_bool("drop_last", drop_last),
            prefetch,
        )
        self.device = None if device is None else torch.device(device)
        cuda = self.device is not None and self.device.type == "cuda"
        self.pin_memory = cuda if pin_memory is None else check_bool("pin_memory", pin_memory)
        if self.pin_memory and not torch.cuda.is_available():
            raise ConfigError("pin_memory=True needs CUDA, and torch.cuda.is_available() is False")
        self._cameras = frozenset(dataset.meta.camera_keys)
        self._convert = dataset.plain_float_cameras  # cameras travel as uint8, become float32 per batch
        # float32 cameras travel as uint8: the threads convert them as they fill the buffers, or (with a
        # device) the training thread after the host-to-device copy. Per thread: ``prefetch`` sets queued,
        # one being filled, the user's current and previous batch.
        to_float = self._cameras if self._convert and self.device is None else frozenset()
        self._pools = [
            BufferPool(batch_size, pin_memory=self.pin_memory, capacity=prefetch + 3, to_float=to_float)
            for _ in range(num_threads)
        ]
        self._run: _Run | None = None
        self._divisor: torch.Tensor | None = None

    # ------------------------------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Batches of one epoch on this rank."""
        ds = self.dataset
        return ds.stream.epoch_batches(
            ds, self.num_threads, batch_size=self.batch_size, drop_last=self.drop_last
        )

    def buffer_bytes(self) -> int:
        """Bytes of the batch buffers held now (all threads' sets)."""
        return sum(p.nbytes() for p in self._pools)

    def buffer_sets_allocated(self) -> int:
        """Buffer sets allocated so far (a steady loop stops allocating after its first batches)."""
        return sum(p.allocated for p in self._pools)

    # ------------------------------------------------------------------------------------------ state
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (later iterations count up from it)."""
        self._position.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where the training stands: the epoch and the batches yielded in it, plus the configuration."""
        return self._position.state_dict(
            batch_size=self.batch_size, num_workers=self.num_threads, drop_last=self.drop_last
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The next iteration continues the saved epoch after the saved batch (also a DataLoader's state);
        on another world size, thread count or batch size elastically (docs/ELASTIC.md)."""
        self.close()
        self._position.load_state_dict(state)

    # ------------------------------------------------------------------------------------------ iteration
    def close(self) -> None:
        """Stop the current iteration's threads (also done when the iterator ends, breaks or is dropped)."""
        run, self._run = self._run, None
        if run is not None:
            run.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The next epoch's batches; threads start at the first ``next()`` (a generator never started
        holds none) and stop when it ends, breaks, fails or is dropped."""
        self.close()  # one iteration at a time, like a DataLoader's single iterator
        ds = self.dataset
        start = ds.stream.begin_threads(ds, self.num_threads)
        self._position.begin(start.epoch, start.batches_consumed)
        return self._batches(start)

    def _open(self, start: EpochStart, thread: int) -> Callable[[], Iterator[Sample]]:
        """Thread ``thread``'s stream of ``start``, opened in that thread on its own copy of the dataset."""
        uint8 = self._convert

        def open_stream() -> Iterator[Sample]:
            view = self.dataset.thread_copy(thread, self.num_threads, uint8=uint8, lock=_TRANSFORM_LOCK)
            return start.stream(view, thread)

        return open_stream

    def _batches(self, start: EpochStart) -> Iterator[dict[str, Any]]:
        self.close()
        for pool in self._pools:
            pool.reset()
        streams = [self._open(start, w) for w in range(self.num_threads)]
        run = _Run(streams, self._pools, self.prefetch, self.drop_last)
        self._run = run
        pending: list[BufferSet] = []  # pinned sets handed out, waiting for an event after the user's copies
        try:
            while True:
                if pending:
                    self._record(pending)
                item = run.next_set()
                if item is None:
                    return
                w, s = item
                batch = self._deliver(self._pools[w], s, pending)
                self._position.consumed += 1
                yield batch
        finally:
            run.close()
            if self._run is run:
                self._run = None

    def _record(self, pending: list[BufferSet]) -> None:
        event = torch.cuda.Event()
        event.record()  # after whatever the user enqueued on the current stream from those batches
        for s in pending:
            s.event = event
        pending.clear()

    def _deliver(self, pool: BufferPool, s: BufferSet, pending: list[BufferSet]) -> dict[str, Any]:
        """Hand buffer set ``s`` over as a batch: copied to ``device`` (cameras converted there), or as views."""
        batch = s.batch()
        if self.device is not None:
            out = {k: self._to_device(k, v) for k, v in batch.items()}
            event = None
            if self.device.type == "cuda":
                event = torch.cuda.Event()
                event.record()
            del batch
            pool.handed_out(s, event)
            return out
        self._handed(pool, s, pending)
        return batch

    def _handed(self, pool: BufferPool, s: BufferSet, pending: list[BufferSet]) -> None:
        if self.pin_memory:
            pool.handed_out(s, _Pending())
            pending.append(s)
        else:
            pool.handed_out(s)

    def _to_device(self, key: str, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        t = value.to(self.device, non_blocking=self.pin_memory)
        if self._convert and key in self._cameras:
            if self._divisor is None:
                # a device tensor, not the Python scalar 255.0: CUDA turns a scalar divisor into a multiply by
                # its reciprocal (off by one bit for some values); a tensor divisor divides exactly
                self._divisor = torch.tensor(255.0, dtype=torch.float32, device=self.device)
            t = torch.div(t, self._divisor)
        return t
