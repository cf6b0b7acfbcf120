"""Helpers of the DataLoader-level reader tests (distributed split, exact resume, epochs)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

Batch = dict[str, Any]


def numpy_collate(samples: list[dict[str, Any]]) -> Batch:
    """torch's default collate, then tensors as numpy arrays.

    Same values and dtypes; numpy arrays travel from DataLoader workers by plain pickling instead of one
    shared-memory file per tensor, which makes the many short-lived loaders of the resume sweep ~4x faster.
    """
    batch = default_collate(samples)
    return {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def epochs(loader: DataLoader, count: int = 1) -> list[list[Batch]]:
    """``count`` consecutive iterations of the same loader (an uninterrupted run), as lists of batches."""
    return [list(loader) for _ in range(count)]


def loader(
    ds: Any, *, batch_size: int | None, num_workers: int, tensors: bool = False, **kw: Any
) -> DataLoader:
    collate = None if tensors or batch_size is None else numpy_collate
    return DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=collate, **kw)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and np.array_equal(a, b)
        )
    return type(a) is type(b) and a == b


def same_sample(a: Batch, b: Batch) -> bool:
    """Every key, every value (tensors and arrays by dtype, shape and content; strings equal)."""
    return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)


def assert_same_batches(got: list[Batch], want: list[Batch], what: str) -> None:
    """``got == want`` value for value; the message names the first differing batch and its indices."""
    assert len(got) == len(want), f"{what}: {len(got)} batches, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        if not same_sample(g, w):
            keys = [k for k in w if k not in g or not _same_value(g[k], w[k])]
            raise AssertionError(
                f"{what}: batch {i} differs in {keys}: index {_index_list(g)} vs expected {_index_list(w)}"
            )


def _index_list(batch: Batch) -> list[int]:
    return np.asarray(batch.get("index", [])).reshape(-1).tolist()


def indices(batches: Iterable[Batch]) -> list[int]:
    """The ``index`` of every sample of some batches (or of single samples: ``batch_size=None``)."""
    return [i for b in batches for i in np.asarray(b["index"]).reshape(-1).tolist()]


class LogToFile:
    """A DataLoader ``worker_init_fn``: send the lerowds log records of each worker process to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, worker_id: int) -> None:
        handler = logging.FileHandler(self.path)
        handler.setFormatter(logging.Formatter(f"worker{worker_id} %(levelname)s %(message)s"))
        log = logging.getLogger("lerowds")
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def loader_error(dl: DataLoader) -> Exception:
    """The exception iterating ``dl`` raises, its worker processes already shut down.

    Without the traceback the loader's iterator dies by reference count right here; left in a reference
    cycle (e.g. ``pytest.raises``' ExceptionInfo <-> the test's frame) it is shut down later by the garbage
    collector, which waits ~5 s per worker.
    """
    it = None
    try:
        it = iter(dl)  # with num_workers=0 the dataset's __iter__ runs (and may raise) here
        for _ in it:
            pass
    except Exception as e:  # noqa: BLE001 - returned to the test to check
        e.__traceback__ = None
        return e
    finally:
        del it
    raise AssertionError("iterating the loader raised nothing")
