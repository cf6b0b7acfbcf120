"""lerowds stages in a stock webdataset pipeline give the same samples as LeRobotWebDataset."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
import webdataset as wds

import lerowds
import lerowds.wds
from lerowds.errors import ConfigError, FormatError
from lerowds.format import read_local_index
from lerowds.testing.v3writer import sample_spec


def shard_urls(root) -> list[str]:
    index, _ = read_local_index(root)
    return [str(root / s.name) for s in index.shards]


def pipeline(root, dt, pool: int = 8, **decode_kw) -> wds.DataPipeline:
    return wds.DataPipeline(
        wds.SimpleShardList(shard_urls(root)),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        lerowds.wds.episodes(),
        lerowds.wds.episode_pool(pool, seed=0),
        lerowds.wds.delta_windows(dt),
        lerowds.wds.decode_frames(**decode_kw),
    )


def test_pipeline_samples_equal_dataset_samples(demo_converted) -> None:
    fps = sample_spec("demo").fps
    dt = {"observation.images.front": [-1 / fps, 0.0], "action": [0.0, 1 / fps, 2 / fps]}
    ref = {
        int(s["index"]): s
        for s in lerowds.LeRobotWebDataset(demo_converted, delta_timestamps=dt, shuffle=False)
    }
    got = list(pipeline(demo_converted, dt))
    assert sorted(int(s["index"]) for s in got) == sorted(ref)
    for s in got:
        r = ref[int(s["index"])]
        assert list(s) == list(r)
        for key, value in s.items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, r[key], rtol=0, atol=0, msg=key)
            else:
                assert value == r[key], key


def test_pipeline_missing_camera_member_is_named(demo_converted, tmp_path) -> None:
    """A shard whose episode lacks a camera clip fails naming the episode key and the camera."""
    src = shard_urls(demo_converted)[0]
    broken = tmp_path / "broken.tar"
    with tarfile.open(src) as tin, tarfile.open(broken, "w") as tout:
        for m in tin.getmembers():
            if m.name.endswith("observation.images.wrist.mp4"):
                continue
            tout.addfile(m, io.BytesIO(tin.extractfile(m).read()))
    stages = wds.DataPipeline(
        wds.SimpleShardList([str(broken)]), wds.tarfile_to_samples(), lerowds.wds.episodes()
    )
    with pytest.raises(FormatError, match=r"episode_\d+.*'observation.images.wrist'"):
        list(stages)


def test_pipeline_bad_delta_timestamps(tabular_converted) -> None:
    with pytest.raises(ConfigError, match="multiples of 1/fps"):
        list(pipeline(tabular_converted, {"action": [0.01]}))
