"""``lerowds train`` runs lerobot's training on the converted fixture: a few steps of a tiny ACT and diffusion
policy on CPU, lerobot checkpoints, and ``--resume`` from one continuing with exactly the batches (and, the
RNG restored by lerobot, the losses) of the uninterrupted run."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
from lerobot_env import (
    TINY_ACT_FLAGS,
    TINY_DIFFUSION_FLAGS,
    need_lerobot,
    need_shared_fixture,
    shared_converted,
)

from lerowds import ConfigError
from lerowds.train import run
from lerowds.train.position import LOADER_STATE_FILE


@pytest.fixture(scope="module")
def converted(request: pytest.FixtureRequest) -> Path:
    need_lerobot()
    return shared_converted(request)


def recorded_run(argv: list[str], into: list[tuple]) -> None:
    """``lerowds train argv``, appending per step: (step, epoch, batches into the epoch, frames, loss)."""

    def record(r) -> None:
        frames = tuple(zip(r.batch["episode_index"].tolist(), r.batch["frame_index"].tolist()))
        into.append((r.step, r.position.epoch, r.position.batches, frames, r.loss))

    run(argv, on_step=record)


def train(argv: list[str]) -> list[tuple]:
    steps: list[tuple] = []
    recorded_run(argv, steps)
    return steps


def checkpoint(out: Path, step: int) -> Path:
    return out / "checkpoints" / f"{step:06d}"


def check_resume(
    out: Path,
    full: list[tuple],
    resumed: list[tuple],
    *,
    steps: int,
    resume_at: int,
    per_epoch: int,
    loader: str,
) -> None:
    assert [s[0] for s in full] == list(range(1, steps + 1))
    # (epoch, batches consumed in it) after each step: the run crosses into a second epoch
    assert [(s[1], s[2]) for s in full] == [(i // per_epoch, i % per_epoch + 1) for i in range(steps)]
    first_epoch = [f for s in full if s[1] == 0 for f in s[3]]
    assert len(first_epoch) == len(set(first_epoch))  # every frame once per epoch
    assert all(math.isfinite(loss) and loss > 0 for *_, loss in full)

    assert (checkpoint(out, steps) / "pretrained_model" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "last").resolve() == checkpoint(out, steps).resolve()
    saved = json.loads((checkpoint(out, resume_at) / "training_state" / LOADER_STATE_FILE).read_text())
    assert saved["step"] == resume_at and saved["dataset"]["batches_consumed"] == full[resume_at - 1][2]
    assert saved["loader"] == loader

    assert [s[0] for s in resumed] == list(range(resume_at + 1, steps + 1))
    assert [s[3] for s in resumed] == [s[3] for s in full[resume_at:]]  # exactly the same batches, in order
    assert [s[4] for s in resumed] == [s[4] for s in full[resume_at:]]  # and, RNG restored, the same losses


def readme_commands() -> list[list[str]]:
    """The command lines of README's "For lerobot users" block (continuations joined, comments dropped)."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = text.split("## For lerobot users", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = [ln for ln in block.replace("\\\n", " ").splitlines() if ln.strip() and not ln.startswith("#")]
    return [shlex.split(ln) for ln in lines]


# Training runs: ~30-60 s of CPU each on 2 free cores; the suite's 600 s hang guard is too tight when the
# machine is shared (these timed out at 6 % of a core).
TRAIN_TIMEOUT = pytest.mark.timeout(1800)


@TRAIN_TIMEOUT
def test_readme_commands_act_train_checkpoint_and_exact_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's commands, run by lerowds' CLI in-process: ACT on the converted fixture on ``lerowds.Loader``
    (the default; one thread for ``--num_workers=0``), 20 frames in batches of 8 (8, 8, 4); resumed mid-epoch
    0, the run continues across the epoch's end."""
    need_lerobot()
    from lerowds import cli, train

    convert_cmd, train_cmd, resume_cmd = readme_commands()
    assert convert_cmd[:2] == ["lerowds", "convert"] and train_cmd[:2] == resume_cmd[:2] == [
        "lerowds",
        "train",
    ]
    convert_cmd = [
        str(need_shared_fixture()) if a.endswith("shared/fixtures/lerobot_v3_small") else a
        for a in convert_cmd
    ]
    monkeypatch.chdir(tmp_path)
    records: list[tuple] = []
    monkeypatch.setattr(train, "run", lambda argv: recorded_run(argv, records))
    assert cli.main(convert_cmd[1:]) == 0
    assert cli.main(train_cmd[1:]) == 0
    full, records[:] = list(records), []
    assert cli.main(resume_cmd[1:]) == 0
    check_resume(tmp_path / "act_run", full, records, steps=5, resume_at=2, per_epoch=3, loader="threads")

    # fine-tune from the final checkpoint (lerobot's --policy.path) on other episodes: weights and processors
    # come from the checkpoint, the stats from this dataset
    records[:] = []
    pretrained = "act_run/checkpoints/last/pretrained_model"
    finetune = [
        f"--policy.path={pretrained}",
        "--policy.device=cpu",
        "--lerowds.source=fixture_wds",
        "--dataset.episodes=[5]",
        "--batch_size=8",
        "--num_workers=0",
        "--steps=1",
        "--output_dir=ft_run",
    ]
    assert cli.main(["train", *finetune]) == 0
    assert len(records) == 1 and {e for e, _ in records[0][3]} == {5} and math.isfinite(records[0][4])
    config = json.loads(
        (tmp_path / "ft_run/checkpoints/000001/pretrained_model/train_config.json").read_text()
    )
    assert config["lerowds"]["source"] == "fixture_wds" and config["dataset"]["episodes"] == [5]


@TRAIN_TIMEOUT
def test_diffusion_train_checkpoint_and_exact_resume(converted: Path, tmp_path: Path) -> None:
    """Diffusion on torch's DataLoader (``--lerowds.loader=dataloader``), 2 workers (lerobot's default
    spawn): 22 frames (11 per worker: 8, 8, 3, 3); resumed at the very end of epoch 0 (the dataset moves on
    to epoch 1 by itself)."""
    out = tmp_path / "run"
    argv = [
        *TINY_DIFFUSION_FLAGS,
        f"--lerowds.source={converted}",
        "--lerowds.loader=dataloader",
        "--dataset.episodes=[9]",
        "--batch_size=8",
        "--num_workers=2",
        "--steps=6",
        "--save_freq=4",
        "--log_freq=1",
        f"--output_dir={out}",
        "--seed=7",
    ]
    full = train(argv)
    config = checkpoint(out, 4) / "pretrained_model" / "train_config.json"
    resumed = train(["--resume=true", f"--config_path={config}"])
    check_resume(out, full, resumed, steps=6, resume_at=4, per_epoch=4, loader="dataloader")


def test_cli_errors_name_the_flag(converted: Path) -> None:
    from lerowds.train import parse_config

    with pytest.raises(ConfigError, match="needs --lerowds.source=DIR"):
        parse_config([*TINY_ACT_FLAGS])
    with pytest.raises(ConfigError, match=r"does not support --dataset.streaming=true"):
        parse_config([*TINY_ACT_FLAGS, f"--lerowds.source={converted}", "--dataset.streaming=true"])
    with pytest.raises(
        ConfigError, match=r"--lerowds.loader must be one of threads, dataloader, got 'procs'"
    ):
        parse_config([*TINY_ACT_FLAGS, f"--lerowds.source={converted}", "--lerowds.loader=procs"])
    with pytest.raises(ConfigError, match=r"--lerowds.num_threads must be an integer >= 1, got 0"):
        parse_config([*TINY_ACT_FLAGS, f"--lerowds.source={converted}", "--lerowds.num_threads=0"])
