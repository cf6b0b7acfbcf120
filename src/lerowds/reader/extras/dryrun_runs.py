"""``lerowds plan`` for run mode (``run_length=r``, ``shuffle_buffer=S``): a consumer's sample stream in the order
``LeRobotWebDataset`` emits it (``order/runs.py``, vectorised), the shuffle figures of its DataLoader batches
(distinct episodes, same-episode pairs, and pairs within ``k`` frames of each other in one episode) and the
buffer's memory (the decoded frames of the runs its waiting samples come from)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.runs import BufferKeys, relabel, run_units
from lerowds.reader.order.segments import SegmentArray
from lerowds.reader.resume.batches import dataloader_batch_order

RUN_SWEEP = ((1, 0), (4, 64), (8, 128), (16, 256))  # (run_length, shuffle_buffer) compared by default
NEAR_FRAMES = 10  # "near": two samples of one episode at most this many frames apart


@dataclass(frozen=True, slots=True)
class RunQuality:
    """Rank 0's full batches of an epoch under ``(run_length, shuffle_buffer)`` (DataLoader order, at most
    ``limit`` samples per worker from the epoch's start): mean distinct episodes per batch, mean fraction of
    a batch's pairs from one episode, and from one episode within ``near_frames`` frames; the buffer's peak
    memory per consumer (decoded uint8 frames, whatever the cameras' output type; ``buffer_bytes``)."""

    run_length: int
    shuffle_buffer: int
    batches: int
    distinct_episodes: float
    collision_rate: float | None
    near_pair_rate: float | None
    buffer_bytes: int


def run_stream(
    segments: SegmentArray,
    *,
    run_length: int,
    shuffle_buffer: int,
    limit: int | None = None,
    **order_kw: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``(episode, frame)`` of a consumer's first ``limit`` samples (all: None) in emission order.

    ``order_kw``: ``PoolOrder``'s (pool_size, seed, epoch, rank, worker, shuffle, sizes, byte_budget)."""
    r, n = run_length, segments.num_frames
    want = n if limit is None else min(n, limit + shuffle_buffer + r)  # enough arrivals for `limit` emits
    units = segments if r == 1 else run_units(segments, r)
    episodes, frames, got = [], [], 0
    emitted = np.zeros(len(segments), dtype=np.int64)  # runs of each segment so far (ascending runs)
    for seg, unit in PoolOrder(units, **order_kw).chunks(want // r + 1):
        if not seg.size:
            continue
        if r == 1:
            start, length = unit, np.ones_like(unit)
        else:
            start = segments.start[seg] + relabel(seg, emitted) * r
            length = np.minimum(start + r, segments.stop[seg]) - start
        ends = np.cumsum(length)
        offset = np.arange(int(ends[-1])) - np.repeat(ends - length, length)
        episodes.append(np.repeat(segments.episode[seg], length))
        frames.append(np.repeat(start, length) + offset)
        got += int(ends[-1])
        if got >= want:
            break
    episode = np.concatenate(episodes) if episodes else np.zeros(0, np.int64)
    frame = np.concatenate(frames) if frames else np.zeros(0, np.int64)
    if shuffle_buffer:
        kw = {k: order_kw[k] for k in ("seed", "epoch", "rank", "worker")}
        js = np.arange(episode.size, dtype=np.int64)
        perm = np.lexsort((js, BufferKeys(shuffle_buffer, **kw).keys(js)))
        if episode.size < n:  # a prefix of the arrivals: only its first `limit` emits are certain
            perm = perm[: max(0, episode.size - shuffle_buffer)]
        episode, frame = episode[perm], frame[perm]
    stop = None if limit is None else limit
    return episode[:stop], frame[:stop]


def run_batch_quality(
    streams: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    batch_size: int,
    near_frames: int = NEAR_FRAMES,
) -> tuple[int, float, float | None, float | None] | None:
    """``(batches, distinct episodes, same-episode pair rate, near pair rate)`` of the DataLoader's full
    batches built from each worker's ``(episode, frame)`` stream; None without a full batch."""
    counts = [len(e) for e, _ in streams]
    b = batch_size
    picks = [(w, k) for w, k in dataloader_batch_order(counts, batch_size=b) if (k + 1) * b <= counts[w]]
    if not picks:
        return None
    ep = np.stack([streams[w][0][k * b : (k + 1) * b] for w, k in picks])
    fr = np.stack([streams[w][1][k * b : (k + 1) * b] for w, k in picks])
    sorted_ep = np.sort(ep, axis=1)
    distinct = float((np.diff(sorted_ep, axis=1) != 0).sum(axis=1).mean() + 1)
    if b < 2:
        return len(picks), distinct, None, None
    same = ep[:, :, None] == ep[:, None, :]
    near = same & (np.abs(fr[:, :, None] - fr[:, None, :]) <= near_frames)
    pairs = b * (b - 1)  # ordered pairs, the diagonal left out below
    rate = float(((same.sum(axis=(1, 2)) - b) / pairs).mean())
    near_rate = float(((near.sum(axis=(1, 2)) - b) / pairs).mean())
    return len(picks), distinct, rate, near_rate


def sample_camera_bytes(features: dict[str, Any], camera_keys: Sequence[str]) -> int:
    """Bytes of one frame of every camera, uint8 (``shape`` of each camera feature)."""
    total = 0
    for key in camera_keys:
        shape = features.get(key, {}).get("shape") or [0]
        total += int(np.prod([int(s) for s in shape]))
    return total


def buffer_bytes(run_length: int, shuffle_buffer: int, frame_bytes: int, span: int = 0) -> int:
    """Peak bytes a consumer's shuffle buffer holds (``frame_bytes``: a frame of every camera, uint8 as
    decoded): its at most ``S + 1`` waiting samples come from at most ``ceil(S / r) + 1`` runs, plus the run
    being decoded, each holding ``r + span`` decoded frames per camera (``span``: how far the windows reach
    before a run's first frame and after its last)."""
    if shuffle_buffer == 0:
        return 0
    runs = -(-shuffle_buffer // run_length) + 2
    return runs * (run_length + span) * frame_bytes
