"""``StatefulLoader``: a torch DataLoader over a lerowds dataset as a torch ``Stateful``; and ``Position``, the
epoch/batch bookkeeping it shares with ``lerowds.Loader``.

Both count the batches they yield in the current epoch, so ``state_dict()`` needs no arguments
(``accelerator.register_for_checkpointing``, ``torch.distributed.checkpoint``, Lightning), and delegate to
the dataset's counter form ``ds.state_dict(batches_consumed=..., batch_size=..., epoch=..., num_workers=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader

from lerowds.errors import ConfigError
from lerowds.reader.stream import check_source


class Position:
    """Where a loader over ``dataset`` stands: the epoch it is in (None: not started, the dataset's next) and
    the batches of that epoch yielded so far, a resume's included."""

    def __init__(self, dataset: Any) -> None:
        check_source(dataset)
        self.dataset = dataset
        self.epoch: int | None = None
        self.consumed = 0

    def begin(self, epoch: int, consumed: int) -> None:
        """An iteration began ``epoch`` after ``consumed`` batches (a resume's, else 0)."""
        self.epoch, self.consumed = epoch, consumed

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
        self.epoch, self.consumed = None, 0

    def state_dict(self, *, batch_size: int, num_workers: int, drop_last: bool) -> dict[str, Any]:
        """The epoch and the batches yielded in it, plus the dataset's configuration."""
        return self.dataset.state_dict(
            batches_consumed=self.consumed,
            batch_size=batch_size,
            epoch=self.dataset.epoch if self.epoch is None else self.epoch,
            num_workers=num_workers,
            drop_last=drop_last,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Check ``state`` and make the dataset's next iteration continue it."""
        self.dataset.load_state_dict(state)
        resume = self.dataset.stream.resume
        self.epoch, self.consumed = resume.epoch, resume.batches_consumed


class StatefulLoader:
    """Wrap ``DataLoader(ds, ...)`` (ds a ``LeRobotWebDataset`` or a mix) to save and restore mid-epoch.

    Iterate the wrapper instead of the DataLoader. ``load_state_dict`` must come before the first
    iteration when the DataLoader keeps ``persistent_workers`` (running workers cannot learn a new state).
    """

    def __init__(self, loader: DataLoader) -> None:
        if not isinstance(loader, DataLoader):
            raise ConfigError(f"StatefulLoader wraps a torch DataLoader, got {type(loader).__name__}")
        self.position = Position(loader.dataset)
        self.loader = loader
        self.dataset = loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        started = False
        for batch in self.loader:
            if not started:
                # the workers have begun the epoch (and applied a pending resume) on the shared clock
                started = True
                epoch, resume = self.dataset.epoch, self.dataset.stream.resume
                resumed = resume is not None and resume.epoch == epoch
                self.position.begin(epoch, resume.batches_consumed if resumed else 0)
            self.position.consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch and the batches yielded in it, plus the dataset's configuration."""
        return self.position.state_dict(
            batch_size=1 if self.loader.batch_size is None else int(self.loader.batch_size),
            num_workers=self.loader.num_workers,
            drop_last=self.loader.drop_last,
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """The next iteration continues the saved epoch after the saved batch."""
        if self.loader.persistent_workers and getattr(self.loader, "_iterator", None) is not None:
            raise ConfigError(
                "StatefulLoader.load_state_dict after the DataLoader's persistent workers started: they "
                "cannot learn the new state; load the state before the first iteration"
            )
        self.position.load_state_dict(state)
