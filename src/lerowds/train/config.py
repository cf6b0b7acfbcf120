"""The ``lerowds train`` configuration: lerobot-train's own (``TrainPipelineConfig``, parsed by draccus with the
same flags) plus a ``lerowds`` block naming the converted dataset. Imports lerobot: load it only after
``compat.require_lerobot()``.

No ``from __future__ import annotations`` here: draccus reads these annotations as types.
"""

import importlib
from dataclasses import dataclass, field

from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig

from lerowds.errors import ConfigError

LOADERS = ("threads", "dataloader")

# What lerobot-train's imports register: the --policy.type and --env.type choices draccus parses.
for _module in ("lerobot.policies", "lerobot.envs"):
    importlib.import_module(_module)


@dataclass
class LerowdsSourceConfig:
    # A dataset converted by `lerowds convert`: a local directory, an http(s):// URL or hf://datasets/ORG/NAME.
    source: str | None = None
    # Whole episodes each consumer (rank x DataLoader worker) holds and draws frames from.
    episode_pool_size: int = 64
    # "auto", "pyav" or "torchcodec".
    decoder: str = "auto"
    # Local cache of a remote source, and its size bound (e.g. "20GB").
    cache_dir: str | None = None
    cache_limit: str | None = None
    # Optional bound on the bytes of the episodes in a consumer's pool (e.g. "512MB").
    pool_byte_budget: str | None = None
    # "threads": lerowds.Loader (decoding threads in the training process, about half the CPU per sample);
    # "dataloader": torch's DataLoader with --num_workers worker processes (lerobot-train's own loader).
    loader: str = "threads"
    # Decoding threads of the "threads" loader; default: --num_workers (at least 1). A checkpoint resumes
    # exactly under either loader as long as this count equals the saved one's.
    num_threads: int | None = None


@dataclass
class LerowdsDatasetConfig(DatasetConfig):
    # Defaults to the converted dataset's own repo_id (recorded in its index).
    repo_id: str = ""


@dataclass
class LerowdsTrainConfig(TrainPipelineConfig):
    # lerobot's dataset block: repo_id defaults to the converted dataset's; episodes, image_transforms,
    # use_imagenet_stats apply; streaming, eval_split and buckets do not (lerowds always streams).
    dataset: LerowdsDatasetConfig = field(default_factory=LerowdsDatasetConfig)
    lerowds: LerowdsSourceConfig = field(default_factory=LerowdsSourceConfig)

    def validate(self) -> None:
        super().validate()
        if not self.lerowds.source:
            raise ConfigError(
                "lerowds train needs --lerowds.source=DIR, an http(s):// URL or hf://datasets/ORG/NAME "
                "(a dataset converted with `lerowds convert`)"
            )
        if self.lerowds.loader not in LOADERS:
            raise ConfigError(
                f"--lerowds.loader must be one of {', '.join(LOADERS)}, got {self.lerowds.loader!r}"
            )
        threads = self.lerowds.num_threads
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ConfigError(f"--lerowds.num_threads must be an integer >= 1, got {threads!r}")
        unsupported = {
            "--dataset.streaming=true": self.dataset.streaming,
            "--dataset.eval_split > 0": self.dataset.eval_split > 0,
            "--dataset.repo_type=bucket": self.dataset.repo_type != "dataset",
            "--env.* (evaluation in a simulator: run lerobot-eval on a checkpoint)": self.env is not None,
            "--reward_model.*": self.reward_model is not None,
            "--peft.*": self.peft is not None,
            "--sample_weighting.*": self.sample_weighting is not None,
            "--job.target (HF Jobs)": self.job.is_remote,
        }
        bad = [name for name, on in unsupported.items() if on]
        if bad:
            raise ConfigError(f"lerowds train does not support {', '.join(bad)}; drop the flag(s)")
