"""The loader of ``lerowds train`` (no lerobot needed): ``lerowds.Loader`` by default, and the lock that keeps
the training thread's random stream independent of the loader threads' seeded transforms."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from train_helpers import convert_tabular

from lerowds import ConfigError, LeRobotWebDataset, Loader
from lerowds.train.data import consumers, make_loader, rng_guard

LENGTHS = [9, 14, 6, 11]


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_tabular(tmp_path_factory.mktemp("train_loader"), "lerowds/train_loader", LENGTHS)


def config(
    loader: str = "threads", num_threads: int | None = None, num_workers: int = 4, batch_size: int = 4
):
    return SimpleNamespace(
        lerowds=SimpleNamespace(loader=loader, num_threads=num_threads),
        num_workers=num_workers,
        batch_size=batch_size,
    )


def test_threads_loader_is_the_default_and_counts_consumers(tabular: Path) -> None:
    ds = LeRobotWebDataset(tabular, seed=1)
    loader = make_loader(ds, config(num_threads=3), torch.device("cpu"))
    assert isinstance(loader, Loader) and loader.num_threads == 3 and loader.batch_size == 4
    assert loader.device is None and not loader.pin_memory  # CPU: views of the loader's buffers
    assert consumers(config()) == 4  # --num_workers by default
    assert consumers(config(num_workers=0)) == 1
    assert consumers(config("dataloader", num_threads=3, num_workers=0)) == 0


def test_threads_loader_refuses_language_columns(tabular: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = LeRobotWebDataset(tabular)
    monkeypatch.setattr(type(ds.meta), "has_language_columns", property(lambda self: True))
    with pytest.raises(ConfigError, match="language columns.*--lerowds.loader=dataloader"):
        make_loader(ds, config(), torch.device("cpu"))


def draws(n: int) -> torch.Tensor:
    return torch.stack([torch.rand(64).sum() for _ in range(n)])


def test_rng_guard_keeps_the_training_stream_while_threads_transform(tabular: Path) -> None:
    """Loader threads run seeded transforms inside a ``fork_rng`` of torch's one CPU RNG; the training
    thread draws from it meanwhile (dropout on a CPU device). Under ``rng_guard`` its draws are those of a
    run without a loader. (Without the guard they were not, in every try: the threads' fork/restore lands
    between the training thread's draws; not asserted here, as a race may miss.)"""

    def transform(sample: dict) -> dict:
        draws(20)  # a random augmentation, long enough to overlap the training thread's draws
        return sample

    ds = LeRobotWebDataset(tabular, transform=transform, seed=3)
    guard = rng_guard(ds, config())
    assert not isinstance(guard, nullcontext)
    assert isinstance(rng_guard(ds, config("dataloader")), nullcontext)
    assert isinstance(rng_guard(LeRobotWebDataset(tabular), config()), nullcontext)  # no transforms

    torch.manual_seed(0)
    want = [draws(20) for _ in range(3 * sum(LENGTHS))]
    torch.manual_seed(0)
    got = []
    loader = Loader(ds, batch_size=1, num_threads=2, prefetch=4)
    for _ in range(3):
        for _batch in loader:
            with guard:
                got.append(draws(20))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
