"""Samples equal what lerobot's own LeRobotDataset returned for the shared fixture (reference npz + json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, need_shared_fixture

from lerowds import LeRobotWebDataset
from lerowds.testing.framecode import decode_frame_id


@pytest.fixture(scope="module")
def reference() -> tuple[dict, dict[str, np.ndarray]]:
    need_shared_fixture()
    meta = json.loads((FIXTURES / "lerobot_v3_small_reference.json").read_text())
    npz = np.load(FIXTURES / "lerobot_v3_small_reference.npz")
    return meta, {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("variant", ["nodelta", "delta"])
def test_samples_match_lerobot_reference(fixture_converted, reference, variant: str) -> None:
    meta, ref = reference
    backend = "pyav"
    ds = LeRobotWebDataset(fixture_converted, delta_timestamps=meta["variants"][variant], shuffle=False)
    by_index = {int(s["index"]): s for s in ds}
    assert len(by_index) == meta["total_frames"]
    expected_keys = meta["keys"][f"{variant}/{backend}"]["keys_in_order"]
    for n, i in enumerate(meta["indices"]):
        sample = by_index[i]
        assert list(sample) == expected_keys, f"index {i}: keys {list(sample)}"
        assert sample["task"] == str(ref[f"{variant}/{backend}/task"][n])
        for key in expected_keys:
            if key == "task":
                continue
            want = ref[f"{variant}/{backend}/{key}"][n]
            got = sample[key]
            assert isinstance(got, torch.Tensor), key
            if key in ("observation.images.front", "observation.images.wrist"):
                assert got.dtype == torch.float32
                assert tuple(got.shape) == want.shape, (key, got.shape, want.shape)
                diff = np.abs(got.numpy() * 255.0 - want.astype(np.float64)).max()
                assert diff <= 1.0 + 1e-4, f"index {i} {key}: max pixel difference {diff} > 1/255"
            else:
                assert got.dtype == torch.from_numpy(np.asarray(want)).dtype, (key, got.dtype, want.dtype)
                assert tuple(got.shape) == np.asarray(want).shape, (key, got.shape)
                np.testing.assert_array_equal(got.numpy(), want, err_msg=f"index {i} {key}")


def test_reference_frames_self_identify(fixture_converted, reference) -> None:
    """The frames we return are the ones lerobot returned: same (episode, frame) codes, window by window."""
    meta, ref = reference
    ds = LeRobotWebDataset(fixture_converted, delta_timestamps=meta["variants"]["delta"], shuffle=False)
    by_index = {int(s["index"]): s for s in ds}
    for cam, key in enumerate(("observation.images.front", "observation.images.wrist")):
        ids = ref[f"delta/pyav/frame_id/{key}"]
        for n, i in enumerate(meta["indices"]):
            got = [decode_frame_id(img.numpy(), cam) for img in by_index[i][key]]
            assert got == [tuple(x) for x in ids[n].tolist()], (key, i, got)


def test_uint8_frames_equal_float_frames(fixture_converted) -> None:
    a = LeRobotWebDataset(fixture_converted, shuffle=False, return_uint8=True, episodes=[2, 7])
    b = LeRobotWebDataset(fixture_converted, shuffle=False, episodes=[2, 7])
    for sa, sb in zip(a, b, strict=True):
        img = sa["observation.images.front"]
        assert img.dtype == torch.uint8 and img.shape == (3, 96, 128)
        torch.testing.assert_close(img.float() / 255.0, sb["observation.images.front"], rtol=0, atol=0)
