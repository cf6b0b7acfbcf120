"""Where the training loop stands in the data: ``(epoch, batches consumed in it)``, saved next to a lerobot
checkpoint's training state so that ``--resume`` continues with exactly the batches an uninterrupted run
would have seen. No lerobot import here."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lerowds.checks import check_int
from lerowds.errors import ConfigError

LOADER_STATE_FILE = "lerowds_loader.json"  # in the checkpoint's training_state/ directory


class Resumable(Protocol):
    """What the loop needs of a lerowds dataset (``LeRobotWebDataset`` or ``MixedDataset``)."""

    @property
    def epoch(self) -> int: ...

    def state_dict(
        self,
        *,
        batches_consumed: int,
        batch_size: int,
        epoch: int | None = ...,
        num_workers: int | None = ...,
        drop_last: bool = ...,
    ) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class LoaderPosition:
    """``batches`` batches of epoch ``epoch`` consumed."""

    epoch: int = 0
    batches: int = 0

    def __post_init__(self) -> None:
        for name in ("epoch", "batches"):
            check_int(f"loader position: {name}", getattr(self, name), 0)


def positioned_batches(
    loader: Iterable[Any], ds: Resumable, start: LoaderPosition
) -> Iterator[tuple[LoaderPosition, Any]]:
    """The loader's batches, epoch after epoch, each with the position reached once it is consumed.

    The dataset starts its next epoch by itself each time the loader is iterated again; which epoch that is
    is read from the dataset once its first batch is out (after a resume at an epoch's very end the dataset
    has moved on to the next epoch by itself)."""
    resume: LoaderPosition | None = start
    while True:
        n, epoch, base = 0, start.epoch, 0
        for batch in loader:
            if n == 0:
                epoch = ds.epoch
                base = resume.batches if resume is not None and epoch == resume.epoch else 0
            n += 1
            yield LoaderPosition(epoch, base + n), batch
        if n == 0:
            raise ConfigError(
                f"the data loader yielded no batch in epoch {epoch}: the dataset (or this rank's share) is empty"
            )
        resume = None


def save_loader_state(
    training_state_dir: Path,
    ds: Resumable,
    position: LoaderPosition,
    *,
    step: int,
    batch_size: int,
    num_workers: int,
    loader: str | None = None,
) -> Path:
    """Write the dataset's resume state for ``position`` (atomically) next to lerobot's training state.
    ``num_workers`` is the rank's consumer count (DataLoader workers or ``lerowds.Loader`` threads: their
    states are interchangeable); ``loader`` names which loader wrote it (informative only)."""
    state = ds.state_dict(
        batches_consumed=position.batches,
        batch_size=batch_size,
        epoch=position.epoch,
        num_workers=num_workers,
    )
    path = Path(training_state_dir) / LOADER_STATE_FILE
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    saved = {"step": step, "dataset": state} | ({} if loader is None else {"loader": loader})
    tmp.write_text(json.dumps(saved, indent=1))
    os.replace(tmp, path)
    return path


def load_loader_state(training_state_dir: Path, ds: Resumable, *, step: int) -> LoaderPosition:
    """Load the state saved with the checkpoint at ``step`` into ``ds``; the position training resumes from."""
    path = Path(training_state_dir) / LOADER_STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"{path} is missing: this checkpoint was not written by lerowds train, so where its data stood is "
            "unknown. Fine-tune from it instead (--policy.path=<checkpoint>/pretrained_model, no --resume)"
        )
    saved = json.loads(path.read_text())
    if saved.get("step") != step:
        raise ConfigError(
            f"{path} was saved at step {saved.get('step')!r} but the checkpoint is at step {step}"
        )
    ds.load_state_dict(saved["dataset"])
    return LoaderPosition(int(saved["dataset"]["epoch"]), int(saved["dataset"]["batches_consumed"]))
