"""The consumer's sample path stage by stage, each fed a plain list (``reader/pipeline.py``,
``reader/sample/stages.py``, the stats tap, the shuffle buffer)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from lerowds.reader.extras.stats import NoStats, StatsBoard, StatsTap
from lerowds.reader.order.events import Admit, Emit, Evict, Load, Release, residency
from lerowds.reader.order.runs import EmitRun, frame_runs, shuffle_buffer
from lerowds.reader.order.segments import Segment
from lerowds.reader.pipeline import Fetched, decode, fetch, rows
from lerowds.reader.sample.build import SampleSpec
from lerowds.reader.sample.episode import EpisodeRows
from lerowds.reader.sample.stages import Built, Run, build, pending, run_positions, transformed
from lerowds.reader.sample.windows import DeltaWindows

CAM = "observation.images.front"


def episode_rows(episode: int, length: int) -> EpisodeRows:
    cols = {
        "index": np.arange(100 * episode, 100 * episode + length, dtype=np.int64),
        "frame_index": np.arange(length, dtype=np.int64),
        "action": np.arange(length, dtype=np.float32)[:, None] + 0.5,
    }
    return EpisodeRows(episode, length, cols, ())


def parquet_of(rows: EpisodeRows) -> bytes:
    buf = io.BytesIO()
    table = pa.table({k: (v[:, 0] if v.ndim == 2 else v) for k, v in rows.columns.items()})
    pq.write_table(table, buf)
    return buf.getvalue()


class FakeStore:
    def __init__(self, episodes: dict[int, EpisodeRows]) -> None:
        self.episodes = episodes
        self.table = {
            "length": np.asarray([e.length for e in episodes.values()]),
            "size": np.asarray([7] * 9),
        }
        self.released: list[int] = []

    def parquet_bytes(self, row: int) -> bytes:
        return parquet_of(list(self.episodes.values())[row])

    def release(self, row: int) -> None:
        self.released.append(row)


class FakeDecoders:
    """Frame ``p`` of episode ``e`` is a 1x1 image of value ``10 * e + p`` (HWC)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, list[int]]] = []
        self.discarded: list[int] = []
        self.produced = 0

    def frames(self, rows: EpisodeRows, key: str, positions: np.ndarray) -> np.ndarray:
        self.calls.append((rows.episode_index, key, positions.tolist()))
        self.produced += len(positions)
        values = 10 * rows.episode_index + np.asarray(positions, dtype=np.uint8)
        return np.broadcast_to(values[:, None, None, None], (len(positions), 1, 1, 3)).copy()

    def is_open(self, rows: EpisodeRows, key: str) -> bool:
        return False

    def discard(self, episode: int, keys: Any) -> None:
        self.discarded.append(episode)


def spec(windowed: bool = True) -> SampleSpec:
    windows = DeltaWindows({CAM: (-2, 0), "action": (0, 1, 2)}) if windowed else None
    return SampleSpec(video_keys=(CAM,), image_keys=(), tasks=["t"], windows=windows, return_uint8=True)


def test_residency_then_fetch_then_rows_turn_events_into_runs() -> None:
    eps = {0: episode_rows(0, 3), 1: episode_rows(1, 2)}
    store = FakeStore(eps)
    events = [
        Admit(0, Segment(0, 0, 3), range(3)),
        Admit(1, Segment(1, 0, 2), range(2)),
        Emit(0, 0, 2),
        Emit(1, 1, 0),
        Evict(1, 1),
        Emit(0, 0, 0),
        Evict(0, 0),
    ]
    staged = list(residency(events))
    assert staged[:2] == [Load(0), Load(1)] and staged[-1] == Release(0)
    fetched = list(fetch(frame_runs(staged), store, {0: 0, 1: 1}))
    assert isinstance(fetched[0], Fetched) and fetched[0].data == parquet_of(eps[0])
    assert store.released == [1, 0]
    cfg = SimpleNamespace(store=store, row_of={0: 0, 1: 1}, spec=spec(), where="test")
    out = list(rows(fetched, cfg))  # type: ignore[arg-type]
    runs = [(r.rows.episode_index, r.start, r.frames, r.first) for r in out if isinstance(r, Run)]
    assert runs == [(0, 2, (2,), 0), (1, 0, (0,), 1), (0, 0, (0,), 2)]
    assert [r for r in out if isinstance(r, Release)] == [Release(1), Release(0)]
    assert np.array_equal(out[0].rows.columns["action"], eps[0].columns["action"][:, 0])


def test_decode_asks_one_frame_its_window_and_a_run_the_union_of_its_windows() -> None:
    ep = episode_rows(1, 6)
    runs = [Run(ep, 0, (0,), 0), Run(ep, 2, (2, 3, 4), 1), Release(1)]
    decoders = FakeDecoders()
    out = list(decode(runs, decoders, spec()))  # type: ignore[arg-type]
    assert [c[2] for c in decoders.calls] == [[0, 0], [0, 1, 2, 3, 4]]  # padded window as asked; union sorted
    assert decoders.discarded == [1] and len(out) == 2
    assert run_positions(spec(windowed=False), CAM, Run(ep, 2, (2, 3), 0)).tolist() == [2, 3]


def test_build_shares_a_runs_frames_and_equals_one_sample_at_a_time() -> None:
    ep = episode_rows(2, 5)
    decoders = FakeDecoders()
    s = spec()
    whole = list(build(pending(decode([Run(ep, 0, (0, 1, 2, 3, 4), 7)], decoders, s)), s))
    single = [b for f in range(5) for b in build(pending(decode([Run(ep, f, (f,), 7 + f)], decoders, s)), s)]
    assert [b.j for b in whole] == [b.j for b in single] == [7, 8, 9, 10, 11]
    assert [b.index for b in whole] == list(range(200, 205))
    for a, b in zip(whole, single):
        assert a.sample.keys() == b.sample.keys()
        for key in a.sample:
            assert torch.equal(torch.as_tensor(a.sample[key]), torch.as_tensor(b.sample[key])), key
    assert whole[0].sample[CAM][:, 0, 0, 0].tolist() == [20, 20]  # t-2 padded to the first frame


def test_transformed_seeds_each_sample_by_its_index_whatever_the_order() -> None:
    def noise(t: torch.Tensor) -> torch.Tensor:
        return t.float() + torch.rand(())

    s = SampleSpec(video_keys=(CAM,), image_keys=(), tasks=["t"], image_transforms=noise, return_uint8=True)
    items = [Built(j, 10 + j, {CAM: torch.zeros(3, 1, 1, dtype=torch.uint8)}) for j in range(4)]
    fwd = [b.sample[CAM].sum().item() for b in transformed(items, s, None, seed=1, epoch=0)]
    items = [Built(j, 10 + j, {CAM: torch.zeros(3, 1, 1, dtype=torch.uint8)}) for j in range(4)]
    rev = [b.sample[CAM].sum().item() for b in transformed(items[::-1], s, None, seed=1, epoch=0)]
    assert fwd == rev[::-1] and len(set(fwd)) == 4
    plain = spec()
    assert list(transformed(items, plain, None, seed=1, epoch=0)) == items  # no transforms: as they are


def keyed(size: int, seed: int = 0) -> Any:
    from lerowds.reader.order.runs import BufferKeys

    return BufferKeys(size, seed=seed, epoch=1, rank=0, worker=2)


@pytest.mark.parametrize("size", [0, 1, 5, 64])
def test_shuffle_buffer_emits_in_key_order_holding_at_most_size(size: int) -> None:
    keys = keyed(size)
    n = 300
    held, peak = 0, 0

    def arrivals() -> Any:
        nonlocal held, peak
        for j in range(n):
            held += 1
            peak = max(peak, held)
            yield j, j

    out = []
    for x in shuffle_buffer(arrivals(), keys.keys):
        out.append(x)
        held -= 1
    k = keys.keys(np.arange(n))
    assert out == np.lexsort((np.arange(n), k)).tolist()
    assert peak <= size + 1  # the one just arrived included
    if size == 0:
        assert out == list(range(n))
    for cut in (0, 1, n // 3, n - 1, n):
        lo, done = keys.emitted(cut, n)
        assert set(range(lo)) | done == set(out[:cut]) and all(j >= lo for j in done)


def test_stats_tap_counts_each_stage_and_no_stats_is_the_identity() -> None:
    board = StatsBoard()
    tap = StatsTap(board.slot(0), lambda e: 100 + e, board=board)
    events = list(tap.events([Load(1), EmitRun(0, 1, 0, (0,), 0), Load(2), Release(1)]))
    assert len(events) == 4
    store = tap.store(FakeStore({0: episode_rows(0, 2)}))
    store.parquet_bytes(0)
    decoders = tap.decoders(FakeDecoders())
    decoders.frames(episode_rows(0, 4), CAM, np.asarray([0, 1, 2]))
    assert list(tap.samples(["a", "b"])) == ["a", "b"]
    s = board.snapshot()
    assert (s["episodes_admitted"], s["pool_episodes"], s["pool_bytes"], s["pool_bytes_peak"]) == (
        2,
        1,
        102,
        203,
    )
    assert (s["frames_decoded"], s["decoder_frames"], s["decoder_misses"], s["samples"]) == (3, 3, 1, 2)
    assert s["fetch_bytes"] > 0
    none = NoStats()
    marker = object()
    assert none.store(marker) is marker and none.decoders(marker) is marker
    assert list(none.samples([1, 2])) == [1, 2]
