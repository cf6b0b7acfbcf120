"""LeRobotWebDataset: exactly-once per epoch, determinism, windows and padding, self-identifying frames."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset
from lerowds.errors import ConfigError
from lerowds.format import read_local_index
from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.ranks import rank_plan
from lerowds.testing.framecode import decode_frame_id
from lerowds.testing.v3writer import sample_spec


def indices(ds, **loader_kw) -> list[int]:
    """The ``index`` of every sample one epoch yields, through a real DataLoader."""
    out: list[int] = []
    for batch in DataLoader(ds, batch_size=loader_kw.pop("batch_size", 16), **loader_kw):
        out.extend(batch["index"].tolist())
    return out


def test_video_dataset_exactly_once_and_frames_self_identify(demo_converted) -> None:
    """Every decoded camera frame (video and image-dtype) carries the (episode, frame) of its window slot."""
    spec = sample_spec("demo")
    cams = {c.key: i for i, c in enumerate(spec.cameras)}
    fps = spec.fps
    dt = {key: [-2 / fps, -1 / fps, 0.0, 1 / fps] for key in cams}
    ds = LeRobotWebDataset(
        demo_converted, delta_timestamps=dt, episode_pool_size=4, seed=3, return_uint8=True
    )
    seen: Counter[int] = Counter()
    _, table = read_local_index(demo_converted)
    lengths = dict(zip(table["episode_index"].tolist(), table["length"].tolist()))
    for batch in DataLoader(ds, batch_size=8, num_workers=2):
        seen.update(batch["index"].tolist())
        for b in range(len(batch["index"])):
            e, f = int(batch["episode_index"][b]), int(batch["frame_index"][b])
            want = [min(max(f + d, 0), lengths[e] - 1) for d in (-2, -1, 0, 1)]
            want_pad = [not 0 <= f + d < lengths[e] for d in (-2, -1, 0, 1)]
            for key, cam in cams.items():
                frames = batch[key][b]
                assert frames.dtype == torch.uint8 and frames.shape[:2] == (4, 3)
                got = [decode_frame_id(img.numpy(), cam) for img in frames]
                assert got == [(e, w) for w in want], (key, e, f, got)
                assert batch[f"{key}_is_pad"][b].tolist() == want_pad
    assert sorted(seen) == list(range(ds.meta.total_frames)) and max(seen.values()) == 1


def test_same_seed_same_stream_other_seed_or_epoch_other_stream(tabular_converted) -> None:
    def stream(seed: int, epoch: int) -> list[int]:
        ds = LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=seed)
        ds.set_epoch(epoch)
        return indices(ds, num_workers=0)

    # The first 16 samples of each stream, pinned (ORDER_VERSION 2; whole epochs: test_order_pinned.py).
    want = {
        (0, 0): [118, 36, 144, 139, 104, 108, 148, 109, 116, 69, 111, 115, 146, 138, 140, 72],
        (1, 0): [9, 66, 28, 131, 18, 16, 64, 71, 13, 25, 23, 67, 134, 29, 72, 129],
        (0, 1): [133, 135, 0, 2, 127, 74, 124, 126, 69, 75, 6, 128, 68, 73, 129, 132],
        (5, 3): [99, 93, 137, 102, 142, 49, 92, 61, 54, 58, 60, 96, 47, 145, 140, 139],
    }
    a = stream(0, 0)
    assert a == stream(0, 0)
    for (seed, epoch), first in want.items():
        got = a if (seed, epoch) == (0, 0) else stream(seed, epoch)
        assert got[:16] == first, (seed, epoch)
        assert sorted(got) == list(range(150))


def test_stream_is_the_pool_order_of_the_pure_functions(tabular_converted) -> None:
    """With one consumer the stream is exactly PoolOrder over the epoch's episode permutation."""
    _, table = read_local_index(tabular_converted)
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=3, seed=11)
    got = [(int(s["episode_index"]), int(s["frame_index"])) for s in ds]
    plan = rank_plan(
        table["length"], table["episode_index"], seed=11, epoch=0, shuffle=True, world_size=1, rank=0
    )
    order = PoolOrder(plan.segments, pool_size=3, seed=11, epoch=0, rank=0, worker=0, shuffle=True)
    want = [(e.episode, e.frame) for e in order.events() if hasattr(e, "frame")]
    assert got == want


def test_shuffle_false_yields_dataset_order(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, shuffle=False, episode_pool_size=5)
    assert indices(ds, num_workers=0, batch_size=7) == list(range(ds.meta.total_frames))


def test_pool_holds_whole_episodes_and_draws_across_them(tabular_converted) -> None:
    """With a pool of 4 the first emitted frames come from several episodes, not one episode in order."""
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=4, seed=0)
    first = [int(s["episode_index"]) for _, s in zip(range(12), ds)]
    assert len(set(first)) > 1


def test_episodes_subset(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, episodes=[2, 5, 11], seed=1)
    got = [(int(s["episode_index"]), int(s["frame_index"])) for s in ds]
    _, table = read_local_index(tabular_converted)
    lengths = dict(zip(table["episode_index"].tolist(), table["length"].tolist()))
    assert sorted(got) == sorted((e, f) for e in (2, 5, 11) for f in range(lengths[e]))
    with pytest.raises(ConfigError, match=r"episodes \[99\] are not in this dataset"):
        LeRobotWebDataset(tabular_converted, episodes=[2, 99])


def test_windows_and_padding_at_episode_edges(edge_converted) -> None:
    """Windows longer than an episode (1, 2, 3-frame episodes) clamp to its frames and mark padding."""
    fps = sample_spec("edge").fps
    offsets = list(range(-4, 6))
    ds = LeRobotWebDataset(
        edge_converted,
        delta_timestamps={"action": [d / fps for d in offsets], "observation.state": [0.0]},
        shuffle=False,
    )
    _, table = read_local_index(edge_converted)
    lengths = dict(zip(table["episode_index"].tolist(), table["length"].tolist()))
    checked_short = 0
    for s in ds:
        e, f = int(s["episode_index"]), int(s["frame_index"])
        n = lengths[e]
        pos = [min(max(f + d, 0), n - 1) for d in offsets]
        pad = [not 0 <= f + d < n for d in offsets]
        action = s["action"].numpy()
        assert action.shape[0] == len(offsets)
        assert action[:, 0].tolist() == [float(e)] * len(offsets)  # action[0] = episode_index
        assert action[:, 1].tolist() == [float(p) for p in pos]  # action[1] = frame_index of the slot
        assert s["action_is_pad"].tolist() == pad
        assert s["observation.state"].shape[0] == 1 and not s["observation.state_is_pad"].any()
        checked_short += n <= 3
    assert checked_short >= 6  # the 1-, 2- and 3-frame episodes were all covered


def test_every_camera_frame_of_the_edge_set_identifies_itself(edge_converted) -> None:
    """Each camera (a 30x40 one among them: swscale's planar path once left its last columns unwritten at
    such widths) returns the frame of its sample, in uint8 CHW as the Loader and lerobot-train take it."""
    from lerowds.testing.framecode import decode_frame_id

    cams = list(enumerate(sample_spec("edge").cameras))
    checked = 0
    for s in LeRobotWebDataset(edge_converted, shuffle=False, return_uint8=True):
        want = (int(s["episode_index"]), int(s["frame_index"]))
        for cam_no, cam in cams:
            assert decode_frame_id(s[cam.key].numpy(), cam_no) == want, (cam.key, want)
            checked += 1
    assert checked == len(cams) * sum(sample_spec("edge").episode_lengths)


def test_task_strings_follow_task_changes(edge_converted) -> None:
    spec = sample_spec("edge")
    ds = LeRobotWebDataset(edge_converted, shuffle=False)
    for s in ds:
        e, f = int(s["episode_index"]), int(s["frame_index"])
        tasks = spec.episode_tasks[e]
        n = spec.episode_lengths[e]
        want = tasks[0] if len(tasks) == 1 or f < n // 2 else tasks[1]
        assert s["task"] == want


def test_scalar_features_are_0d(edge_converted) -> None:
    s = next(iter(LeRobotWebDataset(edge_converted, shuffle=False)))
    for key in (
        "timestamp",
        "frame_index",
        "episode_index",
        "index",
        "task_index",
        "next.reward",
        "next.done",
    ):
        assert s[key].shape == (), key
    assert s["next.done"].dtype == torch.bool and s["next.reward"].dtype == torch.float32


def test_meta(demo_converted) -> None:
    ds = LeRobotWebDataset(demo_converted)
    spec = sample_spec("demo")
    assert ds.meta.fps == spec.fps
    assert ds.meta.total_episodes == len(spec.episode_lengths)
    assert ds.meta.total_frames == sum(spec.episode_lengths)
    assert set(ds.meta.camera_keys) == {c.key for c in spec.cameras}
    assert "observation.state" in ds.meta.stats and ds.meta.tasks


def test_image_transforms_apply_to_every_camera(demo_converted) -> None:
    calls: list[tuple[int, ...]] = []

    def flip(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return torch.flip(t, dims=[-1])

    plain = next(iter(LeRobotWebDataset(demo_converted, shuffle=False)))
    flipped = next(iter(LeRobotWebDataset(demo_converted, shuffle=False, image_transforms=flip)))
    assert len(calls) == 3
    for key in ("observation.images.front", "observation.images.wrist", "observation.images.top"):
        torch.testing.assert_close(flipped[key], torch.flip(plain[key], dims=[-1]))
