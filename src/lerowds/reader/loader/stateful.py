"""``StatefulLoader``: a torch DataLoader over a lerowds dataset as a torch ``Stateful``.

It counts the batches the DataLoader yields in the current epoch, so ``state_dict()`` needs no arguments
(``accelerator.register_for_checkpointing``, ``torch.distributed.checkpoint``, Lightning), and delegates to
the dataset's counter form ``ds.state_dict(batches_consumed=..., batch_size=..., epoch=..., num_workers=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader

from lerowds.errors import ConfigError
from lerowds.reader.loader.threads import check_dataset
from lerowds.reader.resume.state import ResumeState


class StatefulLoader:
    """Wrap ``DataLoader(ds, ...)`` (ds a ``LeRobotWebDataset`` or a mix) to save and restore mid-epoch.

    Iterate the wrapper instead of the DataLoader. ``load_state_dict`` must come before the first
    iteration when the DataLoader keeps ``persistent_workers`` (running workers cannot learn a new state).
    """

    def __init__(self, loader: DataLoader) -> None:
        if not isinstance(loader, DataLoader):
            raise ConfigError(f"StatefulLoader wraps a torch DataLoader, got {type(loader).__name__}")
        check_dataset(loader.dataset)
        self.loader = loader
        self.dataset = loader.dataset
        self._epoch: int | None = None  # None: not started, the dataset's next epoch
        self._consumed = 0

    def __len__(self) -> int:
        return len(self.loader)

    def _batch_size(self) -> int:
        return 1 if self.loader.batch_size is None else int(self.loader.batch_size)

    def __iter__(self) -> Iterator[Any]:
        it = iter(self.loader)
        started = False
        for batch in it:
            if not started:
                # the workers have begun the epoch (and applied a pending resume) on the shared clock
                started = True
                self._epoch = self.dataset.epoch
                resume = self.dataset.stream.resume
                resumed = resume is not None and resume.epoch == self._epoch
                self._consumed = resume.batches_consumed if resumed else 0
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """The epoch and the batches yielded in it, plus the dataset's configuration."""
        return self.dataset.state_dict(
            batches_consumed=self._consumed,
            batch_size=self._batch_size(),
            epoch=self.dataset.epoch if self._epoch is None else self._epoch,
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
        self.dataset.load_state_dict(state)
        resume = ResumeState.from_dict(state)
        self._epoch, self._consumed = resume.epoch, resume.batches_consumed
