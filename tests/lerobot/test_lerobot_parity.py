"""Live parity with lerobot: ``LeRobotWebDataset`` samples equal lerobot's own ``LeRobotDataset`` on the same
converted fixture, and ``ds.meta`` carries what ``LeRobotDatasetMetadata`` gives a training script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot_env import FPS, REPO_ID, SMALL, need_lerobot, shared_converted

from lerowds import LeRobotWebDataset

EPISODES = [0, 5, 9, 11]  # 20, 25, 22, 30 frames: both meta chunks, short episodes (padding on both sides)
DELTAS = {
    "observation.images.front": [-2 / FPS, 0.0],
    "observation.images.wrist": [-3 / FPS, -1 / FPS, 0.0],
    "observation.state": [-1 / FPS, 0.0],
    "action": [i / FPS for i in range(-1, 10)],
}
CAMERAS = ("observation.images.front", "observation.images.wrist")


@pytest.fixture(scope="module")
def converted(request: pytest.FixtureRequest) -> Path:
    need_lerobot()
    return shared_converted(request)


def lerobot_dataset(**kw):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(REPO_ID, root=SMALL, video_backend="pyav", **kw)


def assert_same_sample(got: dict, want: dict, where: str, *, uint8: bool) -> None:
    assert list(got) == list(want), f"{where}: keys {list(got)} != lerobot's {list(want)}"
    for key, ref in want.items():
        value = got[key]
        if isinstance(ref, str):
            assert value == ref, f"{where} {key}: {value!r} != {ref!r}"
            continue
        assert isinstance(value, torch.Tensor), f"{where} {key}: {type(value).__name__}"
        assert value.dtype == ref.dtype, f"{where} {key}: dtype {value.dtype} != {ref.dtype}"
        assert value.shape == ref.shape, f"{where} {key}: shape {tuple(value.shape)} != {tuple(ref.shape)}"
        if key in CAMERAS:
            scale = 1.0 if uint8 else 255.0
            diff = (value.double() - ref.double()).abs().max().item() * scale
            assert diff <= 1.0 + 1e-6, f"{where} {key}: max pixel difference {diff:.3f} > 1/255"
        else:
            assert torch.equal(value, ref), f"{where} {key}: {value} != {ref}"


@pytest.mark.parametrize(
    "deltas, uint8", [(None, False), (DELTAS, False), (DELTAS, True)], ids=["plain", "delta", "delta-uint8"]
)
def test_samples_equal_lerobot_dataset(converted: Path, deltas, uint8: bool) -> None:
    ref = lerobot_dataset(delta_timestamps=deltas, return_uint8=uint8)
    ds = LeRobotWebDataset(
        converted, delta_timestamps=deltas, return_uint8=uint8, episodes=EPISODES, episode_pool_size=2, seed=3
    )
    seen = []
    for sample in ds:  # pool order: each sample is looked up in lerobot by its own global index
        ep, frame, index = (int(sample[k]) for k in ("episode_index", "frame_index", "index"))
        want = ref[index]
        assert (int(want["episode_index"]), int(want["frame_index"])) == (ep, frame), index
        assert_same_sample(sample, want, f"episode {ep} frame {frame}", uint8=uint8)
        seen.append((ep, frame))
    lengths = {0: 20, 5: 25, 9: 22, 11: 30}
    assert sorted(seen) == [(e, f) for e in EPISODES for f in range(lengths[e])]


def test_meta_matches_lerobot_metadata(converted: Path) -> None:
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    want = LeRobotDatasetMetadata(REPO_ID, root=SMALL)
    meta = LeRobotWebDataset(converted).meta
    for attr in (
        "repo_id",
        "fps",
        "features",
        "robot_type",
        "total_frames",
        "total_episodes",
        "total_tasks",
        "shapes",
        "names",
        "has_language_columns",
    ):
        assert getattr(meta, attr) == getattr(want, attr), attr
    for attr in ("camera_keys", "video_keys", "image_keys", "depth_keys"):
        assert list(getattr(meta, attr)) == list(getattr(want, attr)), attr
    assert list(meta.tasks) == list(want.tasks.index)
    assert meta.stats.keys() == want.stats.keys()
    for key, stats in want.stats.items():
        assert meta.stats[key].keys() == stats.keys(), key
        for name, value in stats.items():
            got = meta.stats[key][name]
            assert isinstance(got, np.ndarray) and got.shape == value.shape, (key, name, got)
            np.testing.assert_array_equal(got, value, err_msg=f"stats[{key!r}][{name!r}]")


def test_dataset_counts_match_lerobot(converted: Path) -> None:
    ref = lerobot_dataset(episodes=EPISODES)
    ds = LeRobotWebDataset(converted, episodes=EPISODES)
    assert (ds.num_frames, ds.num_episodes) == (ref.num_frames, ref.num_episodes) == (97, 4)
    assert len(LeRobotWebDataset(converted)) == len(lerobot_dataset()) == 587
