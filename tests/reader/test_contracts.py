"""Every stateful stage of the reader under the two shared contracts of ``contracts.py``.

Exactly once: an epoch (a pass, for a mix source) yields each id once; ranks split it disjointly.
Save / restore: state saved at k (0, 1, middle, end - 1, end, inside the next epoch; every k for the pool
order) restores into a fresh stage that yields exactly the rest of the uninterrupted run.

Stages: ``LeRobotWebDataset`` (iterated directly, through DataLoader workers, on several explicit ranks,
with byte budget, without shuffle), the mix (``lerowds.mix``), one consumer's ``PoolOrder``, the
``lerowds.wds`` pipeline stages, ``lerowds.Loader`` (also ``ds.loader()``) and ``StatefulLoader``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds
from conftest import convert_to, tabular_spec
from contracts import (
    Counted,
    Pool,
    Replayed,
    SelfSaving,
    Stage,
    check_exactly_once,
    check_ranks_exactly_once,
    check_save_restore,
    flat_ids,
)
from torch.utils.data import DataLoader

import lerowds
import lerowds.wds
from lerowds import LeRobotWebDataset, Loader, StatefulLoader
from lerowds.format import read_local_index
from lerowds.reader.order import Segment

FRAMES = 150  # tabular_converted: 13 episodes of 1..23 frames
B_LENGTHS = [5, 17, 9, 4, 25]  # the mix's second source: 60 frames

pytestmark = pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")


@pytest.fixture(scope="module")
def paths(tabular_converted: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("contract_b")
    spec = dataclasses.replace(tabular_spec(B_LENGTHS), repo_id="lerowds/tabular_b")
    from lerowds.testing.v3writer import write_v3_dataset

    src = write_v3_dataset(base / "src", spec)
    b = convert_to(src, "lerowds/tabular_b", base / "out", shard_size=8 * 1024)
    return {"a": tabular_converted, "b": b}


Make = Callable[[dict[str, Path]], Callable[[], Stage]]


def ds(p: dict[str, Path], **kw: Any) -> LeRobotWebDataset:
    return LeRobotWebDataset(p["a"], **({"episode_pool_size": 3, "seed": 5} | kw))


def mixed(p: dict[str, Path], samples_per_epoch: int = 120, **kw: Any) -> Any:
    return lerowds.mix({"a": p["a"], "b": p["b"]}, [0.5, 0.5], samples_per_epoch=samples_per_epoch, **kw)


def wds_pipeline(p: dict[str, Path], pool: int = 4, seed: int = 3) -> wds.DataPipeline:
    index, _ = read_local_index(p["a"])
    return wds.DataPipeline(
        wds.SimpleShardList([str(p["a"] / s.name) for s in index.shards]),
        wds.tarfile_to_samples(),
        lerowds.wds.episodes(),
        lerowds.wds.episode_pool(pool, seed=seed),
        lerowds.wds.decode_frames(),
        wds.batched(16),
    )


TAB_SEGMENTS = [Segment(e, 0, n) for e, n in enumerate([7, 1, 23, 12, 2, 19, 9, 3, 16, 11, 20, 13, 14])]
POOL_KW = {"seed": 2, "epoch": 1, "rank": 1, "worker": 0, "shuffle": True}
SIZES = [1000 * n for n in [7, 1, 23, 12, 2, 19, 9, 3, 16, 11, 20, 13, 14]]


@dataclasses.dataclass(frozen=True)
class Case:
    make: Make  # paths -> a factory of fresh stages
    whole: bool = True  # one epoch is every frame of the universe once
    epochs: int = 2  # epochs of the reference run (the pool order and a wds pipeline have one)


W2 = {"num_workers": 2}
STAGES: dict[str, Case] = {
    # LeRobotWebDataset, saved with the trainer's counters (iterated directly, or through DataLoader workers)
    "dataset-direct": Case(lambda p: lambda: Counted(ds(p))),
    "dataset-direct-pool1": Case(lambda p: lambda: Counted(ds(p, episode_pool_size=1))),
    "dataset-direct-noshuffle": Case(lambda p: lambda: Counted(ds(p, shuffle=False))),
    "dataset-direct-budget": Case(lambda p: lambda: Counted(ds(p, pool_byte_budget=14000))),
    "dataset-w2-b7": Case(lambda p: lambda: Counted(ds(p, episode_pool_size=2), {"batch_size": 7} | W2)),
    # one rank's share (the ranks' split: test_ranks_split_each_epoch; a rank's share through DataLoader
    # workers, resumed from the trainer's counters: test_resume_exact.py's r2of4 and r1of4 cases)
    "dataset-rank2of3": Case(lambda p: lambda: Counted(ds(p, rank=2, world_size=3)), whole=False),
    "dataset-rank2of4-repeat": Case(
        lambda p: lambda: Counted(ds(p, rank=2, world_size=4, remainder="repeat")), whole=False
    ),
    # the mix, saved with the trainer's counters (its sources' passes: test_mix_each_source_pass_exactly_once)
    "mix-direct": Case(lambda p: lambda: Counted(mixed(p, episode_pool_size=3)), whole=False),
    "mix-w2-b7": Case(lambda p: lambda: Counted(mixed(p), {"batch_size": 7} | W2), whole=False),
    "mix-w2-b8-droplast": Case(
        lambda p: lambda: Counted(mixed(p), {"batch_size": 8, "drop_last": True} | W2), whole=False
    ),
    "mix-rank0of2": Case(lambda p: lambda: Counted(mixed(p, rank=0, world_size=2)), whole=False),
    # lerowds.Loader (threads) and StatefulLoader (a DataLoader): their own state_dict()
    "loader-t2-b8": Case(lambda p: lambda: SelfSaving(Loader(ds(p, episode_pool_size=2), 8, num_threads=2))),
    "loader-t2-b1": Case(lambda p: lambda: SelfSaving(Loader(ds(p, episode_pool_size=2), 1, num_threads=2))),
    "loader-t4-b32": Case(
        lambda p: lambda: SelfSaving(Loader(ds(p, episode_pool_size=2), 32, num_threads=4))
    ),
    "loader-t3-b4-droplast": Case(
        lambda p: lambda: SelfSaving(Loader(ds(p), 4, num_threads=3, drop_last=True)), whole=False
    ),
    "loader-rank1of2-t2-b6": Case(
        lambda p: lambda: SelfSaving(Loader(ds(p, rank=1, world_size=2), 6, num_threads=2)), whole=False
    ),
    "ds.loader-t1-b7": Case(lambda p: lambda: SelfSaving(ds(p, seed=7).loader(7, num_threads=1))),
    "loader-mix-t2": Case(lambda p: lambda: SelfSaving(Loader(mixed(p), 8, num_threads=2)), whole=False),
    "statefulloader-w2-b8": Case(
        lambda p: (
            lambda: SelfSaving(StatefulLoader(DataLoader(ds(p, episode_pool_size=64), batch_size=8, **W2)))
        )
    ),
    "statefulloader-w0-b5": Case(
        lambda p: lambda: SelfSaving(StatefulLoader(DataLoader(ds(p), batch_size=5)))
    ),
    "statefulloader-mix-w2": Case(
        lambda p: lambda: SelfSaving(StatefulLoader(DataLoader(mixed(p), batch_size=8, **W2))), whole=False
    ),
    # one consumer's pool order (one epoch; its state is the emit count)
    "pool-3": Case(lambda p: lambda: Pool(TAB_SEGMENTS, pool_size=3, **POOL_KW), epochs=1),
    "pool-1": Case(lambda p: lambda: Pool(TAB_SEGMENTS, pool_size=1, **POOL_KW), epochs=1),
    "pool-whole-share": Case(lambda p: lambda: Pool(TAB_SEGMENTS, pool_size=64, **POOL_KW), epochs=1),
    "pool-budget": Case(
        lambda p: lambda: Pool(TAB_SEGMENTS, pool_size=8, sizes=SIZES, byte_budget=30_000, **POOL_KW),
        epochs=1,
    ),
    "pool-noshuffle": Case(
        lambda p: lambda: Pool(TAB_SEGMENTS, pool_size=3, **(POOL_KW | {"shuffle": False})), epochs=1
    ),
    # the webdataset stages: no state of their own, a rebuilt pipeline replays
    "wds-pool4": Case(lambda p: lambda: Replayed(lambda: wds_pipeline(p)), epochs=1),
}
EVERY_K = {name for name in STAGES if name.startswith("pool")}  # cheap: every k of the epoch


def universe(name: str) -> list[Any]:
    if name.startswith("pool"):
        return [(s.episode, f) for s in TAB_SEGMENTS for f in range(s.start, s.stop)]
    return list(range(FRAMES))


@pytest.mark.parametrize("name", [n for n, case in STAGES.items() if case.whole])
def test_each_epoch_is_every_frame_exactly_once(paths: dict[str, Path], name: str) -> None:
    case = STAGES[name]
    stage = case.make(paths)()
    for epoch in range(case.epochs):
        check_exactly_once(stage.iterate(), universe(name), f"{name} epoch {epoch}")


@pytest.mark.parametrize("name", list(STAGES))
def test_save_at_k_restore_yields_the_rest(paths: dict[str, Path], name: str) -> None:
    case = STAGES[name]
    kw: dict[str, Any] = {"cuts": lambda e, total: range(total + 1)} if name in EVERY_K else {}
    check_save_restore(case.make(paths), epochs=case.epochs, what=name, **kw)


@pytest.mark.parametrize(("world", "remainder"), [(2, "drop"), (3, "drop"), (4, "drop"), (4, "repeat")])
def test_ranks_split_each_epoch(paths: dict[str, Path], world: int, remainder: str) -> None:
    """On ``world`` explicit ranks an epoch is the universe once (minus ``150 % world`` frames dropped, or
    plus the first frames again with "repeat"), for two epochs."""
    stages = [Counted(ds(paths, rank=r, world_size=world, remainder=remainder)) for r in range(world)]
    for epoch in range(2):
        runs = [list(s.iterate()) for s in stages]
        if remainder == "drop":
            check_ranks_exactly_once(
                runs, range(FRAMES), f"{world} ranks, epoch {epoch}", dropped=FRAMES % world
            )
        else:
            ids = [i for r in runs for i in flat_ids(r)]
            assert {len(r) for r in runs} == {-(-FRAMES // world)} and set(ids) == set(range(FRAMES))
            assert len(ids) - len(set(ids)) == world * -(-FRAMES // world) - FRAMES


@pytest.mark.parametrize("world", [1, 2, 3])
def test_mix_each_source_pass_exactly_once(paths: dict[str, Path], world: int) -> None:
    """A mix samples each source in passes: per rank, each complete pass is the rank's share of the source
    once; the ranks' first passes of a source are disjoint and cover it."""
    n_of = {"a": FRAMES, "b": sum(B_LENGTHS)}
    firsts: dict[str, list[list[int]]] = {"a": [], "b": []}
    for rank in range(world):
        mix = mixed(paths, 481, rank=rank, world_size=world, episode_pool_size=2)
        ids = flat_ids(Counted(mix).iterate())
        assert len(ids) == len(mix) == 481 // world  # every rank the same count
        for source, n in n_of.items():
            mine = [i for s, i in ids if s == source]
            share = n // world
            passes = [mine[i : i + share] for i in range(0, len(mine), share)]
            assert len(passes[0]) == share and len(passes) >= 2, f"{source}: {[len(p) for p in passes]}"
            for p, part in enumerate(passes[:-1] if len(passes[-1]) < share else passes):
                assert len(set(part)) == share, f"rank {rank} {source} pass {p} repeats a frame"
            firsts[source].append(passes[0])
    for source, n in n_of.items():
        check_ranks_exactly_once(firsts[source], range(n), f"{source}: first passes on {world} ranks")
