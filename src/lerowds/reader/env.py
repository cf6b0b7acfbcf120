"""Who am I: the consumer (rank, worker) as a value object, rank/worker split stages, accelerate traps."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, TypeVar

from lerowds.checks import check_int
from lerowds.errors import ConfigError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Consumer:
    """One reader consumer: DataLoader worker ``worker`` of ``num_workers`` on rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1
    local_rank: int | None = None  # for logs only; never used for the split

    def __post_init__(self) -> None:
        for name in ("rank", "world_size", "worker", "num_workers"):
            check_int(name, getattr(self, name))
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"need 0 <= rank < world_size, got rank={self.rank} world_size={self.world_size}"
            )
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ConfigError(
                f"need 0 <= worker < num_workers, got worker={self.worker} num_workers={self.num_workers}"
            )

    @property
    def index(self) -> int:
        """Position among all ``world_size * num_workers`` consumers (rank-major)."""
        return self.rank * self.num_workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.num_workers


def _env_int(environ: Mapping[str, str], name: str) -> int | None:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def _torch_rank_world() -> tuple[int, int] | None:
    import torch.distributed as dist  # imported here: ``lerowds.Consumer`` does not load torch

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return None


def _torch_worker() -> tuple[int, int]:
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def detect_consumer(
    rank: int | None = None, world_size: int | None = None, *, environ: Mapping[str, str] | None = None
) -> Consumer:
    """The calling process's consumer; explicit ``rank``/``world_size`` override detection.

    Rank and world size come from ``torch.distributed`` when initialized, else from ``RANK``/``WORLD_SIZE``
    (set by ``torchrun`` and ``accelerate launch``), else 0/1. The worker comes from
    ``torch.utils.data.get_worker_info()``, so call this inside the DataLoader worker (at iteration time).
    """
    env = os.environ if environ is None else environ
    detected = _torch_rank_world()
    source = "torch.distributed"
    if detected is None:
        env_rank, env_world = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")
        detected = (env_rank or 0, 1 if env_world is None else env_world)
        source = "RANK/WORLD_SIZE" if env_rank is not None or env_world is not None else "default"
    worker, num_workers = _torch_worker()
    consumer = Consumer(
        rank=detected[0] if rank is None else rank,
        world_size=detected[1] if world_size is None else world_size,
        worker=worker,
        num_workers=num_workers,
        local_rank=_env_int(env, "LOCAL_RANK"),
    )
    logger.debug("consumer %s (rank/world from %s)", consumer, "arguments" if rank is not None else source)
    return consumer


def split_by_rank(src: Iterable[T], consumer: Consumer | None = None) -> Iterator[T]:
    """Keep every ``world_size``-th item starting at ``rank`` (a webdataset-style stage, e.g. on shard URLs)."""
    c = detect_consumer() if consumer is None else consumer
    yield from islice(src, c.rank, None, c.world_size)


def split_by_worker(src: Iterable[T], consumer: Consumer | None = None) -> Iterator[T]:
    """Keep every ``num_workers``-th item starting at ``worker``; detection runs inside the worker."""
    c = detect_consumer() if consumer is None else consumer
    yield from islice(src, c.worker, None, c.num_workers)


def _mro_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in type(obj).__mro__}


def accelerate_trap(obj: Any) -> str | None:
    """Why ``obj`` (an ``Accelerator`` or what its ``prepare(dataloader)`` returned) breaks a rank-split stream.

    accelerate 1.x ``prepare_data_loader`` does one of two things with an ``IterableDataset``:
    ``dispatch_batches`` (default ``None`` = True for an IterableDataset) wraps it in
    ``DataLoaderDispatcher``, which iterates on rank 0 only and sends slices of its batches to the other
    ranks; with ``dispatch_batches=False`` and more than one process it wraps the dataset in
    ``IterableDatasetShard``, which keeps only every rank's 1/W of what the dataset yields. A lerowds
    dataset already yields only its rank's frames, so either way ranks see a fraction of the data.
    Returns None when neither applies.
    """
    if "DataLoaderDispatcher" in _mro_names(obj):
        processes = getattr(getattr(obj, "state", None), "num_processes", "?")
        return (
            f"accelerate's DataLoaderDispatcher (dispatch_batches, {processes} process(es)) reads the dataset "
            "on rank 0 only and sends slices of rank 0's batches to every rank: with more than one process "
            "the other ranks' frames are never read"
        )
    dataset = getattr(obj, "dataset", None)
    if "IterableDatasetShard" in _mro_names(dataset) and getattr(dataset, "num_processes", 1) > 1:
        return (
            f"accelerate wrapped the dataset in IterableDatasetShard(num_processes={dataset.num_processes}): "
            "each rank keeps 1/num_processes of its own, already rank-split, frames"
        )
    config = getattr(obj, "dataloader_config", None)
    if config is not None:  # an Accelerator: what prepare() would do
        dispatch = getattr(config, "dispatch_batches", None)
        num_processes = getattr(obj, "num_processes", 1)
        if dispatch is None or dispatch:
            return (
                f"Accelerator ({num_processes} process(es)) has dataloader_config.dispatch_batches={dispatch!r} "
                "(None means True for an IterableDataset): prepare() would read the dataset on rank 0 only"
            )
        if num_processes > 1:
            return (
                f"Accelerator runs {num_processes} processes with dispatch_batches=False: prepare() would "
                "wrap the dataset in IterableDatasetShard and keep 1/num_processes of each rank's frames"
            )
    return None


def warn_if_dispatching(obj: Any) -> bool:
    """Log a warning and return True when ``obj`` shows accelerate's dispatch/re-shard trap (see above)."""
    reason = accelerate_trap(obj)
    if reason is None:
        return False
    logger.warning(
        "%s. Do not pass the lerowds DataLoader to accelerator.prepare(); iterate it directly on every rank "
        "and move batches with .to(accelerator.device).",
        reason,
    )
    return True
