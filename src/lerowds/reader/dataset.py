"""``LeRobotWebDataset``: an IterableDataset over converted shards, sample-for-sample like LeRobotDataset.

Data flows one way: index → (rank, worker) split of frames → pool order (pure math) → admitted episodes'
tabular rows → windows → frames decoded on exit → samples. Order is a pure function of
``(seed, epoch, rank, worker, counters)``; resume replays it on integers only.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import operator
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info

from lerowds.checks import check_bool, check_choice, check_float, check_int, check_size
from lerowds.errors import ConfigError
from lerowds.format.table import compact_int
from lerowds.reader.env import Consumer
from lerowds.reader.extras.stats import StatsBoard
from lerowds.reader.io.options import RemoteOptions
from lerowds.reader.io.store import EpisodeStore, open_store
from lerowds.reader.meta import DatasetMeta
from lerowds.reader.order.pool import ORDER_VERSION
from lerowds.reader.order.ranks import (
    Remainder,
    consumer_sample_count,
    rank_frame_count,
    rank_plan,
    worker_segments,
)
from lerowds.reader.order.runs import RunOrder
from lerowds.reader.pipeline import ConsumerConfig, consume
from lerowds.reader.sample.augment import DeferredTransforms, sample_seed
from lerowds.reader.sample.build import SampleSpec
from lerowds.reader.sample.rows import RowOf
from lerowds.reader.sample.windows import validate_delta_timestamps
from lerowds.reader.stream import Stream, StreamDataset

logger = logging.getLogger(__name__)


class LeRobotWebDataset(StreamDataset):
    """Stream a converted LeRobot dataset: episode pool shuffling, delta windows, decode-on-exit.

    Every setting after ``delta_timestamps`` is keyword-only; each is checked up front (a bool is not a
    count, a float not an integer) and a bad one is a ``ConfigError`` naming it (docs/DATASET.md).

    Args:
        source: a converted dataset (local directory).
        delta_timestamps: ``{key: [seconds, ...]}`` as in lerobot; windows with ``<key>_is_pad`` masks.
        episode_pool_size: whole episodes held per consumer (rank × DataLoader worker).
        shuffle, seed: order is a pure function of (seed, epoch, rank, worker).
        episodes: subset of episode indices (default: all).
        image_transforms: applied to every camera tensor (float32 CHW, or uint8 with ``return_uint8``).
        return_uint8: give camera frames as uint8 CHW instead of float32 in [0, 1].
        tolerance_s: tolerance for ``delta_timestamps`` and frame timestamps.
        decoder: "auto", "pyav" or "torchcodec".
        remainder: "drop" (default) or "repeat" frames so every rank yields the same number of samples.
        rank, world_size: override the detected distributed setup.
        decoder_cache_size: open video decoders each consumer keeps (least recently used closed first);
            default ``episode_pool_size`` × cameras, so every pooled episode's clips stay open.
        cache_dir, cache_limit: local download cache of a remote source (bytes, or e.g. "2GB").
        remote: timeouts, retries, minimum rate and prefetching of a remote source (``RemoteOptions``);
            default: ``RemoteOptions.from_env()`` (the ``LEROWDS_*`` variables).
        pool_byte_budget: optional bound on the bytes of the episodes in a consumer's pool (their tabular
            rows + clips, as stored), e.g. "512MB": admission waits for eviction; one larger episode
            still passes alone.
        transform: applied to each whole sample dict after it is built. ``transform`` and
            ``image_transforms`` run with torch's RNG seeded from (seed, epoch, index): a resumed run
            applies the same random augmentations (see ``sample_seed``).
        stats: keep cheap per-stage counters (fetch, decode, decoder cache, pool, samples/s), summed over
            DataLoader workers by ``ds.stats()``; ``stats_log_every_s`` also logs them periodically.
        verify_crc: check each episode's bytes against the CRC-32 in ``episodes.parquet`` when a process
            first admits it (a corrupt shard is a ``FormatError`` naming episode and shard); ``False`` skips
            it for local shards you have verified (remote downloads are always checked).
        run_length, shuffle_buffer: run mode (docs/ORDER.md): the pool draws runs of ``run_length``
            consecutive frames of one episode, decoded in one forward pass per camera, and a buffer of
            ``shuffle_buffer`` decoded samples emits them in a seeded order. The defaults (1, 0) are the
            per-sample order; every frame still comes exactly once per epoch and resume stays exact.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        delta_timestamps: Mapping[str, Sequence[float]] | None = None,
        *,
        episode_pool_size: int = 64,
        shuffle: bool = True,
        seed: int = 0,
        episodes: Sequence[int] | None = None,
        image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None,
        return_uint8: bool = False,
        tolerance_s: float = 1e-4,
        decoder: str = "auto",
        remainder: Remainder = "drop",
        rank: int | None = None,
        world_size: int | None = None,
        decoder_cache_size: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_limit: int | str | None = None,
        remote: RemoteOptions | None = None,
        pool_byte_budget: int | str | None = None,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        stats: bool = False,
        stats_log_every_s: float | None = None,
        verify_crc: bool = True,
        run_length: int = 1,
        shuffle_buffer: int = 0,
    ) -> None:
        super().__init__()
        self.run_length = check_int("run_length", run_length, 1)
        self.shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer)
        check_int("episode_pool_size", episode_pool_size, 1)
        check_int("seed", seed)
        check_choice("remainder", remainder, ("drop", "repeat"))
        check_choice("decoder", decoder, ("auto", "pyav", "torchcodec"))
        check_float("tolerance_s", tolerance_s, 0)
        flags = {"shuffle": shuffle, "return_uint8": return_uint8, "stats": stats, "verify_crc": verify_crc}
        for name, flag in flags.items():
            check_bool(name, flag)
        counts = {"rank": (rank, 0), "world_size": (world_size, 1)}
        counts["decoder_cache_size"] = (decoder_cache_size, 1)
        for name, (count, low) in counts.items():
            if count is not None:
                check_int(name, count, low)
        if cache_limit is not None:
            check_size("cache_limit", cache_limit)
        if stats_log_every_s is not None:
            check_float("stats_log_every_s", stats_log_every_s, 0)
        self.source = os.fspath(source)
        self._store: EpisodeStore = open_store(
            source, cache_dir=cache_dir, cache_limit=cache_limit, remote=remote, verify_crc=verify_crc
        )
        index, table = self._store.index, self._store.table
        self.meta = DatasetMeta.from_index(index)
        self.episode_pool_size = episode_pool_size
        self.pool_byte_budget = (
            None if pool_byte_budget is None else check_size("pool_byte_budget", pool_byte_budget)
        )
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.tolerance_s = tolerance_s
        self.decoder = decoder
        self.remainder: Remainder = remainder
        self.stream = Stream(rank, world_size)  # epoch clock, resume state, iteration (``stream.py``)
        self._rows = compact_int(self._select_rows(episodes, table["episode_index"]))
        every = episodes is None  # the table's own columns, not copies
        self._lengths = table["length"] if every else table["length"][self._rows]
        self._episode_ids = table["episode_index"] if every else table["episode_index"][self._rows]
        self.windows = validate_delta_timestamps(
            delta_timestamps, fps=index.fps, features=index.features, tolerance_s=tolerance_s
        )
        self.delta_timestamps = (
            None if delta_timestamps is None else {k: list(v) for k, v in delta_timestamps.items()}
        )
        self.spec = SampleSpec(
            video_keys=tuple(index.video_keys),
            image_keys=tuple(index.image_keys),
            tasks=index.tasks,
            windows=self.windows,
            return_uint8=return_uint8,
            image_transforms=image_transforms,
        )
        n_cams = max(1, len(index.video_keys))
        self._decoder_cache_size = decoder_cache_size or episode_pool_size * n_cams
        self.transform = transform
        self._stats = StatsBoard() if stats or stats_log_every_s else None
        self._stats_log_every_s = stats_log_every_s
        self._stats_slot: int | None = None  # None: the DataLoader worker's id (``thread_copy`` sets one)
        self._deferred: DeferredTransforms | None = None  # transforms applied after building (threads)

    @property
    def _row_of(self) -> RowOf:
        """Episode index -> table row (a view of the store's table: nothing per episode is pickled)."""
        return RowOf(self._store.table["episode_index"])

    # ------------------------------------------------------------------------------------------ config
    @staticmethod
    def _select_rows(episodes: Sequence[int] | None, all_ids: np.ndarray) -> np.ndarray:
        if episodes is None:
            return np.arange(len(all_ids), dtype=np.int64)
        wanted = np.asarray([_episode_index(e, episodes) for e in episodes], dtype=np.int64)
        if wanted.size == 0:
            raise ConfigError("episodes=[] selects nothing; pass None for all episodes")
        if len(np.unique(wanted)) != len(wanted):
            raise ConfigError(f"episodes= lists some episodes twice: {sorted(wanted.tolist())}")
        rows = np.searchsorted(all_ids, wanted)
        bad = [int(e) for e, r in zip(wanted, rows) if r >= len(all_ids) or all_ids[r] != e]
        if bad:
            raise ConfigError(f"episodes {bad} are not in this dataset (it has {len(all_ids)} episodes)")
        return rows.astype(np.int64)

    @property
    def num_frames(self) -> int:
        """Frames of the selected episodes."""
        return int(self._lengths.sum())

    @property
    def num_episodes(self) -> int:
        """Selected episodes (lerobot's ``LeRobotDataset.num_episodes``)."""
        return len(self._rows)

    def __len__(self) -> int:
        """Samples this rank yields in one epoch (the same on every rank)."""
        world = self.stream.consumer().world_size
        return rank_frame_count(self.num_frames, world_size=world, remainder=self.remainder)

    def loader(self, batch_size: int = 32, **kwargs: Any) -> Any:
        """``lerowds.Loader(self, batch_size, **kwargs)``: batches decoded by threads of this process."""
        from lerowds.reader.loader.core import Loader

        return Loader(self, batch_size, **kwargs)

    # ------------------------------------------------------------------------------------------ stream
    def config(self, num_workers: int | None = None) -> dict[str, Any]:
        """The configuration a resume state records and must match on load."""
        return {
            "kind": "dataset",
            "seed": self.seed,
            "world_size": self.stream.consumer().world_size,
            "num_workers": num_workers,
            "episode_pool_size": self.episode_pool_size,
            "pool_byte_budget": self.pool_byte_budget,
            "shuffle": self.shuffle,
            "remainder": self.remainder,
            "dataset": self.meta.fingerprint,
            "num_frames": self.num_frames,
            "episodes": hashlib.blake2b(self._episode_ids.astype("<i8").tobytes(), digest_size=8).hexdigest(),
            "order_version": ORDER_VERSION,
            "run_length": self.run_length,
            "shuffle_buffer": self.shuffle_buffer,
        }

    # ------------------------------------------------------------------------------------------ iteration
    def _segments(self, epoch: int, consumer: Consumer):
        plan = rank_plan(
            self._lengths,
            self._episode_ids,
            seed=self.seed,
            epoch=epoch,
            shuffle=self.shuffle,
            world_size=consumer.world_size,
            rank=consumer.rank,
            remainder=self.remainder,
        )
        if consumer.worker == 0 and (plan.dropped or plan.repeated):
            what = f"dropped {plan.dropped}" if plan.dropped else f"repeated {plan.repeated}"
            logger.info(
                "epoch %d: %s of %d frames so that each of %d ranks yields %d samples",
                epoch,
                what,
                plan.total_frames,
                consumer.world_size,
                plan.num_frames,
            )
        segs = worker_segments(plan.segments, num_workers=consumer.num_workers, worker=consumer.worker)
        if not segs:
            logger.warning(
                "rank %d worker %d of %d owns no frames this epoch (%d frames per rank): use fewer workers",
                consumer.rank,
                consumer.worker,
                consumer.num_workers,
                plan.num_frames,
            )
        return segs

    def sample_counts(self, world_size: int, num_workers: int) -> list[int]:
        """Samples each of ``num_workers`` consumers of a rank yields in an epoch on ``world_size`` ranks."""
        n, remainder = self.num_frames, self.remainder
        return [
            consumer_sample_count(
                n, world_size=world_size, num_workers=num_workers, worker=w, remainder=remainder
            )
            for w in range(num_workers)
        ]

    def consumer_stream(self, epoch: int, consumer: Consumer, skip: int = 0) -> Iterator[dict[str, Any]]:
        """The samples consumer ``consumer`` yields in ``epoch`` after its first ``skip`` (a pure replay)."""
        segments = self._segments(epoch, consumer)
        rows = self._row_of.rows(segments.episode)
        order = RunOrder(
            segments,
            run_length=self.run_length,
            shuffle_buffer=self.shuffle_buffer,
            pool_size=self.episode_pool_size,
            seed=self.seed,
            epoch=epoch,
            rank=consumer.rank,
            worker=consumer.worker,
            shuffle=self.shuffle,
            sizes=self._store.table["size"][rows] if self.pool_byte_budget is not None else None,
            byte_budget=self.pool_byte_budget,
        )
        order.seek(skip)  # integers only: no episode is read for the skipped part
        first = min(order.pool, default=len(segments))
        info = get_worker_info()
        self._store.prefetch(rows[first:].tolist(), workers=1 if info is None else info.num_workers)
        slot = self._stats_slot if self._stats_slot is not None else 0 if info is None else info.id
        samples = consume(
            order.events(),
            self._consumer_config(),
            epoch=epoch,
            stats=None if self._stats is None else self._stats.slot(slot),
            board=self._stats,
            log_every_s=self._stats_log_every_s if consumer.worker == 0 or info is None else None,
            buffer_keys=order.buffer_keys,
        )
        return samples if self._deferred is None else self._deferred.apply(samples, epoch)

    @property
    def plain_float_cameras(self) -> bool:
        """Cameras come out as float32 and no transform sees them: building them as uint8 and dividing by
        255 later gives the same values (``lerowds.Loader`` moves a quarter of the bytes so)."""
        return not self.spec.return_uint8 and self.spec.image_transforms is None and self.transform is None

    def thread_copy(
        self, thread: int, threads: int, *, uint8: bool, lock: threading.Lock
    ) -> LeRobotWebDataset:
        """A shallow copy for consumer thread ``thread`` of ``threads`` of this process (``lerowds.Loader``):
        its own store (file descriptors, prefetcher; a remote cache's limit shared by ``threads``), stats in
        slot ``thread``, cameras built as uint8 when ``uint8``, and its transforms applied after a sample is
        built, one sample at a time under ``lock`` (torch's RNG is one per process): the same augmentations."""
        view = copy.copy(self)
        view._store = copy.copy(self._store)  # own fds / prefetcher / pins (its __getstate__ drops them)
        if hasattr(view._store, "consumer_threads"):
            view._store.consumer_threads = threads
        view._stats_slot = thread
        seeded = self.spec.image_transforms is not None or self.transform is not None
        if uint8 or seeded:
            view.spec = dataclasses.replace(
                self.spec, image_transforms=None, return_uint8=self.spec.return_uint8 or uint8
            )
            view.transform = None
        if seeded:
            view._deferred = DeferredTransforms(
                self.spec, self.transform, seed=self.seed, lock=lock, where=self.source
            )
        return view

    def _consumer_config(self) -> ConsumerConfig:
        return ConsumerConfig(
            store=self._store,
            spec=self.spec,
            row_of=self._row_of,
            fps=self.meta.fps,
            decoder=self.decoder,
            tolerance_s=self.tolerance_s,
            decoder_cache_size=self._decoder_cache_size,
            seed=self.seed,
            transform=self.transform,
            where=self.source,
            run_length=self.run_length,
        )

    # ------------------------------------------------------------------------------------------ stats
    def stats(self) -> dict[str, float]:
        """Totals over this rank's consumers (DataLoader workers included); empty unless ``stats=True``."""
        return {} if self._stats is None else self._stats.snapshot()

    def remote_stats(self) -> dict[str, int]:
        """Download counters of a remote source (requests, retries, bytes, ...), summed over workers."""
        stats = getattr(self._store, "stats", None)
        if not callable(stats):
            return {}
        value = stats()
        return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else dict(value)

    def sample_seed(self, epoch: int, index: int) -> int:
        """The seed the transforms of sample ``index`` run under in ``epoch``."""
        return sample_seed(self.seed, epoch, index)


def _episode_index(value: Any, episodes: Any) -> int:
    """An ``episodes=`` item as an int; a float (1.5), bool (True) or string is an error, not episode 1."""
    try:
        if isinstance(value, (bool, np.bool_, str, bytes)):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise ConfigError(
            f"episodes= must list integer episode indices, got {value!r} (in {episodes!r})"
        ) from None
