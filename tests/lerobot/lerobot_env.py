"""Shared by the tests that run against lerobot itself: they need lerobot importable (the lerobot CI
environment sets LEROWDS_LEROBOT_ENV=1, where a missing lerobot fails instead of skipping) and the shared
fixture converted."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
SMALL = FIXTURES / "lerobot_v3_small"
REPO_ID = "lerowds/fixture_small"
FPS = 15


def need_lerobot() -> None:
    """Skip where lerobot is not installed, unless this is the lerobot environment (then fail)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach the Hub
    try:
        importlib.import_module("lerobot.datasets.lerobot_dataset")
    except ImportError as exc:
        if os.environ.get("LEROWDS_LEROBOT_ENV") == "1":
            pytest.fail(f"LEROWDS_LEROBOT_ENV=1 but lerobot cannot be imported: {exc!r}")
        pytest.skip(f"lerobot is not installed here ({exc}); these tests run in the lerobot environment")


def need_shared_fixture() -> Path:
    """The real lerobot fixture; a missing one fails under CI=true (or in the lerobot environment)."""
    if not (SMALL / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true" or os.environ.get("LEROWDS_LEROBOT_ENV") == "1":
            pytest.fail(f"shared fixture missing at {SMALL}")
        pytest.skip(f"shared fixture missing at {SMALL}")
    return SMALL


def shared_converted(request: pytest.FixtureRequest) -> Path:
    """The shared fixture converted as REPO_ID into several 64 KiB shards: tests/conftest.py's
    ``small_converted``, made once per run (read-only); a missing fixture fails here first."""
    need_shared_fixture()
    return request.getfixturevalue("small_converted")


def tiny_policy_config(kind: str, **overrides: object):
    """An ACT or diffusion config small enough for a CPU test; no pretrained backbone (nothing downloaded)."""
    if kind == "act":
        from lerobot.policies.act.configuration_act import ACTConfig

        kw = {
            "dim_model": 32,
            "n_heads": 2,
            "dim_feedforward": 64,
            "n_encoder_layers": 1,
            "n_decoder_layers": 1,
            "n_vae_encoder_layers": 1,
            "latent_dim": 8,
            "chunk_size": 5,
            "n_action_steps": 5,
        }
        return ACTConfig(
            pretrained_backbone_weights=None, device="cpu", push_to_hub=False, **{**kw, **overrides}
        )
    if kind == "diffusion":
        from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

        kw = {
            "n_obs_steps": 2,
            "horizon": 8,
            "n_action_steps": 4,
            "down_dims": (16, 32),
            "kernel_size": 3,
            "n_groups": 4,
            "diffusion_step_embed_dim": 16,
            "spatial_softmax_num_keypoints": 4,
            "num_train_timesteps": 10,
            "crop_shape": None,
        }
        return DiffusionConfig(
            pretrained_backbone_weights=None, device="cpu", push_to_hub=False, **{**kw, **overrides}
        )
    raise ValueError(f"unknown policy kind {kind!r}")


# The tiny policies above as lerobot-train flags (README "For lerobot users" shows these commands).
TINY_ACT_FLAGS = [
    "--policy.type=act",
    "--policy.pretrained_backbone_weights=null",
    "--policy.dim_model=32",
    "--policy.n_heads=2",
    "--policy.dim_feedforward=64",
    "--policy.n_encoder_layers=1",
    "--policy.n_decoder_layers=1",
    "--policy.n_vae_encoder_layers=1",
    "--policy.latent_dim=8",
    "--policy.chunk_size=5",
    "--policy.n_action_steps=5",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
]
TINY_DIFFUSION_FLAGS = [
    "--policy.type=diffusion",
    "--policy.pretrained_backbone_weights=null",
    "--policy.n_obs_steps=2",
    "--policy.horizon=8",
    "--policy.n_action_steps=4",
    "--policy.down_dims=[16,32]",
    "--policy.kernel_size=3",
    "--policy.n_groups=4",
    "--policy.diffusion_step_embed_dim=16",
    "--policy.spatial_softmax_num_keypoints=4",
    "--policy.num_train_timesteps=10",
    "--policy.crop_shape=null",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
    # diffusion wants its cameras the same shape; the fixture's two differ, so it sees the front one only
    (
        '--policy.input_features={"observation.state": {"type": "STATE", "shape": [6]}, '
        '"observation.images.front": {"type": "VISUAL", "shape": [3, 96, 128]}}'
    ),
]
