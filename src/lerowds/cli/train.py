"""``lerowds train``: lerobot's own training on a converted dataset."""

from __future__ import annotations

import argparse

from lerowds.cli.command import EXIT_OK, Command


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "lerobot_args",
        nargs=argparse.REMAINDER,
        help="lerobot-train's arguments (--policy.type=act, --steps, --batch_size, --output_dir, --resume, "
        "--config_path, --wandb.enable, ...) plus --lerowds.source=DIR|URL|hf://datasets/ORG/NAME; "
        "see docs/LEROBOT.md",
    )


def _train(args: argparse.Namespace) -> int:
    from lerowds.train import run

    run(args.lerobot_args)
    return EXIT_OK


COMMAND = Command(
    "train",
    "train a lerobot policy with lerobot's own training on a converted dataset",
    _train_arguments,
    _train,
)
