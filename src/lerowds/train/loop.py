"""lerobot's training pipeline with a lerowds dataset: lerobot's policy, processors, optimizer and scheduler,
``update_policy``, checkpoints, logging and wandb, called as lerobot-train 0.6 calls them.

The loop itself is ours (about 40 lines) because lerobot-train's ``train()`` builds its dataset and
DataLoader inside itself, hands the DataLoader to ``accelerator.prepare`` (which would dispatch or re-shard an
already rank-split stream) and has no place for a streaming dataset's resume state. Imports lerobot (after
``compat.require_lerobot()``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import torch
from lerobot.common.train_utils import (
    get_step_checkpoint_dir,
    load_training_state,
    load_training_step,
    save_checkpoint,
    should_save_checkpoint,
    update_last_checkpoint,
)
from lerobot.common.wandb_utils import WandBLogger
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.policies import make_policy, make_pre_post_processors
from lerobot.scripts.lerobot_train import update_policy
from lerobot.utils.constants import TRAINING_STATE_DIR
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import init_logging

from lerowds.train.data import consumers, make_loader, make_train_dataset, rng_guard, to_device
from lerowds.train.position import LoaderPosition, load_loader_state, positioned_batches, save_loader_state

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What ``on_step`` sees after each update: the step number, the batch as loaded, the loss."""

    step: int
    position: LoaderPosition
    batch: dict[str, Any]
    loss: float


def make_accelerator(cfg: Any) -> Any:
    """An Accelerator set up as lerobot-train 0.6 sets up its own (scheduler stepped by us, DDP with unused
    parameters, mixed precision from the policy's dtype or use_amp, CPU when the policy's device is cpu)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    policy = cfg.policy
    mixed = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}.get(getattr(policy, "dtype", None))
    if not hasattr(policy, "dtype") and getattr(policy, "use_amp", False):
        autocast = torch.get_autocast_dtype(torch.device(policy.device).type)
        mixed = {torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast]
    return Accelerator(
        step_scheduler_with_optimizer=False,
        mixed_precision=mixed,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=policy.device == "cpu",
    )


def make_processors(cfg: Any, policy: Any, stats: Any, device: torch.device) -> tuple[Any, Any]:
    """lerobot-train's processor setup: dataset stats for a fresh policy; a pretrained (or resumed) policy's
    saved processors, with the device, features and (unless resuming) stats overridden as lerobot does."""
    path = cfg.policy.pretrained_path
    kwargs: dict[str, Any] = {}
    if not path or not cfg.resume:
        kwargs["dataset_stats"] = stats
    if path is not None:
        features = {**policy.config.input_features, **policy.config.output_features}
        pre = {
            "device_processor": {"device": device.type},
            "normalizer_processor": {"features": features, "norm_map": policy.config.normalization_mapping},
            "rename_observations_processor": {"rename_map": cfg.rename_map},
        }
        post = {
            "unnormalizer_processor": {
                "features": policy.config.output_features,
                "norm_map": policy.config.normalization_mapping,
            }
        }
        if not cfg.resume:
            pre["normalizer_processor"]["stats"] = stats
            post["unnormalizer_processor"]["stats"] = stats
        kwargs.update(preprocessor_overrides=pre, postprocessor_overrides=post)
    return make_pre_post_processors(
        policy_cfg=cfg.policy,
        pretrained_path=path,
        pretrained_revision=getattr(cfg.policy, "pretrained_revision", None),
        **kwargs,
    )


def train(cfg: Any, on_step: Callable[[StepRecord], None] | None = None) -> None:
    """Run lerobot's training of ``cfg.policy`` on ``cfg.lerowds.source`` (``cfg`` validated)."""
    accelerator = make_accelerator(cfg)
    init_logging(accelerator=accelerator)
    main = accelerator.is_main_process
    if cfg.seed is not None:
        set_seed(cfg.seed, accelerator=accelerator)
    device = accelerator.device

    ds = make_train_dataset(cfg)  # every rank reads its own share: no download-then-barrier needed
    wandb = WandBLogger(cfg) if cfg.wandb.enable and cfg.wandb.project and main else None
    policy = make_policy(cfg=cfg.policy, ds_meta=ds.meta, rename_map=cfg.rename_map)
    pre, post = make_processors(cfg, policy, ds.meta.stats, device)
    optimizer, scheduler = make_optimizer_and_scheduler(cfg, policy)

    start = LoaderPosition()
    if cfg.resume:  # the data position first: it must agree with lerobot's step
        state_dir = cfg.checkpoint_path / TRAINING_STATE_DIR
        start = load_loader_state(state_dir, ds, step=load_training_step(state_dir))
    loader = make_loader(ds, cfg, device)
    try:
        _run(cfg, accelerator, ds, loader, start, policy, pre, post, optimizer, scheduler, wandb, on_step)
    finally:
        close = getattr(loader, "close", None)  # lerowds.Loader: stop its threads
        if close is not None:
            close()


def _run(
    cfg: Any,
    accelerator: Any,
    ds: Any,
    loader: Any,
    start: LoaderPosition,
    policy: Any,
    pre: Any,
    post: Any,
    optimizer: Any,
    scheduler: Any,
    wandb: Any,
    on_step: Callable[[StepRecord], None] | None,
) -> None:
    main, device, step = accelerator.is_main_process, accelerator.device, 0
    guard = rng_guard(ds, cfg)  # held while the training thread uses torch's CPU RNG (see rng_guard)
    step_guard = guard if device.type == "cpu" else nullcontext()
    batches = positioned_batches(loader, ds, start)
    # iter(DataLoader) draws from torch's RNG: do it before the checkpoint's RNG state is restored
    first = next(batches)
    if cfg.resume:
        with guard:
            step, optimizer, scheduler = load_training_state(cfg.checkpoint_path, optimizer, scheduler)
        logger.info("resuming at step %d, epoch %d after %d batches", step, start.epoch, start.batches)
    policy, optimizer, scheduler = accelerator.prepare(policy, optimizer, scheduler)  # not the loader

    meters = {
        "loss": AverageMeter("loss", ":.3f", reduction="mean"),
        "grad_norm": AverageMeter("grdn", ":.3f"),
        "lr": AverageMeter("lr", ":0.1e"),
        "update_s": AverageMeter("updt_s", ":.3f", reduction="max"),
        "dataloading_s": AverageMeter("data_s", ":.3f", reduction="max"),
    }
    tracker = MetricsTracker(
        cfg.batch_size, ds.num_frames, ds.num_episodes, meters, initial_step=step, accelerator=accelerator
    )

    def checkpoint(step: int, position: LoaderPosition) -> None:
        """lerobot's checkpoint, plus the loader state in its training_state/; ``last`` moves only after both."""
        checkpoint_dir = get_step_checkpoint_dir(cfg.output_dir, cfg.steps, step)
        logger.info("checkpoint after step %d: %s", step, checkpoint_dir)
        save_checkpoint(
            checkpoint_dir=checkpoint_dir,
            step=step,
            cfg=cfg,
            policy=accelerator.unwrap_model(policy),
            optimizer=optimizer,
            scheduler=scheduler,
            preprocessor=pre,
            postprocessor=post,
            num_processes=accelerator.num_processes,
            batch_size=cfg.batch_size,
        )
        save_loader_state(
            checkpoint_dir / TRAINING_STATE_DIR,
            ds,
            position,
            step=step,
            batch_size=cfg.batch_size,
            num_workers=consumers(cfg),
            loader=cfg.lerowds.loader,
        )
        update_last_checkpoint(checkpoint_dir)
        if wandb:
            wandb.log_policy(checkpoint_dir)

    stream = islice(chain([first], batches), max(0, cfg.steps - step))
    while True:
        t0 = time.perf_counter()
        item = next(stream, None)
        if item is None:
            break
        position, raw = item
        batch = pre(to_device(raw, device, ds.meta.camera_keys))
        tracker.dataloading_s = time.perf_counter() - t0
        with step_guard:
            tracker, _ = update_policy(
                tracker,
                policy,
                batch,
                optimizer,
                cfg.optimizer.grad_clip_norm,
                accelerator=accelerator,
                lr_scheduler=scheduler,
            )
        step += 1
        tracker.step()
        if on_step is not None:
            on_step(StepRecord(step, position, raw, float(tracker.loss.val)))
        if cfg.log_freq > 0 and step % cfg.log_freq == 0:
            tracker.reduce_across_ranks()
            if main:
                logger.info(tracker)
                if wandb:
                    wandb.log_dict(tracker.to_dict(), step)
            tracker.reset_averages()
        if cfg.save_checkpoint and should_save_checkpoint(step, cfg.save_freq, cfg.steps):
            if main:
                with guard:  # lerobot saves torch's RNG state in it
                    checkpoint(step, position)
            accelerator.wait_for_everyone()
    accelerator.wait_for_everyone()
    accelerator.end_training()
