"""``ds.meta`` stands in for ``LeRobotDatasetMetadata`` in lerobot's training calls: ``resolve_delta_timestamps``,
``make_policy(cfg, ds_meta=...)``, ``make_pre_post_processors(cfg, dataset_stats=...)``; a policy built from
lerowds computes the same loss on lerowds' batch as one built from lerobot on lerobot's batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lerobot_env import REPO_ID, SMALL, need_lerobot, shared_converted, tiny_policy_config
from torch.utils.data import default_collate

from lerowds import LeRobotWebDataset

INDICES = [0, 19, 20, 66, 250, 300, 471, 586]  # episode starts and ends (padded windows) and middles


@pytest.fixture(scope="module")
def converted(request: pytest.FixtureRequest) -> Path:
    need_lerobot()
    return shared_converted(request)


def front_camera_only(cfg, meta) -> None:
    """Diffusion wants all its cameras the same shape; the fixture's differ, so it uses one (as a user would)."""
    from lerobot.utils.feature_utils import dataset_to_policy_features

    features = dataset_to_policy_features(meta.features)
    cfg.input_features = {
        k: f for k, f in features.items() if k in ("observation.state", "observation.images.front")
    }


def build(kind: str, meta):
    from lerobot.policies import make_policy, make_pre_post_processors

    cfg = tiny_policy_config(kind)
    if kind == "diffusion":
        front_camera_only(cfg, meta)
    torch.manual_seed(0)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return cfg, policy, pre, post


def loss_of(policy, pre, batch: dict) -> torch.Tensor:
    policy.eval()  # no dropout; the noise a policy draws comes from the seed below
    torch.manual_seed(1)
    with torch.no_grad():
        loss, _ = policy.forward(pre(batch))
    return loss


@pytest.mark.parametrize("kind", ["act", "diffusion"])
def test_meta_drives_lerobot_training_setup(converted: Path, kind: str) -> None:
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    lr_meta = LeRobotDatasetMetadata(REPO_ID, root=SMALL)
    probe = LeRobotWebDataset(converted)
    deltas = resolve_delta_timestamps(tiny_policy_config(kind), probe.meta)
    assert deltas == resolve_delta_timestamps(tiny_policy_config(kind), lr_meta) and deltas

    ds = LeRobotWebDataset(converted, delta_timestamps=deltas)
    cfg, policy, pre, _ = build(kind, ds.meta)
    ref_cfg, ref_policy, ref_pre, _ = build(kind, lr_meta)
    assert cfg.input_features == ref_cfg.input_features and cfg.output_features == ref_cfg.output_features
    for (name, a), (_, b) in zip(policy.state_dict().items(), ref_policy.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # same features and stats: the same network

    by_index = {int(s["index"]): s for s in ds if int(s["index"]) in INDICES}
    batch = default_collate([by_index[i] for i in INDICES])
    ref_ds = LeRobotDataset(REPO_ID, root=SMALL, delta_timestamps=deltas, video_backend="pyav")
    ref_batch = default_collate([ref_ds[i] for i in INDICES])
    loss, ref_loss = loss_of(policy, pre, batch), loss_of(ref_policy, ref_pre, ref_batch)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
