"""``lerowds.Loader``: the DataLoader's batches from threads, exactly once per epoch, reused buffers that a
kept batch never sees overwritten, errors raised in the training thread, no thread left behind."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from httpserver import LoopbackServer
from loader_helpers import assert_same_batches, indices
from torch.utils.data import DataLoader

import lerowds
from lerowds import LeRobotWebDataset, Loader
from lerowds.errors import ConfigError, FormatError, VideoDecodeError
from lerowds.format import read_local_index, video_columns

CAM = "observation.images.front"
FPS = 15
DELTA = {CAM: [-2 / FPS, -1 / FPS, 0.0], "action": [i / FPS for i in range(4)]}


def _video(root: Path, **kw: Any) -> LeRobotWebDataset:
    return LeRobotWebDataset(root, delta_timestamps=DELTA, episode_pool_size=3, seed=3, **kw)


def _copied(batches: Any) -> list[dict[str, Any]]:
    """Batches with their tensors cloned (what a test keeps while the loader goes on)."""
    return [{k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in batches]


def _dataloader(ds: Any, batch_size: int, workers: int, drop_last: bool = False) -> list[dict[str, Any]]:
    return list(DataLoader(ds, batch_size=batch_size, num_workers=workers, drop_last=drop_last))


def _loader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("lerowds-loader") and t.is_alive()]


@pytest.mark.parametrize(("threads", "batch_size", "drop_last"), [(1, 7, False), (2, 5, True), (3, 4, False)])
def test_batches_equal_dataloader_batch_for_batch(
    video_small_converted: Path, threads: int, batch_size: int, drop_last: bool
) -> None:
    """Two epochs (the second reshuffled) equal ``DataLoader(ds, batch_size, num_workers=threads)``'s:
    same batches, same order, float32 cameras, ``task`` a list of strings."""
    loader = Loader(_video(video_small_converted), batch_size, num_threads=threads, drop_last=drop_last)
    dl = DataLoader(
        _video(video_small_converted),
        batch_size=batch_size,
        num_workers=threads,
        drop_last=drop_last,
        persistent_workers=True,
    )
    for epoch in range(2):
        got, want = _copied(loader), list(dl)
        assert_same_batches(got, want, f"epoch {epoch}")
        assert len(got) == len(loader)  # (the DataLoader's len() ignores per-worker partial batches)
    assert got[0][CAM].dtype == torch.float32 and got[0][CAM].shape[1:] == (3, 3, 32, 32)
    assert isinstance(got[0]["task"], list) and isinstance(got[0]["task"][0], str)
    assert not _loader_threads()


def test_device_path_equals_dataloader(video_small_converted: Path) -> None:
    """With ``device`` the batch is moved there as uint8 and converted after the move (here device="cpu",
    the same code path as CUDA minus pinned memory): the values are the dataset's float32 ones."""
    got = _copied(Loader(_video(video_small_converted), 6, num_threads=2, device="cpu"))
    assert_same_batches(got, _dataloader(_video(video_small_converted), 6, 2), "device")


def test_uint8_dataset_and_shortcut(video_small_converted: Path) -> None:
    got = _copied(_video(video_small_converted, return_uint8=True).loader(6, num_threads=2))
    assert_same_batches(got, _dataloader(_video(video_small_converted, return_uint8=True), 6, 2), "uint8")
    assert got[0][CAM].dtype == torch.uint8


def test_kept_batches_and_views_are_never_overwritten(video_small_converted: Path) -> None:
    """``list(loader)`` and views taken from batches keep their values while the loader reuses buffers."""
    want = _copied(Loader(_video(video_small_converted), 4, num_threads=2))
    loader = Loader(_video(video_small_converted), 4, num_threads=2)
    kept = list(loader)
    assert_same_batches(kept, want, "kept batches")
    views = [b[CAM][:, -1] for b in Loader(_video(video_small_converted), 4, num_threads=2)]
    assert all(torch.equal(v, w[CAM][:, -1]) for v, w in zip(views, want, strict=True))
    arrays = [b["index"].numpy() for b in Loader(_video(video_small_converted), 4, num_threads=2)]
    assert [a.tolist() for a in arrays] == [w["index"].tolist() for w in want]


def test_buffers_are_reused_across_epochs(video_small_converted: Path) -> None:
    """A plain training loop (each batch dropped before the next but one) is served by a bounded set of
    buffers over any number of epochs: per thread ``prefetch`` queued + one filling + the user's two."""
    loader = Loader(_video(video_small_converted), 4, num_threads=2, prefetch=2)
    ptrs, batches, sizes = set(), 0, []
    for _ in range(6):
        for batch in loader:
            ptrs.add(batch[CAM].data_ptr())
            batches += 1
        sizes.append(loader.buffer_bytes())
    allocated = loader.buffer_sets_allocated()
    assert allocated <= 2 * (2 + 3) and len(ptrs) <= allocated < batches // 10
    assert max(sizes) <= allocated * 4 * (3 * 3 * 32 * 32 * 4 + 4096)  # float32 frames + small columns
    assert batch[CAM].dtype == torch.float32  # converted into the buffers by the threads


def test_break_and_del_stop_the_threads(video_small_converted: Path) -> None:
    loader = Loader(_video(video_small_converted), 2, num_threads=3)
    for _ in loader:
        break
    assert not _loader_threads()
    it = iter(loader)
    next(it)
    assert len(_loader_threads()) == 3
    del it
    assert not _loader_threads()
    it = iter(loader)
    next(it)
    del loader, it
    assert not _loader_threads()


def _corrupt_clip(src: Path, dst: Path, row: int) -> int:
    shutil.copytree(src, dst)
    index, table = read_local_index(dst)
    off_col, size_col = video_columns(CAM)
    off, size = int(table[off_col][row]), int(table[size_col][row])
    shard = dst / index.shards[int(table["shard"][row])].name
    data = bytearray(shard.read_bytes())
    data[off : off + size] = bytes(size)
    shard.write_bytes(bytes(data))
    return int(table["episode_index"][row])


@pytest.mark.parametrize("threads", [1, 3])
def test_error_in_a_thread_surfaces_with_its_message(
    video_small_converted: Path, tmp_path: Path, threads: int
) -> None:
    episode = _corrupt_clip(video_small_converted, tmp_path / "ds", row=5)
    # the decoder's own error (the CRC check, which would catch the corruption first, is off)
    loader = Loader(_video(tmp_path / "ds", verify_crc=False), 2, num_threads=threads)
    with pytest.raises(VideoDecodeError, match=rf"episode {episode}, camera '{CAM}', timestamp"):
        for _ in loader:
            pass
    assert not _loader_threads()
    # with the default CRC check: the integrity error, naming the episode
    loader = Loader(_video(tmp_path / "ds"), 2, num_threads=threads)
    with pytest.raises(FormatError, match=rf"episode {episode} .*CRC-32"):
        for _ in loader:
            pass
    assert not _loader_threads()


def test_bad_arguments(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted)
    with pytest.raises(ConfigError, match="num_threads must be an integer >= 1, got 0"):
        Loader(ds, 4, num_threads=0)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        Loader(ds, 0)
    with pytest.raises(ConfigError, match="prefetch must be an integer >= 1, got True"):
        Loader(ds, 4, prefetch=True)  # a bool is not a count (it was accepted as 1)
    with pytest.raises(ConfigError, match="reads a LeRobotWebDataset or a lerowds.mix"):
        Loader([1, 2, 3], 4)  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="pin_memory=True needs CUDA"):
            Loader(ds, 4, pin_memory=True)


def test_remote_source_equals_local(video_small_converted: Path, tmp_path: Path) -> None:
    """Over HTTP (each thread's own prefetcher into the shared cache): the local loader's batches."""
    want = _copied(Loader(_video(video_small_converted), 4, num_threads=2))
    with LoopbackServer(video_small_converted) as srv:
        ds = _video(srv.url, cache_dir=tmp_path / "cache")
        got = _copied(Loader(ds, 4, num_threads=2))
    assert_same_batches(got, want, "remote")
    assert ds.remote_stats()["requests"] > 0
    view = ds.thread_copy(
        1, 2, uint8=True, lock=threading.Lock()
    )  # each thread's store: own runtime, a half share of the cache
    assert view._store is not ds._store and (view._store.consumer_threads, ds._store.consumer_threads) == (
        2,
        1,
    )


def test_mix_equals_dataloader(tabular_converted: Path) -> None:
    def make() -> Any:
        a = LeRobotWebDataset(tabular_converted, episode_pool_size=2, seed=1)
        b = LeRobotWebDataset(tabular_converted, episode_pool_size=3, seed=2)
        return lerowds.mix({"a": a, "b": b}, weights={"a": 0.7, "b": 0.3}, seed=1)

    got = _copied(Loader(make(), 8, num_threads=2))
    assert_same_batches(got, _dataloader(make(), 8, 2), "mix")
    assert {s for b in got for s in b["source"]} == {"a", "b"}


def test_seeded_transforms_equal_dataloader(video_small_converted: Path) -> None:
    """Random augmentations drawn from torch's RNG come out as in DataLoader workers, thread timing aside."""

    def noise(t: torch.Tensor) -> torch.Tensor:
        return t + torch.rand(t.shape[-3:])

    def tag(sample: dict[str, Any]) -> dict[str, Any]:
        sample["r"] = torch.randint(0, 1000, ())
        return sample

    def make() -> LeRobotWebDataset:
        return _video(video_small_converted, image_transforms=noise, transform=tag)

    got = _copied(Loader(make(), 5, num_threads=3))
    assert_same_batches(got, _dataloader(make(), 5, 3), "transforms")


def test_buffer_set_conversion_is_exact_and_bad_batches_are_named() -> None:
    """Every uint8 value converts to the dataset's float32 value; mismatched samples name the key."""
    from lerowds.reader.loader.buffers import BufferSet
    from lerowds.reader.sample.build import frames_to_tensor

    frames = torch.arange(256, dtype=torch.uint8).repeat(3 * 4).view(1, 4, 16, 48).permute(0, 2, 3, 1)
    want = frames_to_tensor(frames.numpy(), return_uint8=False)  # (1, 3, 16, 16) float32 / 255
    s = BufferSet(2, pin_memory=False, to_float=frozenset({CAM}))
    s.put({CAM: frames_to_tensor(frames.numpy(), return_uint8=True), "task": "a"})
    s.put({CAM: frames_to_tensor(frames.numpy(), return_uint8=True), "task": "b"})
    batch = s.batch()
    assert batch[CAM].dtype == torch.float32 and torch.equal(batch[CAM][1], want)
    assert batch["task"] == ["a", "b"]
    s = BufferSet(2, pin_memory=False)
    s.put({"x": torch.zeros(3)})
    with pytest.raises(ConfigError, match=r"cannot batch 'x': samples have shape/dtype \(3,\)"):
        s.put({"x": torch.zeros(4)})
    with pytest.raises(ConfigError, match="samples of one batch have different keys"):
        s.put({"y": torch.zeros(3)})


def test_stats_count_every_thread(tabular_converted: Path) -> None:
    ds = LeRobotWebDataset(tabular_converted, episode_pool_size=2, stats=True)
    assert len(indices(Loader(ds, 8, num_threads=3))) == 150
    assert ds.stats()["samples"] == 150 and ds.stats()["episodes_admitted"] >= 13  # split episodes: twice
