"""``lerowds plan``: its counts and shuffle figures equal a real DataLoader run; it reads the index only."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from loader_helpers import loader

from lerowds.cli import main
from lerowds.errors import ConfigError
from lerowds.format import EPISODES_FILE, INDEX_FILE, read_local_index
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.extras.dryrun import ideal_shuffle, plan_dataset

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers, 2 CPUs


def _episodes_of(batch: dict) -> list[int]:
    return np.asarray(batch["episode_index"]).reshape(-1).tolist()


def _direct_quality(batches: list[list[int]], batch_size: int) -> tuple[int, float, float]:
    """Full batches, mean distinct episodes, mean same-episode pair rate: the definitions, written plainly."""
    full = [b for b in batches if len(b) == batch_size]
    pairs = batch_size * (batch_size - 1) / 2
    distinct = sum(len(set(b)) for b in full) / len(full)
    rate = sum(sum(c * (c - 1) / 2 for c in Counter(b).values()) / pairs for b in full) / len(full)
    return len(full), distinct, rate


def _index_only_copy(root: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in (INDEX_FILE, EPISODES_FILE):
        shutil.copy(root / name, dest / name)
    return dest


@pytest.mark.parametrize(
    ("world", "workers", "batch", "pool", "remainder", "budget"),
    [
        (1, 2, 8, 3, "drop", None),
        (4, 3, 5, 2, "drop", None),  # 150 frames on 4 ranks: 2 dropped
        (7, 0, 4, 1, "repeat", None),  # 150 frames on 7 ranks: 4 repeated; no workers
        (2, 2, 6, 8, "drop", "13KB"),  # the byte budget (2 episodes of ~6 KB), not the count, bounds the pool
    ],
)
def test_counts_and_shuffle_quality_equal_a_real_run(
    tabular_converted, world, workers, batch, pool, remainder, budget
) -> None:
    seed = 3
    report = plan_dataset(
        tabular_converted,
        world_size=world,
        num_workers=workers,
        batch_size=batch,
        episode_pool_size=pool,
        pool_byte_budget=budget,
        seed=seed,
        remainder=remainder,
    )
    assert report.frames == 150 and report.episodes == 13
    assert report.frames_dropped == (150 % world if remainder == "drop" else 0)
    assert report.frames_repeated == (-150 % world if remainder == "repeat" else 0)
    for rank in range(world):
        ds = LeRobotWebDataset(
            tabular_converted,
            rank=rank,
            world_size=world,
            episode_pool_size=pool,
            pool_byte_budget=budget,
            seed=seed,
            remainder=remainder,
        )
        batches = [_episodes_of(b) for b in loader(ds, batch_size=batch, num_workers=workers)]
        what = f"rank {rank}"
        assert sum(map(len, batches)) == report.samples_per_rank, what
        assert len(batches) == report.batches_per_rank, what
        assert sum(len(b) == batch for b in batches) == report.full_batches_per_rank, what
        if rank == 0:
            full, distinct, rate = _direct_quality(batches, batch)
            q = report.shuffle_quality
            assert q is not None and q.pool_size == pool and q.batches == full
            assert q.distinct_episodes == pytest.approx(distinct, abs=1e-12)
            assert q.collision_rate == pytest.approx(rate, abs=1e-12)
    assert sum(report.samples_per_worker) == report.samples_per_rank
    assert len(report.batches_per_worker) == max(workers, 1)
    if budget is not None:  # it binds: fewer episodes held than without it
        unbounded = plan_dataset(
            tabular_converted,
            world_size=world,
            num_workers=workers,
            batch_size=batch,
            episode_pool_size=pool,
            seed=seed,
            remainder=remainder,
            pool_sweep=(),
        )
        assert report.memory.tabular_bytes < unbounded.memory.tabular_bytes


def test_a_bigger_pool_gives_more_distinct_episodes_per_batch(tabular_converted) -> None:
    report = plan_dataset(
        tabular_converted, world_size=1, num_workers=1, batch_size=8, seed=0, pool_sweep=(1, 2, 4, 13)
    )
    by_pool = {q.pool_size: q for q in report.pool_sweep}
    assert sorted(by_pool) == [1, 2, 4, 13, 64]
    distinct = [by_pool[p].distinct_episodes for p in (1, 2, 4, 13)]
    collisions = [by_pool[p].collision_rate for p in (1, 2, 4, 13)]
    assert distinct == sorted(distinct) and distinct[0] < distinct[-1], distinct
    assert collisions == sorted(collisions, reverse=True) and collisions[0] > collisions[-1], collisions
    assert by_pool[64].distinct_episodes == by_pool[13].distinct_episodes  # 13 segments: the whole share
    assert report.worker_share_segments == 13
    # the whole share in the pool is a uniform shuffle: near the ideal's expectation (18 batches, seed 0)
    assert abs(distinct[-1] - report.ideal.distinct_episodes) < 0.6


def _enumerated_quality(lengths: list[int], batch_size: int) -> tuple[float, float]:
    """Mean distinct episodes and same-episode pair rate over every possible batch (all combinations)."""
    frames = [e for e, n in enumerate(lengths) for _ in range(n)]
    batches = [[frames[i] for i in c] for c in combinations(range(len(frames)), batch_size)]
    _, distinct, rate = _direct_quality(batches, batch_size)
    return distinct, rate


@pytest.mark.parametrize(("lengths", "batch_size"), [([3, 4, 5], 4), ([1, 6, 2, 2], 3), ([5, 5], 5)])
def test_ideal_shuffle_equals_the_mean_over_every_possible_batch(lengths: list[int], batch_size: int) -> None:
    """The closed form against a plain enumeration of all C(N, B) batches (exact, no sampling)."""
    distinct, rate = _enumerated_quality(lengths, batch_size)
    ideal = ideal_shuffle(lengths, batch_size=batch_size)
    assert ideal.distinct_episodes == pytest.approx(distinct, rel=1e-12)
    assert ideal.collision_rate == pytest.approx(rate, rel=1e-12)


def test_ideal_shuffle_is_exact_on_simple_cases_and_agrees_with_a_seeded_simulation() -> None:
    single = ideal_shuffle([1] * 20, batch_size=8)
    assert single.distinct_episodes == pytest.approx(8) and single.collision_rate == 0
    whole = ideal_shuffle([50], batch_size=8)
    assert whole.distinct_episodes == pytest.approx(1) and whole.collision_rate == pytest.approx(1)
    assert ideal_shuffle([3, 4], batch_size=1).collision_rate is None

    lengths = [7, 1, 23, 12, 2, 19, 9, 3, 16, 11, 20, 13, 14]
    ideal = ideal_shuffle(lengths, batch_size=8)
    frames = np.repeat(np.arange(len(lengths)), lengths)
    rng = np.random.default_rng(0)
    batches = [rng.permutation(frames)[:8].tolist() for _ in range(20_000)]
    _, distinct, rate = _direct_quality(batches, 8)
    assert distinct == pytest.approx(ideal.distinct_episodes, abs=0.02)
    assert rate == pytest.approx(ideal.collision_rate, abs=0.003)


def test_pool_memory_from_the_episode_table(demo_converted) -> None:
    _, table = read_local_index(demo_converted)
    whole = plan_dataset(demo_converted, world_size=1, num_workers=0, batch_size=4, episode_pool_size=36)
    assert whole.memory.tabular_bytes == int(table["parquet_size"].sum())  # every episode held at once
    assert 0 < whole.memory.decoders <= 36 * 2 and whole.memory.decoders % 2 == 0
    per_episode = sum(whole.memory.bytes_per_decoder.values())
    assert whole.memory.decoder_bytes == whole.memory.decoders // 2 * per_episode
    assert whole.memory.consumer_bytes <= whole.memory.tabular_bytes + whole.memory.decoder_bytes
    assert whole.memory.rank_bytes == whole.memory.consumer_bytes == whole.memory.per_rank_bytes[0]

    one = plan_dataset(demo_converted, world_size=1, num_workers=0, batch_size=4, episode_pool_size=1)
    assert one.memory.tabular_bytes == int(table["parquet_size"].max())
    assert one.memory.decoders == 2
    assert one.memory.consumer_bytes == int(table["parquet_size"].max()) + per_episode

    two = plan_dataset(demo_converted, world_size=3, num_workers=2, batch_size=4, episode_pool_size=4)
    assert len(two.memory.per_rank_bytes) == 3 and max(two.memory.per_rank_bytes) == two.memory.rank_bytes
    assert two.memory.rank_bytes <= 2 * two.memory.consumer_bytes


def test_no_shard_is_read(demo_converted, tmp_path) -> None:
    copy = _index_only_copy(demo_converted, tmp_path / "index_only")
    kw = {"world_size": 3, "num_workers": 2, "batch_size": 16, "episode_pool_size": 5, "seed": 1}
    got, want = plan_dataset(copy, **kw), plan_dataset(demo_converted, **kw)
    assert got.to_dict() | {"dataset": ""} == want.to_dict() | {"dataset": ""}


def test_cli_prints_the_table_and_json(demo_converted, tmp_path, capsys) -> None:
    copy = _index_only_copy(demo_converted, tmp_path / "index_only")
    args = ["plan", str(copy), "--world-size", "2", "--num-workers", "2", "--batch-size", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for text in (
        "samples          697",
        "frames dropped   0 of 1394",
        "drop_last=False",
        "pool memory",
        "tabular",
    ):
        assert text in out
    assert "64 (this run, whole share)" in out and "ideal global shuffle" in out

    assert main([*args, "--episode-pool-size", "4", "--seed", "2", "--epoch", "1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["samples_per_rank"] == 697 and d["batches_per_rank"] == 44 and d["episode_pool_size"] == 4
    assert d["shuffle_quality"]["pool_size"] == 4 and d["epoch"] == 1 and d["seed"] == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--world-size", "151"], "world_size=151 ranks but only 150 frames"),
        (["--world-size", "1", "--batch-size", "0"], "batch_size must be an integer >= 1, got 0"),
        (["--world-size", "1", "--pool-byte-budget", "lots"], "bad pool_byte_budget 'lots'"),
    ],
)
def test_cli_bad_arguments_exit_2_with_the_named_error(tabular_converted, capsys, extra, message) -> None:
    args = ["plan", str(tabular_converted), "--num-workers", "2", "--batch-size", "4", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lerowds plan: error: ") and message in err
    with pytest.raises(ConfigError, match="world_size=151"):
        plan_dataset(tabular_converted, world_size=151, num_workers=1, batch_size=1)


def test_plot_without_matplotlib_says_how_to_install_it(
    tabular_converted, tmp_path, capsys, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    out = tmp_path / "plan.png"
    args = ["plan", str(tabular_converted), "--world-size", "2", "--num-workers", "1", "--batch-size", "4"]
    assert main([*args, "--plot", str(out)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err and not out.exists()


def test_plot_writes_an_image(tabular_converted, tmp_path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sub" / "plan.png"
    args = ["plan", str(tabular_converted), "--world-size", "3", "--num-workers", "2", "--batch-size", "4"]
    assert main([*args, "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["plan.png"]  # no temp file left behind
