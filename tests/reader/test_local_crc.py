"""The local reader checks each episode's CRC-32 (stored in ``episodes.parquet``) before using its bytes: a
flipped bit anywhere in a shard's parquet or clip member is a named error, never silently wrong values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from lerowds import LeRobotWebDataset
from lerowds.errors import FormatError
from lerowds.format import read_local_index, video_columns

CAMERA = "observation.images.front"


def _flip(path: Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))  # one bit


def _samples(root: Path, episode: int, **kw: object) -> list[dict]:
    return list(LeRobotWebDataset(root, episodes=[episode], shuffle=False, return_uint8=True, **kw))  # type: ignore[arg-type]


def _offsets(start: int, size: int, n: int) -> list[int]:
    """``n`` offsets spread over ``[start, start + size)``, first and last byte included."""
    return sorted({start + (size - 1) * i // (n - 1) for i in range(n)})


@pytest.fixture
def shard_copy(video_small_converted: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(video_small_converted, tmp_path / "ds"))


def test_bit_flips_in_parquet_and_clip_members_are_named_errors(shard_copy: Path) -> None:
    root = shard_copy
    index, table = read_local_index(root)
    row = 3
    episode = int(table["episode_index"][row])
    shard = root / index.shards[int(table["shard"][row])].name
    clean = _samples(root, episode)
    off_col, size_col = video_columns(CAMERA)
    members = {
        "parquet": (int(table["parquet_offset"][row]), int(table["parquet_size"][row])),
        "clip": (int(table[off_col][row]), int(table[size_col][row])),
    }
    pattern = rf"{shard}: episode {episode} \({index.shards[int(table['shard'][row])].name} bytes .*CRC-32"
    tried = 0
    for start, size in members.values():
        for at in _offsets(start, size, 12):
            _flip(shard, at)
            with pytest.raises(FormatError, match=pattern):
                _samples(root, episode)
            _flip(shard, at)  # restored
            tried += 1
    assert tried >= 20
    again = _samples(root, episode)
    assert len(again) == len(clean) and all(
        torch.equal(a[k], b[k]) for a, b in zip(again, clean) for k in a if isinstance(a[k], torch.Tensor)
    )


def test_truncated_episode_is_a_named_error(shard_copy: Path) -> None:
    root = shard_copy
    index, table = read_local_index(root)
    last = len(table) - 1
    shard = root / index.shards[int(table["shard"][last])].name
    shard.write_bytes(shard.read_bytes()[: int(table["offset"][last]) + int(table["size"][last]) - 1])
    with pytest.raises(FormatError, match=rf"episode {int(table['episode_index'][last])} .*truncated"):
        _samples(root, int(table["episode_index"][last]))


def test_verify_crc_false_skips_the_check(shard_copy: Path) -> None:
    """The opt-out: the json member is never read by the reader, so a flip there only shows in the CRC."""
    root = shard_copy
    index, table = read_local_index(root)
    row = 2
    episode = int(table["episode_index"][row])
    shard = root / index.shards[int(table["shard"][row])].name
    clean = _samples(root, episode)
    _flip(shard, int(table["json_offset"][row]) + 1)
    with pytest.raises(FormatError, match=rf"episode {episode} .*CRC-32"):
        _samples(root, episode)
    unchecked = _samples(root, episode, verify_crc=False)
    assert [s["index"] for s in unchecked] == [s["index"] for s in clean]
