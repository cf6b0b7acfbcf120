"""The dataset and the data loader of ``lerowds train``: what lerobot's ``make_dataset`` and its DataLoader do,
with ``LeRobotWebDataset`` as the dataset. Imports lerobot (after ``compat.require_lerobot()``)."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.utils.data import DataLoader

from lerowds.errors import ConfigError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.loader.core import Loader, transform_lock

logger = logging.getLogger(__name__)


def make_train_dataset(cfg: Any) -> LeRobotWebDataset:
    """The converted dataset with the policy's ``delta_timestamps``, as lerobot's ``make_dataset`` builds
    ``LeRobotDataset``: uint8 frames (made float on the device), ``dataset.episodes``, image transforms, and
    ImageNet stats for the cameras when ``dataset.use_imagenet_stats``."""
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.transforms import ImageTransforms
    from lerobot.utils.constants import IMAGENET_STATS

    src = cfg.lerowds
    common = {"cache_dir": src.cache_dir, "cache_limit": src.cache_limit}
    probe = LeRobotWebDataset(src.source, **common)  # reads the index only: fps and features for the deltas
    transforms = (
        ImageTransforms(cfg.dataset.image_transforms) if cfg.dataset.image_transforms.enable else None
    )
    ds = LeRobotWebDataset(
        src.source,
        delta_timestamps=resolve_delta_timestamps(cfg.trainable_config, probe.meta),
        episode_pool_size=src.episode_pool_size,
        shuffle=True,
        seed=0 if cfg.seed is None else cfg.seed,
        episodes=cfg.dataset.episodes,
        image_transforms=transforms,
        return_uint8=True,
        tolerance_s=cfg.tolerance_s,
        decoder=src.decoder,
        pool_byte_budget=src.pool_byte_budget,
        **common,
    )
    if cfg.dataset.use_imagenet_stats:
        for key in ds.meta.camera_keys:
            if key in ds.meta.depth_keys:
                continue
            for name, value in IMAGENET_STATS.items():
                ds.meta.stats.setdefault(key, {})[name] = torch.tensor(value, dtype=torch.float32)
    if not cfg.dataset.repo_id:
        cfg.dataset.repo_id = ds.meta.repo_id  # what lerobot records in train_config.json and model cards
    return ds


def consumers(cfg: Any) -> int:
    """The data consumers of one rank: ``lerowds.Loader`` threads, or DataLoader worker processes. The
    loader state saved with a checkpoint records this count (as ``num_workers``)."""
    if cfg.lerowds.loader == "threads":
        return cfg.lerowds.num_threads or max(1, cfg.num_workers)
    return cfg.num_workers


def make_loader(ds: LeRobotWebDataset, cfg: Any, device: torch.device) -> Loader | DataLoader:
    """The one place the loader is built: ``lerowds.Loader`` (``--lerowds.loader=threads``, the default) or
    torch's DataLoader with lerobot-train's options. Either yields, epoch after epoch, the same batches for
    the same consumer count. Never ``accelerator.prepare`` it: lerowds already splits the data by rank, and
    accelerate would dispatch or re-shard it."""
    if cfg.lerowds.loader == "threads":
        if ds.meta.has_language_columns:
            raise ConfigError(
                f"{ds.meta.repo_id} has language columns, which lerobot batches with its own "
                "lerobot_collate_fn; lerowds.Loader batches with torch's default_collate: use "
                "--lerowds.loader=dataloader"
            )
        cuda = device.type == "cuda"  # batches cross as uint8 from pinned memory, then become float there
        return Loader(
            ds,
            batch_size=cfg.batch_size,
            num_threads=consumers(cfg),
            drop_last=False,
            pin_memory=cuda,
            device=device if cuda else None,
        )
    from lerobot.utils.collate import lerobot_collate_fn

    workers = cfg.num_workers > 0
    return DataLoader(
        ds,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
        collate_fn=lerobot_collate_fn if ds.meta.has_language_columns else None,
        prefetch_factor=cfg.prefetch_factor if workers else None,
        persistent_workers=cfg.persistent_workers and workers,
        multiprocessing_context=cfg.dataloader_multiprocessing_context if workers else None,
    )


def rng_guard(ds: LeRobotWebDataset, cfg: Any) -> AbstractContextManager[Any]:
    """What the training thread holds while it saves, restores or (on a CPU device) draws from torch's CPU
    RNG. Loader threads run a dataset's seeded image transforms inside a ``fork_rng`` of that same RNG (one
    per process), under ``transform_lock()``: holding it keeps the training's random stream (and so the
    losses) independent of thread timing. Nothing to hold for the DataLoader (its workers are processes)
    or without transforms."""
    seeded = ds.spec.image_transforms is not None or ds.transform is not None
    return transform_lock() if cfg.lerowds.loader == "threads" and seeded else nullcontext()


def to_device(batch: dict[str, Any], device: torch.device, camera_keys: tuple[str, ...]) -> dict[str, Any]:
    """Move the batch to the device, then make uint8 camera frames float in [0, 1] there (as lerobot-train does,
    after its accelerate-prepared loader has moved them)."""
    non_blocking = device.type == "cuda"
    out = {
        k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }
    for key in camera_keys:
        if key in out and out[key].dtype == torch.uint8:
            out[key] = out[key].to(dtype=torch.float32) / 255.0
    return out
