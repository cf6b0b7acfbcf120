"""Reproducible augmentations across resume, live stats that add up, a byte-budgeted pool (measured)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset
from lerowds.format import read_local_index

FPS = 15


def jitter(t: torch.Tensor) -> torch.Tensor:
    """A random augmentation drawing from torch's global RNG, like torchvision's transforms do."""
    return t + 0.1 * torch.rand(1)


def batches(ds, **kw) -> list[dict]:
    return list(
        DataLoader(ds, batch_size=kw.pop("batch_size", 4), num_workers=kw.pop("num_workers", 2), **kw)
    )


def same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                torch.testing.assert_close(x[k], y[k], rtol=0, atol=0, msg=k)
            else:
                assert x[k] == y[k]


def test_augmentations_identical_after_resume(video_small_converted) -> None:
    def make():
        return LeRobotWebDataset(
            video_small_converted,
            episode_pool_size=3,
            seed=5,
            image_transforms=jitter,
            transform=lambda s: {**s, "noise": torch.rand(2)},
        )

    full = batches(make())
    for cut in (1, 6, len(full) - 1):
        ds = make()
        ds.load_state_dict({"epoch": 0, "batches_consumed": cut, "batch_size": 4})
        same(full[:cut] + batches(ds), full)
    # The augmentation does depend on the epoch: the same frame is jittered differently in epoch 1.
    ds = make()
    ds.set_epoch(1)
    by_index_1 = {int(i): n for b in batches(ds) for i, n in zip(b["index"], b["noise"])}
    by_index_0 = {int(i): n for b in full for i, n in zip(b["index"], b["noise"])}
    assert any(not torch.equal(by_index_0[i], by_index_1[i]) for i in by_index_0)


def test_transforms_leave_callers_rng_alone(video_small_converted) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    list(LeRobotWebDataset(video_small_converted, image_transforms=jitter, episodes=[0]))
    torch.testing.assert_close(torch.rand(3), expected)


def test_stats_add_up(video_small_converted) -> None:
    ds = LeRobotWebDataset(
        video_small_converted,
        delta_timestamps={"observation.images.front": [-2 / FPS, -1 / FPS, 0.0]},
        episode_pool_size=2,
        stats=True,
    )
    n = sum(len(b["index"]) for b in batches(ds, num_workers=2))
    s = ds.stats()
    assert s["samples"] == n == ds.meta.total_frames
    assert s["frames_decoded"] == 3 * n  # one camera, a window of 3 per sample
    assert s["decoder_hits"] + s["decoder_misses"] == n  # one decoder lookup per camera per sample
    assert s["decoder_misses"] >= ds.meta.total_episodes  # each episode's decoder opened at least once
    assert s["episodes_admitted"] >= ds.meta.total_episodes
    assert s["pool_episodes"] == 0 and s["pool_bytes"] == 0  # everything evicted at the end
    assert s["decode_ms"] > 0 and s["samples_per_s"] > 0


def test_stats_off_by_default(video_small_converted) -> None:
    ds = LeRobotWebDataset(video_small_converted)
    list(ds)
    assert ds.stats() == {}


def test_byte_budget_never_exceeded_and_exactly_once(video_small_converted) -> None:
    _, table = read_local_index(video_small_converted)
    sizes = table["size"]
    budget = int(sizes.max()) + int(sizes.min())  # room for the largest plus the smallest episode
    for num_workers in (0, 2):
        ds = LeRobotWebDataset(
            video_small_converted, episode_pool_size=8, pool_byte_budget=budget, stats=True, seed=1
        )
        got = [i for b in batches(ds, num_workers=num_workers) for i in b["index"].tolist()]
        assert sorted(got) == list(range(ds.meta.total_frames))
        peak = ds.stats()["pool_bytes_peak"]
        assert 0 < peak <= budget * max(num_workers, 1)  # summed over workers: each within its budget
        if num_workers == 0:
            assert peak <= budget
    unbudgeted = LeRobotWebDataset(video_small_converted, episode_pool_size=8, stats=True, seed=1)
    list(unbudgeted)
    assert unbudgeted.stats()["pool_bytes_peak"] > budget  # the budget really bound the pool
