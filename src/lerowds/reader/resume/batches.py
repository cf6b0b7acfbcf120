"""Exact mid-epoch resume through a torch DataLoader over an IterableDataset: what each worker continues.

With ``num_workers = K > 0`` (and ``in_order=True``, the default) every worker batches its own stream
(``batch_size`` samples, the last batch partial unless ``drop_last``, which each worker applies to its
own last batch) and the main process returns batches round-robin over workers 0..K-1, skipping workers
whose stream has ended; every new iterator (``persistent_workers`` or not) restarts the cycle at worker 0
(torch ``_MultiProcessingDataLoaderIter._reset``: ``_worker_queue_idx_cycle = cycle(range(K))``).
So after ``n`` batches the uninterrupted loader goes on with some worker ``s``; a resumed loader, which
starts at worker 0, reproduces the rest exactly when physical worker ``p`` continues original worker
``(s + p) % K``'s stream after skipping the samples that stream already gave. ``num_workers=0`` is one
stream (pass one count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

from lerowds.errors import ConfigError, ResumeMismatchError


def _check_counts(worker_counts: Sequence[int], batch_size: int) -> None:
    if len(worker_counts) == 0:
        raise ConfigError(
            "worker_counts is empty; pass one count per DataLoader worker (one if num_workers=0)"
        )
    if any(c < 0 for c in worker_counts):
        raise ConfigError(f"worker_counts must be >= 0, got {list(worker_counts)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")


def worker_batch_counts(
    worker_counts: Sequence[int], *, batch_size: int, drop_last: bool = False
) -> list[int]:
    """Batches each worker yields: ``ceil(count / batch_size)``, or ``count // batch_size`` with ``drop_last``."""
    _check_counts(worker_counts, batch_size)
    if drop_last:
        return [c // batch_size for c in worker_counts]
    return [-(-c // batch_size) for c in worker_counts]


def dataloader_batch_order(
    worker_counts: Sequence[int], *, batch_size: int, drop_last: bool = False
) -> list[tuple[int, int]]:
    """The DataLoader's batches as ``(worker, batch number within that worker)``: round-robin, skip the done."""
    batches = worker_batch_counts(worker_counts, batch_size=batch_size, drop_last=drop_last)
    return [(w, r) for r in range(max(batches)) for w in range(len(batches)) if r < batches[w]]


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """Physical worker ``p`` of the resumed DataLoader continues worker ``sources[p]``'s stream of this epoch
    after skipping ``skips[p]`` samples. When ``epoch_complete``, start the next epoch from scratch."""

    sources: tuple[int, ...]
    skips: tuple[int, ...]
    batches_consumed: int
    total_batches: int

    def __post_init__(self) -> None:
        if sorted(self.sources) != list(range(len(self.sources))):
            raise ConfigError(f"ResumePlan.sources must be a permutation of the workers, got {self.sources}")
        if len(self.skips) != len(self.sources) or any(s < 0 for s in self.skips):
            raise ConfigError(f"ResumePlan.skips must be one count >= 0 per worker, got {self.skips}")
        if not 0 <= self.batches_consumed <= self.total_batches:
            raise ConfigError(
                f"ResumePlan needs 0 <= batches_consumed <= total_batches, got "
                f"{self.batches_consumed} and {self.total_batches}"
            )

    @property
    def epoch_complete(self) -> bool:
        return self.batches_consumed == self.total_batches

    def for_worker(self, worker: int) -> tuple[int, int]:
        """``(original worker, samples to skip)`` for physical worker ``worker`` (0 when num_workers=0)."""
        if not 0 <= worker < len(self.sources):
            raise ConfigError(f"worker must be in [0, {len(self.sources)}), got {worker!r}")
        return self.sources[worker], self.skips[worker]


def _taken_after(batches: Sequence[int], consumed: int) -> tuple[list[int], int]:
    """Batches taken from each worker after ``consumed`` < total batches, and the worker that gives the next."""
    lo, hi = 0, max(batches)  # largest full round count r with sum(min(r, b)) <= consumed
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(mid, b) for b in batches) <= consumed:
            lo = mid
        else:
            hi = mid - 1
    rounds = lo
    rest = consumed - sum(min(rounds, b) for b in batches)
    active = [w for w, b in enumerate(batches) if b > rounds]  # rest < len(active) as rounds is maximal
    taken = [min(rounds, b) for b in batches]
    for w in active[:rest]:
        taken[w] += 1
    return taken, active[rest]


def resume_plan(
    worker_counts: Sequence[int], *, batch_size: int, batches_consumed: int, drop_last: bool = False
) -> ResumePlan:
    """Where each worker of a resumed DataLoader picks up so it yields exactly the batches still to come.

    ``worker_counts[w]``: samples worker ``w`` yields this epoch (one entry for num_workers=0); the resumed
    DataLoader must use the same ``num_workers``, ``batch_size`` and ``drop_last``.
    """
    batches = worker_batch_counts(worker_counts, batch_size=batch_size, drop_last=drop_last)
    total = sum(batches)
    num_workers = len(worker_counts)
    if not isinstance(batches_consumed, Integral) or not 0 <= batches_consumed <= total:
        raise ResumeMismatchError(
            f"batches_consumed={batches_consumed!r} but this epoch has {total} batches "
            f"(worker_counts={list(worker_counts)}, batch_size={batch_size}, drop_last={drop_last})"
        )
    if batches_consumed == total:
        return ResumePlan(tuple(range(num_workers)), (0,) * num_workers, batches_consumed, total)
    taken, start = _taken_after(batches, batches_consumed)
    sources = tuple((start + p) % num_workers for p in range(num_workers))
    skips = tuple(min(taken[w] * batch_size, worker_counts[w]) for w in sources)
    return ResumePlan(sources, skips, batches_consumed, total)
