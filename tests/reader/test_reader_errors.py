"""Bad input to the reader gets a clear, named error — never a silent skip or an early end of data."""

from __future__ import annotations

import gc
import shutil

import psutil
import pytest

from lerowds import LeRobotWebDataset
from lerowds.errors import ConfigError, FormatError, VideoDecodeError
from lerowds.format import read_local_index, video_columns


def test_delta_timestamps_unknown_key(tabular_converted) -> None:
    with pytest.raises(ConfigError, match=r"'observation.images.nope' is not a feature"):
        LeRobotWebDataset(tabular_converted, delta_timestamps={"observation.images.nope": [0.0]})


def test_delta_timestamps_not_multiple_of_frame_period(tabular_converted) -> None:
    with pytest.raises(
        ConfigError, match=r"delta_timestamps\['action'\] must be multiples of 1/fps=0.0666667"
    ):
        LeRobotWebDataset(tabular_converted, delta_timestamps={"action": [0.0, 0.05]})


def test_delta_timestamps_within_tolerance_accepted(tabular_converted) -> None:
    ds = LeRobotWebDataset(tabular_converted, delta_timestamps={"action": [1 / 15 + 5e-5]}, tolerance_s=1e-4)
    assert ds.windows is not None and ds.windows.offsets["action"] == (1,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"episode_pool_size": 0}, "episode_pool_size must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"decoder": "ffmpeg"}, "decoder must be"),
        ({"remainder": "pad"}, "remainder must be 'drop' or 'repeat'"),
        ({"episodes": []}, "selects nothing"),
    ],
)
def test_bad_arguments(tabular_converted, kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        LeRobotWebDataset(tabular_converted, **kwargs)


def test_not_a_dataset(tmp_path) -> None:
    with pytest.raises(FormatError, match="no index.json"):
        LeRobotWebDataset(tmp_path)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_corrupt_clip_names_episode_camera_and_timestamp(video_small_converted, tmp_path) -> None:
    root = _copy(video_small_converted, tmp_path / "ds")
    index, table = read_local_index(root)
    row = 3
    episode = int(table["episode_index"][row])
    off_col, size_col = video_columns("observation.images.front")
    off, size = int(table[off_col][row]), int(table[size_col][row])
    shard = root / index.shards[int(table["shard"][row])].name
    data = bytearray(shard.read_bytes())
    data[off : off + size] = bytes(size)  # the whole clip zeroed: unreadable
    shard.write_bytes(bytes(data))
    ds = LeRobotWebDataset(root, episodes=[episode], shuffle=False, verify_crc=False)  # the decoder's error
    with pytest.raises(
        VideoDecodeError, match=rf"episode {episode}, camera 'observation.images.front', timestamp"
    ):
        list(ds)


def test_truncated_shard_is_named_not_an_early_end(video_small_converted, tmp_path) -> None:
    root = _copy(video_small_converted, tmp_path / "ds")
    index, table = read_local_index(root)
    last = len(table) - 1
    shard = root / index.shards[int(table["shard"][last])].name
    shard.write_bytes(shard.read_bytes()[: int(table["parquet_offset"][last]) + 10])
    ds = LeRobotWebDataset(root, shuffle=False)
    with pytest.raises(FormatError, match=rf"{shard.name}.*episode {int(table['episode_index'][last])}"):
        list(ds)


def test_missing_shard_is_named(tabular_converted, tmp_path) -> None:
    root = _copy(tabular_converted, tmp_path / "ds")
    index, _ = read_local_index(root)
    (root / index.shards[-1].name).unlink()
    with pytest.raises(FormatError, match=r"shard listed in the index is missing"):
        list(LeRobotWebDataset(root, shuffle=False))


def test_memory_does_not_grow_over_epochs(demo_converted) -> None:
    """RSS over 3 epochs after the first grows by less than 6 MB an epoch (an epoch decodes ~400 MB): no buffer
    of decoded frames. RSS is flat after one epoch (< 0.05 MB an epoch in all three CI environments, measured
    2026-12-05), so one warm-up epoch is enough."""
    fps = 15
    ds = LeRobotWebDataset(
        demo_converted,
        delta_timestamps={"observation.images.front": [-2 / fps, 0.0], "action": [i / fps for i in range(8)]},
        episode_pool_size=8,
    )
    proc = psutil.Process()

    def epoch() -> int:
        n = sum(1 for _ in ds)
        gc.collect()
        return n

    epoch()
    base = proc.memory_info().rss
    counts = [epoch() for _ in range(3)]
    grown = proc.memory_info().rss - base
    assert counts == [ds.meta.total_frames] * 3
    assert grown < 18 * 2**20, f"RSS grew by {grown / 2**20:.1f} MB over 3 epochs"
