"""Run by test_distributed.py under ``accelerate launch --num_processes=2 --cpu``: one json report per rank.

The recommended setup with accelerate: do NOT pass the lerowds DataLoader to ``accelerator.prepare()``.
``LeRobotWebDataset`` already yields only this rank's frames (rank and world size come from the process
group that ``Accelerator()`` initializes), and ``prepare()`` would either read on rank 0 only and
dispatch its batches (``dispatch_batches``, the default for an IterableDataset) or re-shard each rank's
share again (``IterableDatasetShard``). Iterate the plain DataLoader on every rank and move each batch
with ``.to(accelerator.device)`` yourself. The script also shows that ``warn_if_dispatching`` catches
the trap when someone does ``prepare`` it.

Usage: accelerate_script.py DATASET OUT_DIR
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from torch.utils.data import DataLoader

from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.env import accelerate_trap, warn_if_dispatching


def indices_direct(ds: LeRobotWebDataset) -> list[int]:
    return [int(sample["index"]) for sample in ds]


def indices_loader(ds: LeRobotWebDataset, device: torch.device) -> tuple[list[int], int]:
    """The recommended loop: a plain DataLoader (never prepared), batches moved to the device by hand."""
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    out, batches = [], 0
    for batch in loader:
        index = batch["index"].to(device)
        out += index.tolist()
        batches += 1
    return out, batches


def index_only(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Batches accelerate's dispatcher can concatenate (it refuses the ``task`` strings)."""
    return {"index": torch.stack([s["index"] for s in samples])}


def main() -> None:
    dataset, out_dir = sys.argv[1], Path(sys.argv[2])
    logging.basicConfig(level=logging.INFO)
    accelerator = Accelerator(cpu=True)
    import torch.distributed as dist

    rank = accelerator.process_index
    report: dict[str, object] = {
        "rank": rank,
        "num_processes": accelerator.num_processes,
        "dist_initialized": dist.is_available() and dist.is_initialized(),
        "env_world_size": os.environ.get("WORLD_SIZE"),
        "env_rank": os.environ.get("RANK"),
    }
    plain = LeRobotWebDataset(dataset, shuffle=False, episode_pool_size=8)
    report["len_plain"] = len(plain)
    report["plain"] = indices_direct(plain)
    shuffled = LeRobotWebDataset(dataset, shuffle=True, seed=3, episode_pool_size=8)
    report["len_shuffled"] = len(shuffled)
    report["shuffled"] = indices_direct(shuffled)
    loader_ds = LeRobotWebDataset(dataset, shuffle=True, seed=3, episode_pool_size=2)
    report["loader"], report["loader_batches"] = indices_loader(loader_ds, accelerator.device)

    # The trap: prepare() wraps the DataLoader; warn_if_dispatching must say so (and log why).
    trap_ds = LeRobotWebDataset(dataset, shuffle=False, episode_pool_size=8)
    prepared = accelerator.prepare(DataLoader(trap_ds, batch_size=4, collate_fn=index_only))
    report["trap_accelerator"] = accelerate_trap(accelerator)
    report["trap_prepared"] = accelerate_trap(prepared)
    report["warned_prepared"] = warn_if_dispatching(prepared)
    # ... and what it costs: the dispatched batches all come from rank 0's share of the frames.
    report["prepared"] = [i for batch in prepared for i in batch["index"].tolist()]
    # dispatch_batches=False instead re-shards each rank's (already rank-split) stream.
    resharding = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    resharded = resharding.prepare(DataLoader(trap_ds, batch_size=4, collate_fn=index_only))
    report["trap_resharded"] = accelerate_trap(resharded)
    report["warned_resharded"] = warn_if_dispatching(resharded)

    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main()
