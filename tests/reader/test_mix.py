"""Weighted mixing: draws, proportions, per-source exactly-once per pass, exact resume, config errors, ranks."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import convert_to, tabular_spec
from contracts import Counted, check_save_restore
from httpserver import LoopbackServer
from hypothesis import given, settings
from hypothesis import strategies as st
from loader_helpers import assert_same_batches, loader, numpy_collate

import lerowds
from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.env import Consumer
from lerowds.reader.mix import PASS_STRIDE, MixedDataset, mix
from lerowds.reader.order.mix_draws import SourceDraws, SourcePosition, interleave, source_positions
from lerowds.testing.v3writer import write_v3_dataset

B_LENGTHS = [5, 17, 9, 4, 25]  # 60 frames


def _tabular(base: Path, repo: str, lengths: list[int], **kw: Any) -> Path:
    spec = tabular_spec(lengths, fps=kw.pop("fps", 15))
    spec = dataclasses.replace(spec, repo_id=repo, **kw)
    src = write_v3_dataset(base / "src", spec)
    return convert_to(src, repo, base / "out", shard_size=8 * 1024)


@pytest.fixture(scope="module")
def tabular_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tabular(tmp_path_factory.mktemp("mix_b"), "lerowds/tabular_b", B_LENGTHS)


@pytest.fixture(scope="module")
def tabular_fps30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tabular(tmp_path_factory.mktemp("mix_fps30"), "lerowds/tabular_fps30", B_LENGTHS, fps=30)


@pytest.fixture(scope="module")
def tabular_extra(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tabular(
        tmp_path_factory.mktemp("mix_extra"), "lerowds/tabular_extra", B_LENGTHS, extra_features=True
    )


def keys(samples: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(s["source"], int(s["index"])) for s in samples]


# ---- pure parts ---------------------------------------------------------------------------------------
def test_draws_do_not_depend_on_block_sizes_and_counts_match() -> None:
    def draws() -> SourceDraws:
        return SourceDraws([0.2, 0.0, 0.5, 0.3], seed=3, epoch=2, rank=1, worker=0)

    whole = draws().take(10_000)
    d = draws()
    pieces = np.concatenate([d.take(n) for n in (1, 999, 4096, 4904)])
    assert np.array_equal(whole, pieces)
    assert np.array_equal(list(draws().stream(10_000)), whole)
    assert np.array_equal(draws().counts(10_000), np.bincount(whole, minlength=4))
    assert not (whole == 1).any(), "a zero weight is never drawn"
    # the first 16 draws of epochs 2 and 3, pinned (ORDER_VERSION 2)
    assert whole[:16].tolist() == [2, 3, 3, 2, 2, 2, 2, 2, 3, 3, 3, 2, 0, 2, 2, 3]
    epoch3 = SourceDraws([0.2, 0.0, 0.5, 0.3], seed=3, epoch=3, rank=1, worker=0).take(16)
    assert epoch3.tolist() == [3, 0, 0, 2, 0, 2, 2, 2, 3, 3, 2, 0, 0, 2, 2, 3]


@pytest.mark.parametrize("weights", [(0.7, 0.3), (0.6, 0.3, 0.1), (1.0, 2.0, 3.0, 4.0)])
def test_draw_proportions_within_five_sigma(weights: tuple[float, ...]) -> None:
    n = 200_000
    counts = SourceDraws(weights, seed=0, epoch=0, rank=0, worker=0).counts(n)
    p = np.asarray(weights) / sum(weights)
    bound = 5 * np.sqrt(n * p * (1 - p))
    assert (np.abs(counts - n * p) <= bound).all(), f"counts {counts} vs expected {n * p} ± {bound}"


@settings(max_examples=200, deadline=None)
@given(
    per_pass=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    data=st.data(),
)
def test_interleave_resumed_from_counts_continues_exactly(per_pass: list[int], data: st.DataObject) -> None:
    """Resume = counts of the skipped choices -> (pass, skip) per source; the rest is the same stream."""
    choices = data.draw(st.lists(st.integers(0, len(per_pass) - 1), max_size=60))
    k = data.draw(st.integers(0, len(choices)))

    def open_pass(s: int, p: int, skip: int):
        return iter([(s, p, i) for i in range(per_pass[s])][skip:])

    full = [item for _, item in interleave(choices, open_pass, [SourcePosition(0, 0)] * len(per_pass))]
    counts = np.bincount(np.asarray(choices[:k], dtype=np.int64), minlength=len(per_pass)).tolist()
    rest = [item for _, item in interleave(choices[k:], open_pass, source_positions(counts, per_pass))]
    assert rest == full[k:]
    for s, n in enumerate(per_pass):  # each pass of a source is its items once, in order
        mine = [(p, i) for (src, p, i) in full if src == s]
        assert mine == [(j // n, j % n) for j in range(len(mine))]


# ---- the dataset: order ---------------------------------------------------------------------------------
def test_dataset_proportions_within_five_sigma(tabular_converted: Path, tabular_b: Path) -> None:
    n = 6000
    ds = mix({"a": tabular_converted, "b": tabular_b}, {"a": 0.7, "b": 0.3}, samples_per_epoch=n)
    got = Counter(s["source"] for s in ds)
    assert sum(got.values()) == n == len(ds)
    for name, p in ds.weights.items():
        assert abs(got[name] - n * p) <= 5 * math.sqrt(n * p * (1 - p)), (got, ds.weights)


def test_each_source_exactly_once_per_pass(tabular_converted: Path, tabular_b: Path) -> None:
    """One consumer, two mix epochs: each source's samples are its own passes e*PASS_STRIDE + p, in order."""
    ds = mix({"a": tabular_converted, "b": tabular_b}, [0.5, 0.5], samples_per_epoch=1500)
    runs = [list(ds) for _ in range(2)]
    consumer = Consumer()
    first_two = {  # the first 10 samples of each source's passes 0 and 1 in mix epoch 0 (pinned)
        "a": [[6, 47, 36, 126, 118, 98, 144, 139, 13, 2], [133, 135, 82, 9, 59, 13, 0, 48, 52, 2]],
        "b": [[10, 46, 26, 34, 2, 36, 37, 30, 44, 56], [20, 31, 59, 0, 2, 53, 14, 24, 8, 11]],
    }
    for epoch, samples in enumerate(runs):
        for name, src in ds.sources.items():
            got = [int(s["index"]) for s in samples if s["source"] == name]
            n = src.num_frames
            passes = [got[i : i + n] for i in range(0, len(got), n)]
            assert len(passes) >= 3, f"{name}: only {len(passes)} passes"
            for p, part in enumerate(passes):
                want = [int(s["index"]) for s in src.consumer_stream(epoch * PASS_STRIDE + p, consumer)]
                assert part == want[: len(part)], f"{name} epoch {epoch} pass {p}"
                if len(part) == n:
                    assert sorted(part) == list(range(n)), f"{name} pass {p} is not a permutation"
            if epoch == 0:  # pinned (ORDER_VERSION 2): the next pass is another order
                assert [passes[0][:10], passes[1][:10]] == first_two[name], name


def test_determinism_epochs_and_seeds(tabular_converted: Path, tabular_b: Path) -> None:
    def make(seed: int = 0) -> MixedDataset:
        return mix({"a": tabular_converted, "b": tabular_b}, seed=seed, samples_per_epoch=400)

    # the first 16 draws of mix epochs 0 and 1 and of seed 1 as "<source><index>", pinned (ORDER_VERSION 2)
    first_e0 = "a6 a47 b10 a36 a126 a118 a98 a144 b46 a139 a13 a2 b26 a19 a104 a88"
    first_e1 = "a11 b3 a64 b43 a110 a140 b27 b34 a131 a67 a103 a38 a144 a60 a65 a34"
    first_seed1 = "a59 a9 a61 a81 a90 a100 a47 b18 b50 a37 a117 b27 b12 a139 a28 a42"

    def first16(run: list[tuple[str, int]]) -> str:
        return " ".join(f"{s}{i}" for s, i in run[:16])

    ds = make()
    e0, e1 = keys(list(ds)), keys(list(ds))
    assert first16(e0) == first_e0 and first16(e1) == first_e1 and len(e0) == len(e1) == 400
    assert e0 == keys(list(make()))
    later = make()
    later.set_epoch(1)
    assert keys(list(later)) == e1
    assert first16(keys(list(make(seed=1)))) == first_seed1
    assert ds.weights == pytest.approx({"a": 150 / 210, "b": 60 / 210}), "default: proportional to frames"


# ---- exact resume through a real DataLoader (the tabular cases: test_contracts.py) -------------------------
def test_exact_resume_with_video_and_windows(video_small_converted: Path, seed8_converted: Path) -> None:
    delta = {"observation.images.front": [-1 / 15, 0.0], "action": [0.0, 1 / 15, 2 / 15]}

    def make() -> MixedDataset:
        return lerowds.mix(
            {"small": video_small_converted, "seed8": seed8_converted},
            {"small": 0.3, "seed8": 0.7},
            samples_per_epoch=200,
            delta_timestamps=delta,
            episode_pool_size=2,
        )

    ds = make()
    sample = next(iter(ds))
    assert sample["observation.images.front"].shape == (2, 3, 32, 32)
    assert sample["action_is_pad"].shape == (3,)
    kw = {"batch_size": 8, "num_workers": 2, "collate_fn": numpy_collate}
    check_save_restore(
        lambda: Counted(make(), kw, item=lambda batch: batch),  # whole batches, compared value for value
        cuts=lambda per_epoch, total: [3, per_epoch - 1],
        compare=assert_same_batches,
        what="video mix",
    )


def test_resume_config_mismatch_names_both_values(tabular_converted: Path, tabular_b: Path) -> None:
    ds = mix({"a": tabular_converted, "b": tabular_b}, {"a": 0.5, "b": 0.5}, samples_per_epoch=300)
    state = ds.state_dict(batches_consumed=3, batch_size=4, epoch=0)
    other = mix({"a": tabular_converted, "b": tabular_b}, {"a": 0.25, "b": 0.75}, samples_per_epoch=300)
    with pytest.raises(
        ResumeMismatchError, match=r"mix_weights=\[0\.5, 0\.5\].*mix_weights=\[0\.25, 0\.75\]"
    ):
        other.load_state_dict(state)
    pool = mix({"a": tabular_converted, "b": tabular_b}, [1, 1], samples_per_epoch=300, episode_pool_size=3)
    with pytest.raises(ResumeMismatchError, match=r"source\.a\.episode_pool_size=64 .*episode_pool_size=3$"):
        pool.load_state_dict(state)
    more = mix({"a": tabular_converted, "b": tabular_b}, [1, 1], samples_per_epoch=301)
    with pytest.raises(ResumeMismatchError, match="samples_per_epoch=300 .* samples_per_epoch=301"):
        more.load_state_dict(state)


# ---- configuration errors -------------------------------------------------------------------------------
def test_fps_mismatch_names_both_datasets(tabular_converted: Path, tabular_fps30: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"'a' \(lerowds/tabular .*'b' \(lerowds/tabular_fps30 .*fps: 15 vs 30"
    ):
        mix({"a": tabular_converted, "b": tabular_fps30})


def test_key_mismatches_name_both_datasets_and_the_key(
    tabular_converted: Path, tabular_extra: Path, video_small_converted: Path
) -> None:
    with pytest.raises(ConfigError, match=r"'a' \(lerowds/tabular .*'x' .*feature 'observation.velocity'"):
        mix({"a": tabular_converted, "x": tabular_extra})
    with pytest.raises(
        ConfigError, match=r"'v' \(lerowds/video_small .*camera key 'observation.images.front'"
    ):
        mix({"a": tabular_converted, "v": video_small_converted})
    windowed = LeRobotWebDataset(tabular_converted, delta_timestamps={"action": [0.0, 1 / 15]})
    plain = LeRobotWebDataset(tabular_converted)
    with pytest.raises(ConfigError, match=r"'w' \(lerowds/tabular .*'p' .*delta_timestamps key 'action'"):
        mix({"w": windowed, "p": plain})


def test_weighted_source_without_frames_for_a_consumer_is_an_error(
    tabular_converted: Path, tabular_b: Path
) -> None:
    tiny = LeRobotWebDataset(tabular_converted, episodes=[1])  # one frame
    with pytest.raises(
        ConfigError, match=r"'tiny' .* has weight 0.5 but rank 0 worker 0 owns none of its 1 "
    ):
        mix({"tiny": tiny, "b": LeRobotWebDataset(tabular_b)}, [0.5, 0.5], world_size=2, rank=0)
    ds = mix({"tiny": tiny, "b": LeRobotWebDataset(tabular_b)}, [0.5, 0.5], samples_per_epoch=40)
    # DataLoader worker 1 of 2 would own none of it: every worker raises at once (here: as worker 0 would)
    with pytest.raises(
        ConfigError, match=r"'tiny' .* has weight 0.5 but rank 0 worker 1 owns none of its 1 "
    ):
        ds.consumer_stream(0, Consumer(0, 1, 0, 2))
    unused = mix({"tiny": tiny, "b": LeRobotWebDataset(tabular_b)}, [0.0, 1.0], samples_per_epoch=40)
    got = [s for b in loader(unused, batch_size=4, num_workers=2) for s in b["source"]]
    assert got == ["b"] * 40


def test_api_forms_and_argument_errors(tabular_converted: Path, tabular_b: Path) -> None:
    by_repo = mix([tabular_converted, tabular_b], [3, 1], samples_per_epoch=50)
    assert by_repo.names == ("lerowds/tabular", "lerowds/tabular_b")
    assert by_repo.weights == {"lerowds/tabular": 0.75, "lerowds/tabular_b": 0.25}
    assert by_repo.meta is by_repo.metas["lerowds/tabular"] and by_repo.metas["lerowds/tabular_b"].fps == 15
    by_path = lerowds.mix({str(tabular_converted): 0.75, str(tabular_b): 0.25}, samples_per_epoch=50)
    runs = [[(d.names.index(s), i) for s, i in keys(list(d))] for d in (by_repo, by_path)]
    assert runs[0] == runs[1]
    same = mix([tabular_converted, tabular_converted], samples_per_epoch=10)
    assert same.names == ("0", "1")
    with pytest.raises(ConfigError, match=r"got 1 mix weights for 2 sources"):
        mix([tabular_converted, tabular_b], [1])
    with pytest.raises(ConfigError, match=r"lack sources \['b'\] and name unknown ones \['c'\]"):
        mix({"a": tabular_converted, "b": tabular_b}, {"a": 1, "c": 1})
    with pytest.raises(ConfigError, match=r"finite, >= 0 and not all 0, got \[1, -1\]"):
        mix({"a": tabular_converted, "b": tabular_b}, [1, -1])
    ds = LeRobotWebDataset(tabular_b)
    with pytest.raises(ConfigError, match="same object"):
        mix({"a": ds, "b": ds})
    with pytest.raises(ConfigError, match=r"\['episode_pool_size'\] apply to path sources only"):
        mix([ds, LeRobotWebDataset(tabular_converted)], episode_pool_size=4)


def test_remote_source_mixes_like_a_local_one(
    tabular_converted: Path, tabular_b: Path, tmp_path: Path
) -> None:
    def run(b: str | Path, **kw: Any) -> list[tuple[str, int]]:
        ds = mix({"a": tabular_converted, "b": b}, [0.5, 0.5], samples_per_epoch=200, **kw)
        return [
            (s, int(i))
            for batch in loader(ds, batch_size=8, num_workers=2)
            for s, i in zip(batch["source"], batch["index"])
        ]

    with LoopbackServer(tabular_b) as srv:
        remote = run(srv.url, cache_dir=tmp_path / "cache")
    assert remote == run(tabular_b)
