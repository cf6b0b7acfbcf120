"""``lerowds train`` across processes: 2 ranks under ``accelerate launch`` on CPU train a tiny ACT on the
``lerowds.Loader`` (2 threads per rank), reading ``hf://`` from a loopback Hub, image transforms on, wandb
offline; preempted at a checkpoint and resumed, every rank continues with exactly the batches and the losses
of the uninterrupted run."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lerobot_env import TINY_ACT_FLAGS, need_lerobot, shared_converted

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reader"))
from httpserver import HubRepo, LoopbackServer

SCRIPT = Path(__file__).with_name("train_ranks_script.py")
HUB_REPO = "lerowds/fixture_small_lerowds"


@pytest.fixture(scope="module")
def converted(request: pytest.FixtureRequest) -> Path:
    need_lerobot()
    return shared_converted(request)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(argv: list[str], out: Path, env: dict[str, str]) -> list[dict]:
    """``accelerate launch --num_processes=2 train_ranks_script.py OUT argv``; the per-rank reports.

    accelerate 1.x starts one process for ``--cpu``; its ``--multi_gpu`` mode (torch.distributed.run) starts
    two on a CPU-only machine, and ``--policy.device=cpu`` makes lerobot's Accelerator join them over gloo."""
    out.mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        f"--main_process_port={_free_port()}",
        str(SCRIPT),
        str(out),
        *argv,
    ]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
    reports = sorted((json.loads(p.read_text()) for p in out.glob("rank*.json")), key=lambda r: r["rank"])
    if len(reports) != 2 or reports[0]["num_processes"] != 2:
        message = f"accelerate launch started {len(reports)} process(es), not 2"
        if os.environ.get("LEROWDS_LEROBOT_ENV") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return reports


@pytest.mark.timeout(2400)
def test_two_ranks_hub_source_transforms_wandb_preempted_and_resumed(converted: Path, tmp_path: Path) -> None:
    """Episodes 0 and 5 (45 frames): 22 per rank (the odd frame dropped), 11 per thread, batches of 4:
    6 batches per rank and epoch. Checkpoint at step 4 (mid-epoch), resumed to step 8 (into epoch 1)."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env |= {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",  # the loopback Hub is the only endpoint
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
    }
    argv = [
        *TINY_ACT_FLAGS,
        f"--lerowds.source=hf://datasets/{HUB_REPO}/{converted.name}",
        f"--lerowds.cache_dir={cache}",
        "--lerowds.episode_pool_size=2",
        "--lerowds.num_threads=2",
        "--dataset.episodes=[0,5]",
        "--dataset.image_transforms.enable=true",
        "--batch_size=4",
        "--steps=8",
        "--save_freq=4",
        "--log_freq=2",
        "--seed=7",
        "--wandb.enable=true",
        "--wandb.mode=offline",
        "--wandb.project=lerowds-test",
        f"--output_dir={run_dir}",
    ]
    hub = HubRepo(HUB_REPO)
    with LoopbackServer(converted.parent, hub=hub) as srv:
        env["HF_ENDPOINT"] = srv.base
        full = launch(argv, tmp_path / "full", env)
        config = run_dir / "checkpoints" / "000004" / "pretrained_model" / "train_config.json"
        resumed = launch(["--resume=true", f"--config_path={config}"], tmp_path / "resumed", env)
        assert any(rel.startswith(f"{converted.name}/shards/") for rel, _ in srv.requests)  # read over HTTP

    per_epoch = 6
    frames = {}
    for rank, (a, b) in enumerate(zip(full, resumed)):
        steps = a["steps"]
        assert [s[0] for s in steps] == list(range(1, 9)), rank
        assert [(s[1], s[2]) for s in steps] == [(i // per_epoch, i % per_epoch + 1) for i in range(8)], rank
        frames[rank] = {tuple(f) for s in steps if s[1] == 0 for f in s[3]}
        assert sum(len(s[3]) for s in steps if s[1] == 0) == len(frames[rank]) == 22, rank
        assert all(math.isfinite(s[4]) and s[4] > 0 for s in steps), rank
        # the resumed rank continues with exactly the uninterrupted run's batches and losses
        assert [s[0] for s in b["steps"]] == list(range(5, 9)), rank
        assert [s[3] for s in b["steps"]] == [s[3] for s in steps[4:]], rank
        assert [s[4] for s in b["steps"]] == [s[4] for s in steps[4:]], rank
    assert not frames[0] & frames[1]  # the ranks split the frames
    assert full[0]["steps"][0][4] != full[1]["steps"][0][4]  # ... so their losses differ

    saved = json.loads((config.parents[1] / "training_state" / "lerowds_loader.json").read_text())
    assert saved["step"] == 4 and saved["dataset"]["batches_consumed"] == 4 and saved["loader"] == "threads"
    runs = sorted((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert runs, f"no offline wandb run under {run_dir / 'wandb'}"
