"""``lerowds train`` runs lerobot's training on the converted fixture: a few steps of a tiny ACT and diffusion
policy on CPU, lerobot checkpoints, and ``--resume`` from one continuing with exactly the batches (and, the
RNG restored by lerobot, the losses) of the uninterrupted run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from lerobot_env import TINY_ACT_FLAGS, TINY_DIFFUSION_FLAGS, convert_fixture, need_lerobot

from lerowds.train import run
from lerowds.train.position import LOADER_STATE_FILE


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_lerobot()
    return convert_fixture(tmp_path_factory.mktemp("lerobot_train") / "out")


def train(argv: list[str]) -> list[tuple]:
    """Run ``lerowds train argv``; per step: (step, epoch, batches into the epoch, frames of the batch, loss)."""
    steps: list[tuple] = []

    def record(r) -> None:
        frames = tuple(zip(r.batch["episode_index"].tolist(), r.batch["frame_index"].tolist()))
        steps.append((r.step, r.position.epoch, r.position.batches, frames, r.loss))

    run(argv, on_step=record)
    return steps


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{step:06d}"


@pytest.mark.parametrize(
    "flags, episodes, workers, steps, save_freq, resume_at, per_epoch",
    [
        # ACT: 20 frames in batches of 8 (8, 8, 4); resumed mid-epoch 0, continues across the epoch's end
        (TINY_ACT_FLAGS, "[0]", 0, 5, 2, 2, 3),
        # diffusion, 2 DataLoader workers: 22 frames (11 per worker: 8, 8, 3, 3); resumed at the very end of
        # epoch 0 (the dataset moves on to epoch 1 by itself)
        (TINY_DIFFUSION_FLAGS, "[9]", 2, 6, 4, 4, 4),
    ],
    ids=["act", "diffusion"],
)
def test_train_checkpoint_and_exact_resume(
    converted: Path, tmp_path: Path, flags, episodes, workers, steps, save_freq, resume_at, per_epoch
) -> None:
    out = tmp_path / "run"
    argv = [
        *flags,
        f"--lerowds.source={converted}",
        f"--dataset.episodes={episodes}",
        "--batch_size=8",
        f"--num_workers={workers}",
        f"--steps={steps}",
        f"--save_freq={save_freq}",
        "--log_freq=1",
        f"--output_dir={out}",
        "--seed=7",
    ]
    full = train(argv)

    assert [s[0] for s in full] == list(range(1, steps + 1))
    # (epoch, batches consumed in it) after each step: the run crosses into a second epoch
    assert [(s[1], s[2]) for s in full] == [(i // per_epoch, i % per_epoch + 1) for i in range(steps)]
    first_epoch = [f for s in full if s[1] == 0 for f in s[3]]
    assert len(first_epoch) == len(set(first_epoch))  # every frame once per epoch
    assert all(math.isfinite(loss) and loss > 0 for *_, loss in full)

    ckpt = checkpoint(out, resume_at)
    assert (checkpoint(out, steps) / "pretrained_model" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "last").resolve() == checkpoint(out, steps).resolve()
    saved = json.loads((ckpt / "training_state" / LOADER_STATE_FILE).read_text())
    assert saved["step"] == resume_at and saved["dataset"]["batches_consumed"] == full[resume_at - 1][2]

    resumed = train(["--resume=true", f"--config_path={ckpt / 'pretrained_model' / 'train_config.json'}"])
    assert [s[0] for s in resumed] == list(range(resume_at + 1, steps + 1))
    assert [s[3] for s in resumed] == [s[3] for s in full[resume_at:]]  # exactly the same batches, in order
    assert [s[4] for s in resumed] == [s[4] for s in full[resume_at:]]  # and, RNG restored, the same losses
