"""``lerowds demo``: make a small LeRobot v3 dataset, convert it, stream it through a DataLoader, report.

The sample dataset is made here (``lerowds.testing.v3writer``), so the demo needs no network.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from lerowds.convert.run import ConvertOptions, convert
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.testing.v3writer import sample_spec, write_v3_dataset

logger = logging.getLogger(__name__)

DEMO_REPO_ID = "lerowds/demo"


@dataclass(frozen=True, slots=True)
class DemoReport:
    """What the demo did and saw."""

    source: Path
    output: Path
    episodes: int
    frames: int
    shards: int
    samples: int
    distinct_indices: int
    batches: int
    seconds_convert: float
    seconds_stream: float
    first_batch: dict[str, tuple[str, tuple[int, ...]]]
    first_tasks: tuple[str, ...]

    def lines(self) -> list[str]:
        out = [
            f"source      {self.source}  ({self.episodes} episodes, {self.frames} frames, LeRobot v3)",
            f"converted   {self.output}  ({self.shards} shards) in {self.seconds_convert:.1f} s",
            (
                f"streamed    {self.samples} samples in {self.batches} batches in {self.seconds_stream:.1f} s "
                f"({self.samples / max(self.seconds_stream, 1e-9):.0f} samples/s); "
                f"{self.distinct_indices} distinct frames: each exactly once"
            ),
            "first batch:",
        ]
        width = max(len(k) for k in self.first_batch)
        for key, (dtype, shape) in self.first_batch.items():
            out.append(f"  {key:<{width}}  {dtype:<14} {list(shape)}")
        out.append(f"  tasks: {list(self.first_tasks)[:3]} ...")
        return out


def _describe(batch: dict[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = (str(value.dtype).replace("torch.", ""), tuple(value.shape))
        else:
            out[key] = (type(value).__name__, (len(value),))
    return out


def run_demo(
    workdir: str | Path, *, num_workers: int = 2, batch_size: int = 16, progress: bool = True
) -> DemoReport:
    """Write the sample dataset under ``workdir``, convert it, stream one epoch, and check exactly-once."""
    workdir = Path(workdir)
    source, output = workdir / "source", workdir / "converted"
    spec = sample_spec("demo")
    if not (source / "meta" / "info.json").is_file():
        logger.info("writing the sample LeRobot v3 dataset to %s", source)
        write_v3_dataset(source, spec)
    t0 = time.perf_counter()
    result = convert(
        ConvertOptions(
            repo_id=DEMO_REPO_ID, root=source, output=output, shard_size=256 * 1024, progress=progress
        )
    )
    t_convert = time.perf_counter() - t0
    fps = spec.fps
    ds = LeRobotWebDataset(
        output,
        delta_timestamps={
            "observation.images.front": [-2 / fps, 0.0],
            "observation.state": [-1 / fps, 0.0],
            "action": [i / fps for i in range(8)],
        },
        episode_pool_size=8,
        seed=0,
    )
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    t0 = time.perf_counter()
    seen: Counter[int] = Counter()
    first: dict[str, Any] | None = None
    batches = 0
    for batch in loader:
        if first is None:
            first = batch
        seen.update(batch["index"].tolist())
        batches += 1
    t_stream = time.perf_counter() - t0
    total = ds.meta.total_frames
    if sorted(seen) != list(range(total)) or max(seen.values()) != 1:
        missing = total - len(seen)
        raise RuntimeError(
            f"demo: expected every one of {total} frames once, {missing} missing, repeats {seen.most_common(1)}"
        )
    if first is None:
        raise RuntimeError(f"demo: the DataLoader yielded no batch from {output}")
    return DemoReport(
        source=source,
        output=output,
        episodes=ds.meta.total_episodes,
        frames=total,
        shards=result.num_shards,
        samples=sum(seen.values()),
        distinct_indices=len(seen),
        batches=batches,
        seconds_convert=t_convert,
        seconds_stream=t_stream,
        first_batch=_describe(first),
        first_tasks=tuple(first["task"]),
    )
