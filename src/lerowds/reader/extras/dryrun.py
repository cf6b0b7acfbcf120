"""``lerowds plan``: a dry run of the reader over the index only — counts, pool memory, shuffle quality.

No shard is read: counts come from the order/resume math; pool memory is the largest pool window of each
consumer (``window_bounds``: an upper bound, from the episode table's sizes, no per-frame work); shuffle
quality comes from rank 0's sample streams (``PoolOrder.chunks``, the order ``LeRobotWebDataset`` emits),
measured over all batches, or over ``QUALITY_SAMPLES`` samples per worker spread over the epoch when a
worker has more.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from lerowds.checks import check_bool, check_choice, check_int, check_size
from lerowds.format import DatasetIndex, EpisodeTable, read_local_index
from lerowds.reader.extras.dryrun_memory import (
    Peak,
    PoolMemory,
    consumer_peak,
    decoder_bytes_estimate,
)
from lerowds.reader.extras.dryrun_runs import (
    NEAR_FRAMES,
    RUN_SWEEP,
    RunQuality,
    buffer_bytes,
    run_batch_quality,
    run_stream,
    sample_camera_bytes,
)
from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.ranks import Remainder, consumer_sample_count, rank_plans, worker_segments
from lerowds.reader.order.segments import SegmentArray
from lerowds.reader.resume.batches import dataloader_batch_order, worker_batch_counts

logger = logging.getLogger(__name__)

POOL_SWEEP = (1, 4, 16, 64, 256, 1024)
QUALITY_SAMPLES = 1 << 16  # samples per worker measured for shuffle quality (in 4 spans) when it has more


@dataclass(frozen=True, slots=True)
class ShuffleQuality:
    """Rank 0's full batches of an epoch in DataLoader order (a worker's partial last batch left out; at
    most ``QUALITY_SAMPLES`` samples per worker, in 4 spans over the epoch): mean distinct episodes per
    batch and mean fraction of a batch's sample pairs from the same episode."""

    pool_size: int
    batches: int
    distinct_episodes: float
    collision_rate: float | None  # None when batch_size == 1 (a batch has no pairs)


@dataclass(frozen=True, slots=True)
class IdealShuffle:
    """The same figures, in expectation, for a batch of a uniform permutation of all frames (exact)."""

    distinct_episodes: float
    collision_rate: float | None


@dataclass(frozen=True, slots=True)
class PlanReport:
    """What a run of ``LeRobotWebDataset`` through a DataLoader (``drop_last=False``) would do, per epoch."""

    dataset: str
    episodes: int
    frames: int
    fps: int
    video_keys: tuple[str, ...]
    world_size: int
    num_workers: int  # as given to the DataLoader; 0 is one stream in the main process
    batch_size: int
    episode_pool_size: int
    pool_byte_budget: int | None  # bytes of stored episodes (``size`` column) a consumer's pool may hold
    seed: int
    epoch: int
    remainder: str
    shuffle: bool
    samples_per_rank: int
    samples_per_worker: tuple[int, ...]  # the same on every rank
    batches_per_worker: tuple[int, ...]  # drop_last=False: each worker's last batch may be partial
    batches_per_rank: int  # drop_last=False
    full_batches_per_rank: int  # = batches per rank with drop_last=True
    frames_dropped: int  # remainder="drop": frames no rank sees this epoch
    frames_repeated: int  # remainder="repeat": frames seen twice this epoch
    memory: PoolMemory
    shuffle_quality: ShuffleQuality | None  # None when rank 0 has no full batch
    ideal: IdealShuffle
    pool_sweep: tuple[ShuffleQuality, ...]  # the same measure at other pool sizes, for comparison
    worker_share_segments: int  # most segments a worker of rank 0 owns: larger pools change nothing
    run_length: int = 1
    shuffle_buffer: int = 0
    near_frames: int = NEAR_FRAMES
    run_sweep: tuple[RunQuality, ...] = ()  # (run_length, shuffle_buffer) pairs at this pool size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _spans(count: int, batch_size: int) -> list[tuple[int, int]]:
    """Sample ranges of a worker's stream to measure: all, or 4 spans of whole batches over the epoch."""
    if count <= QUALITY_SAMPLES:
        return [(0, count)]
    width = max(batch_size, QUALITY_SAMPLES // 4 // batch_size * batch_size)
    batches = -(-count // batch_size)
    starts = [batches * i // 4 * batch_size for i in range(4)]
    return [(s, min(s + width, count)) for s in starts]


def _stream(
    segments: SegmentArray, spans: list[tuple[int, int]], *, pool_size: int, **order_kw: Any
) -> np.ndarray:
    """The episodes of a consumer's samples in the sample ranges ``spans``, in emission order.

    Each span costs a jump (about two pools' frames of work); when that sums to more than the whole
    stream, the whole stream is computed once and the spans cut from it."""
    count = segments.num_frames
    window = pool_size * count / max(len(segments), 1)
    if len(spans) > 1 and len(spans) * window > count:
        order = PoolOrder(segments, pool_size=pool_size, **order_kw)
        whole = segments.episode[np.concatenate([seg for seg, _ in order.chunks()])]
        return np.concatenate([whole[a:b] for a, b in spans])
    out = []
    for start, stop in spans:
        order = PoolOrder(segments, pool_size=pool_size, **order_kw)
        order.skip(start)
        need = stop - start
        for seg, _ in order.chunks(need):
            out.append(segments.episode[seg[:need]])
            need -= min(need, seg.size)
            if not need:
                break
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def batch_quality(streams: Sequence[np.ndarray], *, batch_size: int, pool_size: int) -> ShuffleQuality | None:
    """Shuffle quality of the DataLoader batches built from each worker's stream of sample episodes."""
    counts = [len(s) for s in streams]
    if not counts or not any(counts):
        return None
    b = batch_size
    rows = [
        streams[w][r * b : (r + 1) * b]
        for w, r in dataloader_batch_order(counts, batch_size=b)
        if (r + 1) * b <= counts[w]
    ]
    if not rows:
        return None
    batches = np.sort(np.stack(rows), axis=1)
    new = np.ones(batches.shape, dtype=bool)
    new[:, 1:] = batches[:, 1:] != batches[:, :-1]
    distinct = float(new.sum(axis=1).mean())
    if b < 2:
        return ShuffleQuality(pool_size, len(rows), distinct, None)
    pos = np.broadcast_to(np.arange(b), batches.shape)
    run_start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    same_pairs = (pos - run_start).sum(axis=1)  # each sample pairs with the earlier ones of its episode
    return ShuffleQuality(pool_size, len(rows), distinct, float((same_pairs / (b * (b - 1) / 2)).mean()))


def ideal_shuffle(lengths: Sequence[int], *, batch_size: int) -> IdealShuffle:
    """Expected distinct episodes and same-episode pair rate of a batch drawn without replacement from
    all frames: ``sum_e 1 - C(N - L_e, B) / C(N, B)`` and ``sum_e L_e (L_e - 1) / (N (N - 1))``."""
    lens = np.asarray(lengths, dtype=np.int64)
    lens = lens[lens > 0]
    n = int(lens.sum())
    b = min(batch_size, n)
    den = n - np.arange(b, dtype=np.float64)
    distinct = 0.0
    values, multiplicity = np.unique(lens, return_counts=True)
    with np.errstate(divide="ignore"):
        for length, count in zip(values.tolist(), multiplicity.tolist()):
            p_absent = 0.0 if n - length < b else math.exp(float(np.log1p(-length / den).sum()))
            distinct += count * (1.0 - p_absent)
    collision = float((lens * (lens - 1)).sum() / (n * (n - 1))) if b > 1 else None
    return IdealShuffle(distinct, collision)


# ----------------------------------------------------------------------------------------------- plan
def plan_dataset(
    root_or_index: str | os.PathLike[str] | tuple[DatasetIndex, EpisodeTable],
    *,
    world_size: int,
    num_workers: int,
    batch_size: int,
    episode_pool_size: int = 64,
    pool_byte_budget: int | str | None = None,
    seed: int = 0,
    epoch: int = 0,
    remainder: Remainder = "drop",
    shuffle: bool = True,
    pool_sweep: Sequence[int] | None = None,
    run_length: int = 1,
    shuffle_buffer: int = 0,
    run_sweep: Sequence[tuple[int, int]] | None = None,
    near_frames: int = NEAR_FRAMES,
) -> PlanReport:
    """Dry-run ``LeRobotWebDataset(root, episode_pool_size=..., pool_byte_budget=..., seed=..., remainder=...,
    shuffle=...)`` on ``world_size`` ranks through ``DataLoader(num_workers=..., batch_size=...)`` (drop_last
    False) for epoch ``epoch``, on the index only: no shard is opened.

    ``pool_sweep``: pool sizes to measure shuffle quality at besides ``episode_pool_size`` (default: powers
    of 4 up to the largest share of a worker; ``()`` for none). ``run_length``, ``shuffle_buffer``: run mode
    (the shuffle quality is then that of run mode; the pool sweep stays the per-sample order's);
    ``run_sweep``: ``(run_length, shuffle_buffer)`` pairs measured at ``episode_pool_size`` (default
    ``RUN_SWEEP`` and the configured pair), with pairs within ``near_frames`` frames of one episode.
    """
    check_int("world_size", world_size, 1)
    check_int("num_workers", num_workers, 0)
    check_int("batch_size", batch_size, 1)
    check_int("episode_pool_size", episode_pool_size, 1)
    check_int("run_length", run_length, 1)
    check_int("shuffle_buffer", shuffle_buffer)
    check_int("near_frames", near_frames)
    for r_s in run_sweep or ():
        check_int("run_sweep run_length", r_s[0], 1)
        check_int("run_sweep shuffle_buffer", r_s[1])
    check_int("seed", seed)
    check_int("epoch", epoch)
    check_choice("remainder", remainder, ("drop", "repeat"))
    check_bool("shuffle", shuffle)
    budget = None if pool_byte_budget is None else check_size("pool_byte_budget", pool_byte_budget)
    for pool in pool_sweep or ():
        check_int("pool_sweep sizes", pool, 1)
    if isinstance(root_or_index, tuple):
        index, table = root_or_index
        name = index.repo_id
    else:
        index, table = read_local_index(root_or_index)
        name = f"{index.repo_id} ({os.fspath(root_or_index)})"
    lengths, ids = table["length"], table["episode_index"]
    total = int(lengths.sum())
    consumers = max(num_workers, 1)
    samples = [
        consumer_sample_count(
            total, world_size=world_size, num_workers=consumers, worker=w, remainder=remainder
        )
        for w in range(consumers)
    ]  # checks world_size <= frames and remainder first
    batches = worker_batch_counts(samples, batch_size=batch_size)
    full = worker_batch_counts(samples, batch_size=batch_size, drop_last=True)

    video_keys = tuple(index.video_keys)
    per_decoder = {k: decoder_bytes_estimate(index.features[k]) for k in video_keys}
    episode_decoder_bytes = sum(per_decoder.values())
    peak_of = functools.partial(
        consumer_peak,
        shuffle=shuffle,
        tabular_sizes=np.asarray(table["parquet_size"], dtype=np.int64),
        span_sizes=np.asarray(table["size"], dtype=np.int64),
        byte_budget=budget,
        episode_decoder_bytes=episode_decoder_bytes,
        num_cameras=len(video_keys),
    )
    ids_sorted = np.asarray(ids, dtype=np.int64)

    started = time.perf_counter()
    peaks: list[Peak] = []
    per_rank: list[int] = []
    rank0_segments: list[SegmentArray] = []
    rank0_sizes: list[np.ndarray | None] = []
    plans = rank_plans(
        lengths, ids, seed=seed, epoch=epoch, shuffle=shuffle, world_size=world_size, remainder=remainder
    )
    dropped, repeated = plans[0].dropped, plans[0].repeated
    for rank, plan in enumerate(plans):
        rank_total = 0
        for worker in range(consumers):
            segs = worker_segments(plan.segments, num_workers=consumers, worker=worker)
            rows = np.searchsorted(ids_sorted, segs.episode)
            peak = peak_of(rows, pool_size=episode_pool_size)
            peaks.append(peak)
            rank_total += peak.total
            if rank == 0:
                rank0_segments.append(segs)
                rank0_sizes.append(None if budget is None else np.asarray(table["size"], np.int64)[rows])
        per_rank.append(rank_total)
    logger.debug("pool windows of %d consumers in %.2fs", len(peaks), time.perf_counter() - started)

    largest_share = max(len(s) for s in rank0_segments)
    if pool_sweep is None:
        pool_sweep = [p for p in POOL_SWEEP if p < largest_share] + [largest_share]
    order_kw = {"seed": seed, "epoch": epoch, "rank": 0, "shuffle": shuffle, "byte_budget": budget}
    spans = [_spans(n, batch_size) for n in samples]
    sweep = []
    for pool in sorted(set(pool_sweep) | {episode_pool_size}):
        streams = [
            _stream(segs, spans[w], pool_size=pool, worker=w, sizes=rank0_sizes[w], **order_kw)
            for w, segs in enumerate(rank0_segments)
        ]
        quality = batch_quality(streams, batch_size=batch_size, pool_size=pool)
        if quality is not None:
            sweep.append(quality)
    chosen = next((q for q in sweep if q.pool_size == episode_pool_size), None)
    frame_bytes = sample_camera_bytes(index.features, tuple(index.video_keys))
    runs = []
    for r, s in sorted(set(RUN_SWEEP if run_sweep is None else run_sweep) | {(run_length, shuffle_buffer)}):
        streams = [
            run_stream(
                segs,
                run_length=r,
                shuffle_buffer=s,
                limit=None if n <= QUALITY_SAMPLES else QUALITY_SAMPLES,
                pool_size=episode_pool_size,
                worker=w,
                sizes=rank0_sizes[w],
                **order_kw,
            )
            for w, (segs, n) in enumerate(zip(rank0_segments, samples))
        ]
        got = run_batch_quality(streams, batch_size=batch_size, near_frames=near_frames)
        if got is None:
            continue
        runs.append(RunQuality(r, s, *got, buffer_bytes=buffer_bytes(r, s, frame_bytes)))
        if (r, s) == (run_length, shuffle_buffer) and (r, s) != (1, 0):
            chosen = ShuffleQuality(episode_pool_size, got[0], got[1], got[2])

    open_episodes = max(p.open_episodes for p in peaks)
    return PlanReport(
        dataset=name,
        episodes=len(table),
        frames=total,
        fps=index.fps,
        video_keys=video_keys,
        world_size=world_size,
        num_workers=num_workers,
        batch_size=batch_size,
        episode_pool_size=episode_pool_size,
        pool_byte_budget=budget,
        seed=seed,
        epoch=epoch,
        remainder=remainder,
        shuffle=shuffle,
        samples_per_rank=sum(samples),
        samples_per_worker=tuple(samples),
        batches_per_worker=tuple(batches),
        batches_per_rank=sum(batches),
        full_batches_per_rank=sum(full),
        frames_dropped=dropped,
        frames_repeated=repeated,
        memory=PoolMemory(
            tabular_bytes=max(p.tabular for p in peaks),
            decoders=open_episodes * len(video_keys),
            decoder_bytes=open_episodes * episode_decoder_bytes,
            consumer_bytes=max(p.total for p in peaks),
            rank_bytes=max(per_rank),
            per_rank_bytes=tuple(per_rank),
            bytes_per_decoder=per_decoder,
        ),
        shuffle_quality=chosen,
        ideal=ideal_shuffle(lengths, batch_size=batch_size),
        pool_sweep=tuple(sweep),
        worker_share_segments=largest_share,
        run_length=run_length,
        shuffle_buffer=shuffle_buffer,
        near_frames=near_frames,
        run_sweep=tuple(runs),
    )
