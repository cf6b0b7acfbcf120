"""``Loader`` and ``StatefulLoader`` as torch Statefuls: ``state_dict()`` after any batch, loaded into a fresh
loader (directly or through accelerate's checkpointing), continues with exactly the next batch."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from contracts import SelfSaving, check_save_restore
from loader_helpers import assert_same_batches
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset, Loader, StatefulLoader
from lerowds.errors import ConfigError, ResumeMismatchError

CAM = "observation.images.front"


def _tabular(root: Path) -> LeRobotWebDataset:
    return LeRobotWebDataset(root, episode_pool_size=2, seed=7)


def _ids(batches: Any) -> list[list[int]]:
    return [b["index"].tolist() for b in batches]


def _take(loader: Any, n: int) -> list[list[int]]:
    it = iter(loader)
    out = _ids(itertools.islice(it, n))
    del it  # a training job stops here and saves
    return out


def test_resume_with_video_batches_equal(video_small_converted: Path) -> None:
    def make() -> Loader:
        ds = LeRobotWebDataset(
            video_small_converted, delta_timestamps={CAM: [-1 / 15, 0.0]}, episode_pool_size=3, seed=1
        )
        return Loader(ds, 6, num_threads=2)

    def kept(batch: dict[str, Any]) -> dict[str, Any]:  # the Loader reuses its buffers: keep copies
        return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    check_save_restore(
        lambda: SelfSaving(make(), item=kept),
        epochs=1,
        cuts=lambda per_epoch, total: [5],
        compare=assert_same_batches,
        what="video resume",
    )


def test_state_before_iterating_and_counter_form(tabular_converted: Path) -> None:
    loader = Loader(_tabular(tabular_converted), 8, num_threads=2)
    assert (loader.state_dict()["epoch"], loader.state_dict()["batches_consumed"]) == (0, 0)
    loader.set_epoch(3)
    assert loader.state_dict()["epoch"] == 3
    full = _ids(Loader(_tabular(tabular_converted), 8, num_threads=2))
    counters = Loader(_tabular(tabular_converted), 8, num_threads=2)
    counters.load_state_dict({"epoch": 0, "batches_consumed": 4, "batch_size": 8})  # a trainer's integers
    assert _ids(counters) == full[4:]
    ds = _tabular(tabular_converted)  # the dataset's counter form still feeds the DataLoader path
    ds.load_state_dict(ds.state_dict(batches_consumed=4, batch_size=8, num_workers=2))
    assert _ids(DataLoader(ds, batch_size=8, num_workers=2)) == full[4:]


def test_mismatched_state_is_refused(tabular_converted: Path) -> None:
    saved = Loader(_tabular(tabular_converted), 8, num_threads=2)
    _take(saved, 2)
    other = Loader(_tabular(tabular_converted), 5, num_threads=2)
    other.load_state_dict(saved.state_dict())
    with pytest.raises(
        ConfigError, match="saved with batch_size=8 drop_last=False, this loader has batch_size=5"
    ):
        list(other)
    threads = Loader(_tabular(tabular_converted), 8, num_threads=3)
    threads.load_state_dict(saved.state_dict())
    with pytest.raises(ResumeMismatchError, match="num_workers=2"):
        list(threads)


def test_state_from_another_world_size_is_refused(tabular_converted: Path) -> None:
    """An elastic resume is the counter form's (a DataLoader): the Loader names the setups, never guesses."""
    ds = _tabular(tabular_converted)
    state = ds.state_dict(batches_consumed=3, batch_size=8, epoch=0, num_workers=2)
    state["config"]["world_size"] = 2  # as saved by rank r of a 2-rank run
    loader = Loader(_tabular(tabular_converted), 8, num_threads=2)
    loader.load_state_dict(state)
    with pytest.raises(ResumeMismatchError, match=r"world_size=2.*this Loader runs world_size=1"):
        list(loader)


def test_dataloader_and_thread_loader_states_are_interchangeable(tabular_converted: Path) -> None:
    """A ``StatefulLoader(DataLoader(num_workers=2))`` checkpoint resumes in ``Loader(num_threads=2)`` and
    back: both follow the DataLoader's round-robin, so the counters mean the same batches."""
    full = _ids(Loader(_tabular(tabular_converted), 8, num_threads=2))
    dl = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    assert _take(dl, 6) == full[:6]
    threads = Loader(_tabular(tabular_converted), 8, num_threads=2)
    threads.load_state_dict(dl.state_dict())
    assert _take(threads, 3) == full[6:9]
    back = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    back.load_state_dict(threads.state_dict())
    assert _ids(back) == full[9:]
    assert back.state_dict()["batches_consumed"] == len(full)


def test_stateful_loader_over_epochs_and_persistent_workers(tabular_converted: Path) -> None:
    ref = StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))
    epoch0, epoch1 = _ids(ref), _ids(ref)
    assert ref.state_dict()["epoch"] == 1
    dl = DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2, persistent_workers=True)
    wrapped = StatefulLoader(dl)
    state = {"epoch": 0, "batches_consumed": len(epoch0), "batch_size": 8}
    wrapped.load_state_dict(state)
    assert _ids(wrapped) == epoch1
    with pytest.raises(ConfigError, match="persistent workers started"):
        wrapped.load_state_dict(state)


@pytest.mark.parametrize("kind", ["threads", "dataloader"])
def test_accelerate_save_state_load_state_resumes_mid_epoch(
    tabular_converted: Path, tmp_path: Path, kind: str
) -> None:
    import accelerate  # a test dependency: CI must run this, not skip it

    def make() -> Any:
        if kind == "threads":
            return Loader(_tabular(tabular_converted), 8, num_threads=2)
        return StatefulLoader(DataLoader(_tabular(tabular_converted), batch_size=8, num_workers=2))

    full = _ids(make())
    acc = accelerate.Accelerator(cpu=True)
    loader = make()
    acc.register_for_checkpointing(loader)
    assert _take(loader, 7) == full[:7]
    acc.save_state(str(tmp_path / "ckpt"))

    acc2 = accelerate.Accelerator(cpu=True)
    restored = make()
    acc2.register_for_checkpointing(restored)
    acc2.load_state(str(tmp_path / "ckpt"))
    assert _ids(restored) == full[7:]
