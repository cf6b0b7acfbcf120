"""``lerowds.wds``: lerowds stages for a stock ``webdataset`` pipeline over lerowds shards.

    wds.DataPipeline(
        wds.SimpleShardList(urls), wds.split_by_worker, wds.tarfile_to_samples(),
        lerowds.wds.episodes(), lerowds.wds.episode_pool(64, seed=0),
        lerowds.wds.delta_windows(delta_timestamps, fps=15), lerowds.wds.decode_frames(), wds.batched(32))

Each stage is a generator function over an iterator (webdataset's ``pipelinefilter`` convention): called
with its options it returns a stage for ``DataPipeline``; called with the iterator first it runs directly.
Clips travel as in-memory bytes here (the tar stream is read sequentially); ``LeRobotWebDataset`` reads
them in place from the shard instead.

Why a second pool algorithm (``reader/order/draws.py``) beside the reader's (``reader/order/pool.py``): a
stock webdataset pipeline streams tars without the index, so it learns an episode (and its length) only
when the tar stream reaches it. ``PoolOrder`` needs a consumer's whole segment list up front (its window
math, resume by counter and byte budget come from it); the streaming pool needs only the episodes in hand.
After the pool (windows, decode, build) these are the reader's own stages (``reader/sample/stages.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from torch.utils.data import get_worker_info
from webdataset.filters import pipelinefilter

from lerowds.checks import check_int
from lerowds.errors import FormatError
from lerowds.reader.decode.base import ClipContext
from lerowds.reader.decode.cache import DecoderCache, make_decoder
from lerowds.reader.env import split_by_rank, split_by_worker
from lerowds.reader.order.draws import UniformDraws, swap_remove_pool
from lerowds.reader.sample.build import SampleSpec
from lerowds.reader.sample.episode import EpisodeRows, parse_episode_rows
from lerowds.reader.sample.stages import Decoded, Run, build, pending, run_positions
from lerowds.reader.sample.windows import DeltaWindows, validate_delta_timestamps

__all__ = [
    "Episode",
    "FrameRef",
    "decode_frames",
    "delta_windows",
    "episode_pool",
    "episodes",
    "split_by_rank",
    "split_by_worker",
]


@dataclass(frozen=True)
class Episode:
    """One episode as it travels through a wds pipeline: rows in RAM plus its clips' bytes."""

    key: str
    rows: EpisodeRows
    fps: int
    tasks: dict[int, str]
    clips: dict[str, bytes]
    url: str = ""


@dataclass(frozen=True)
class FrameRef:
    """A frame chosen by the pool, before windows and decoding."""

    episode: Episode
    frame: int
    windows: DeltaWindows | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _episodes(samples: Iterable[Mapping[str, Any]]) -> Iterator[Episode]:
    for sample in samples:
        key, url = sample.get("__key__", "?"), sample.get("__url__", "")
        where = f"{url or '<stream>'}: {key}"
        if "json" not in sample or "parquet" not in sample:
            raise FormatError(f"{where}: a lerowds sample needs '<key>.json' and '<key>.parquet' members")
        meta = json.loads(sample["json"])
        videos = meta.get("videos", {})
        clips = {}
        for video_key in videos:
            data = sample.get(f"{video_key}.mp4")
            if data is None:
                raise FormatError(f"{where}: camera {video_key!r} has no member '{key}.{video_key}.mp4'")
            clips[video_key] = data
        image_keys = tuple(meta.get("image_keys", ()))
        rows = parse_episode_rows(
            sample["parquet"],
            episode_index=meta["episode_index"],
            length=meta["length"],
            image_keys=image_keys,
            where=where,
        )
        tasks = {int(i): t for i, t in zip(meta.get("task_indices", ()), meta.get("tasks", ()))}
        yield Episode(key, rows, int(meta["fps"]), tasks, clips, url)


def _episode_pool(
    episodes: Iterable[Episode], pool_size: int = 64, *, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> Iterator[FrameRef]:
    """Hold up to ``pool_size`` episodes; emit frames uniformly at random over all not-yet-emitted ones.

    The streaming twin of ``order.PoolOrder`` (which needs the whole segment list up front): the order is
    ``order.draws.swap_remove_pool``; episodes are pulled from the stream only when the pool has room, and
    draws come from ``seed``/``epoch`` and the DataLoader worker id, never from global state.
    """
    check_int("pool_size", pool_size, 1)
    source = iter(episodes)
    if not shuffle:
        for ep in source:
            for f in range(ep.rows.length):
                yield FrameRef(ep, f)
        return
    info = get_worker_info()
    draws = UniformDraws(seed, epoch, 0, 0 if info is None else info.id)
    for ep, frame in swap_remove_pool(source, lambda ep: ep.rows.length, pool_size=pool_size, draws=draws):
        yield FrameRef(ep, frame)


def _delta_windows(
    frames: Iterable[FrameRef],
    delta_timestamps: Mapping[str, Sequence[float]] | None = None,
    *,
    tolerance_s: float = 1e-4,
) -> Iterator[FrameRef]:
    """Attach validated delta windows (checked against each episode's fps and columns)."""
    cache: dict[int, DeltaWindows | None] = {}
    for ref in frames:
        fps = ref.episode.fps
        if fps not in cache:
            keys = list(ref.episode.rows.columns) + list(ref.episode.clips)
            cache[fps] = validate_delta_timestamps(
                delta_timestamps, fps=fps, features=keys, tolerance_s=tolerance_s
            )
        yield replace(ref, windows=cache[fps])


def _decode_frames(
    frames: Iterable[FrameRef],
    *,
    return_uint8: bool = False,
    decoder: str = "auto",
    cache_size: int = 64,
    tolerance_s: float = 1e-4,
) -> Iterator[dict[str, Any]]:
    """Decode only the emitted frames (and their windows) and build lerobot-style samples: the consumer's
    ``decode`` and ``build`` stages (``sample/stages.py``) on runs of one frame."""
    decoders = DecoderCache(cache_size)
    try:
        for ref in frames:
            ep = ref.episode
            spec = SampleSpec(tuple(ep.clips), ep.rows.image_keys, ep.tasks, ref.windows, return_uint8)
            run = Run(ep.rows, ref.frame, (ref.frame,), 0)  # the consumer's stages, on a run of one frame
            video = {}
            for key in spec.video_keys:
                positions = run_positions(spec, key, run)
                dec = decoders.get(
                    (ep.url, ep.key, key),
                    lambda ep=ep, key=key: make_decoder(
                        decoder,
                        ep.clips[key],
                        ep.fps,
                        ep.rows.length,
                        ClipContext(ep.rows.episode_index, key),
                        tolerance_s=tolerance_s,
                    ),
                )
                video[key] = (positions, dec.frames(positions.tolist()))
            yield from (built.sample for built in build(pending([Decoded(run, video)]), spec))
    finally:
        decoders.close()


episodes = pipelinefilter(_episodes)
episode_pool = pipelinefilter(_episode_pool)
delta_windows = pipelinefilter(_delta_windows)
decode_frames = pipelinefilter(_decode_frames)
