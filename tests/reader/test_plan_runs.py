"""``lerowds plan`` in run mode: its counts, shuffle figures and near-pair rate equal a real DataLoader run's."""

from __future__ import annotations

import numpy as np
import pytest
from loader_helpers import loader

from lerowds.cli import main
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.extras.dryrun import plan_dataset

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


def direct(batches: list[tuple[list[int], list[int]]], b: int, near: int) -> tuple[int, float, float, float]:
    """Full batches, distinct episodes, same-episode and near pair rates: the definitions, written plainly."""
    full = [x for x in batches if len(x[0]) == b]
    pairs = b * (b - 1) / 2
    distinct = same = close = 0.0
    for eps, frames in full:
        distinct += len(set(eps))
        both = [(i, j) for i in range(b) for j in range(i + 1, b) if eps[i] == eps[j]]
        same += len(both) / pairs
        close += sum(abs(frames[i] - frames[j]) <= near for i, j in both) / pairs
    n = len(full)
    return n, distinct / n, same / n, close / n


@pytest.mark.parametrize(
    ("world", "workers", "batch", "pool", "r", "s"),
    [(1, 2, 8, 3, 4, 16), (2, 3, 5, 2, 8, 0), (1, 0, 6, 4, 3, 40)],
)
def test_run_mode_counts_and_quality_equal_a_real_run(
    tabular_converted, world, workers, batch, pool, r, s
) -> None:
    report = plan_dataset(
        tabular_converted,
        world_size=world,
        num_workers=workers,
        batch_size=batch,
        episode_pool_size=pool,
        seed=3,
        run_length=r,
        shuffle_buffer=s,
        near_frames=2,
    )
    ds = LeRobotWebDataset(
        tabular_converted,
        rank=0,
        world_size=world,
        episode_pool_size=pool,
        seed=3,
        run_length=r,
        shuffle_buffer=s,
    )
    batches = [
        (np.asarray(x["episode_index"]).tolist(), np.asarray(x["frame_index"]).tolist())
        for x in loader(ds, batch_size=batch, num_workers=workers)
    ]
    assert sum(len(e) for e, _ in batches) == report.samples_per_rank
    assert len(batches) == report.batches_per_rank
    full, distinct, same, close = direct(batches, batch, 2)
    q = report.shuffle_quality
    assert q is not None and q.batches == full
    assert q.distinct_episodes == pytest.approx(distinct, abs=1e-12)
    assert q.collision_rate == pytest.approx(same, abs=1e-12)
    mine = [x for x in report.run_sweep if (x.run_length, x.shuffle_buffer) == (r, s)]
    assert len(mine) == 1 and mine[0].near_pair_rate == pytest.approx(close, abs=1e-12)
    assert {(1, 0), (8, 128)} <= {(x.run_length, x.shuffle_buffer) for x in report.run_sweep}
    per_sample = next(x for x in report.run_sweep if x.run_length == 1 and x.shuffle_buffer == 0)
    assert per_sample.buffer_bytes == 0


def test_cli_prints_the_run_sweep(tabular_converted, capsys) -> None:
    args = ["plan", str(tabular_converted), "--world-size", "1", "--num-workers", "2", "--batch-size", "8"]
    assert main([*args, "--run-length", "4", "--shuffle-buffer", "16"]) == 0
    out = capsys.readouterr().out
    assert "run_length=4 shuffle_buffer=16" in out and "run mode at episode_pool_size=64" in out
    assert "(this run)" in out
