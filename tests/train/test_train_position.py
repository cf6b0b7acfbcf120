"""The data position ``lerowds train`` keeps and saves beside lerobot's checkpoints (no lerobot needed):
restoring any saved position continues with exactly the batches an uninterrupted run yields next."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader
from train_helpers import convert_tabular

from lerowds import ConfigError, LeRobotWebDataset, Loader, ResumeMismatchError
from lerowds.train.position import (
    LOADER_STATE_FILE,
    LoaderPosition,
    load_loader_state,
    positioned_batches,
    save_loader_state,
)

LENGTHS = [7, 1, 12, 5, 9, 4]  # 38 frames


@pytest.fixture(scope="module")
def tabular(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_tabular(tmp_path_factory.mktemp("train_position"), "lerowds/position", LENGTHS)


def identities(batch) -> tuple:
    return tuple(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))


def steps(ds: LeRobotWebDataset, loader: DataLoader | Loader, start: LoaderPosition, n: int) -> list[tuple]:
    stream = positioned_batches(loader, ds, start)
    return [(pos, identities(batch)) for pos, batch in (next(stream) for _ in range(n))]


@pytest.mark.parametrize(
    "kind, num_workers, batch_size",
    [("dataloader", 0, 8), ("dataloader", 2, 5), ("threads", 1, 8), ("threads", 2, 5)],
)
def test_resume_from_any_saved_position_continues_the_same_batches(
    tabular: Path, tmp_path: Path, kind: str, num_workers: int, batch_size: int
) -> None:
    """Both loaders of ``lerowds train``: torch's DataLoader, and ``lerowds.Loader`` whose thread ``w`` plays
    worker ``w`` (the same batches as the DataLoader; a single thread is the DataLoader without workers)."""

    def fresh() -> tuple[LeRobotWebDataset, DataLoader | Loader]:
        ds = LeRobotWebDataset(tabular, episode_pool_size=2, seed=5)
        if kind == "threads":
            return ds, Loader(ds, batch_size=batch_size, num_threads=num_workers)
        return ds, DataLoader(ds, batch_size=batch_size, num_workers=num_workers)

    ds, loader = fresh()
    full = steps(ds, loader, LoaderPosition(), 20)  # several epochs
    per_epoch = max(p.batches for p, _ in full if p.epoch == 0)
    assert [p for p, _ in full] == [LoaderPosition(i // per_epoch, i % per_epoch + 1) for i in range(20)]
    epoch0 = [f for p, b in full if p.epoch == 0 for f in b]
    assert sorted(epoch0) == sorted((e, f) for e, n in enumerate(LENGTHS) for f in range(n))
    epoch1 = [f for p, b in full if p.epoch == 1 for f in b]
    assert sorted(epoch1) == sorted(epoch0)
    pinned = {  # the first 8 (episode, frame) of epochs 0 and 1 (ORDER_VERSION 2): each epoch reshuffled
        (0, 8): [
            [(2, 1), (2, 9), (2, 11), (2, 10), (2, 2), (1, 0), (2, 8), (2, 3)],
            [(3, 4), (0, 3), (0, 6), (0, 5), (3, 0), (3, 1), (3, 2), (0, 0)],
        ],
        (2, 5): [
            [(2, 1), (2, 9), (2, 11), (2, 10), (2, 2), (4, 5), (4, 8), (3, 0)],
            [(3, 4), (0, 3), (0, 6), (0, 5), (3, 0), (4, 3), (4, 2), (4, 1)],
        ],
    }
    assert [epoch0[:8], epoch1[:8]] == pinned[
        0 if kind == "threads" and num_workers == 1 else num_workers, batch_size
    ]

    for k in (1, per_epoch - 1, per_epoch, per_epoch + 2):  # mid-epoch, last batch, epoch end, next epoch
        state_dir = tmp_path / f"step{k}"
        state_dir.mkdir()
        save_loader_state(
            state_dir, ds, full[k - 1][0], step=k, batch_size=batch_size, num_workers=num_workers
        )
        again, again_loader = fresh()
        start = load_loader_state(state_dir, again, step=k)
        assert start == full[k - 1][0]
        assert steps(again, again_loader, start, 20 - k) == full[k:], k


def test_missing_or_mismatched_loader_state_is_refused(tabular: Path, tmp_path: Path) -> None:
    ds = LeRobotWebDataset(tabular, seed=5)
    with pytest.raises(ConfigError, match=f"{LOADER_STATE_FILE} is missing: this checkpoint was not written"):
        load_loader_state(tmp_path, ds, step=3)
    save_loader_state(tmp_path, ds, LoaderPosition(0, 2), step=2, batch_size=4, num_workers=0)
    with pytest.raises(ConfigError, match="saved at step 2 but the checkpoint is at step 3"):
        load_loader_state(tmp_path, ds, step=3)
    with pytest.raises(
        ResumeMismatchError, match="seed"
    ):  # another seed: lerowds' own resume check names the field
        load_loader_state(tmp_path, LeRobotWebDataset(tabular, seed=6), step=2)
    with pytest.raises(ConfigError, match="batches must be an integer >= 0, got -1"):
        LoaderPosition(0, -1)


def test_empty_loader_is_an_error_not_a_hang(tabular: Path) -> None:
    ds = LeRobotWebDataset(tabular)
    with pytest.raises(ConfigError, match="yielded no batch in epoch 0"):
        next(positioned_batches([], ds, LoaderPosition()))


def test_a_checkpoint_resumes_under_the_other_loader(tabular: Path, tmp_path: Path) -> None:
    """``--lerowds.loader`` may change across a resume: DataLoader workers and Loader threads of the same
    count own the same frames in the same order, so the saved position continues with the same batches."""
    ds = LeRobotWebDataset(tabular, episode_pool_size=2, seed=5)
    full = steps(ds, DataLoader(ds, batch_size=5, num_workers=2), LoaderPosition(), 12)
    for k, (save_kind, load_kind) in ((3, ("dataloader", "threads")), (9, ("threads", "dataloader"))):
        state_dir = tmp_path / f"{save_kind}{k}"
        state_dir.mkdir()
        save_loader_state(
            state_dir, ds, full[k - 1][0], step=k, batch_size=5, num_workers=2, loader=save_kind
        )
        again = LeRobotWebDataset(tabular, episode_pool_size=2, seed=5)
        start = load_loader_state(state_dir, again, step=k)
        if load_kind == "threads":
            loader = Loader(again, batch_size=5, num_threads=2)
        else:
            loader = DataLoader(again, batch_size=5, num_workers=2)
        assert steps(again, loader, start, 12 - k) == full[k:], (save_kind, k)
