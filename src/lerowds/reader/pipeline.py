"""One consumer's sample path as stages, iterator in, iterator out:

    pool events -> admit (residency) -> bytes -> rows -> decode -> pending [-> shuffle buffer] -> build -> transform

``admit`` turns the pool's segment events into episode ``Load`` / ``Release``; ``bytes`` fetches a loaded
episode's parquet member; ``rows`` parses it and turns each emitted run into a ``Run`` of that episode's rows;
``decode`` decodes the frames a run's samples need (one call per camera); ``pending`` lists the run's
samples to build; in run mode the shuffle buffer (``order/runs.py``) reorders them, holding each run's
decoded frames once; ``build`` and ``transform`` (``sample/stages.py``) make each sample as it leaves.
Stats are one wrapping layer (``extras/stats.StatsTap``) around the store, the decoders and the streams.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.reader.decode.base import ClipContext, ClipDecoder
from lerowds.reader.decode.cache import DecoderCache, make_decoder
from lerowds.reader.extras.stats import NoStats, StatsBoard, StatsSlot, StatsTap
from lerowds.reader.io.store import EpisodeStore
from lerowds.reader.order.events import Load, Release, residency
from lerowds.reader.order.runs import EmitRun, shuffle_buffer
from lerowds.reader.sample.build import SampleSpec, window_reach
from lerowds.reader.sample.episode import EpisodeRows, parse_episode_rows
from lerowds.reader.sample.stages import Decoded, Run, build, pending, run_positions, transformed


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumerConfig:
    """What the sample loop needs besides the events: where bytes come from and how samples are built."""

    store: EpisodeStore
    spec: SampleSpec
    row_of: Mapping[int, int]  # episode index -> episode table row
    fps: int
    decoder: str
    tolerance_s: float
    decoder_cache_size: int
    seed: int
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    where: str = ""
    run_length: int = 1  # > 1: run mode, whose decoders keep only the windows' reach between runs


@dataclass(frozen=True, slots=True)
class Fetched:
    """A loaded episode's parquet member."""

    episode: int
    data: bytes


class Decoders:
    """A consumer's open decoders, one per (episode, camera) of its pool (an LRU), and the frames they
    produced (``produced``: those decoded only to reach a target included, where the backend counts them).

    In run mode an episode's runs come in ascending order (``order/runs.py``): run ``n + 1`` asks for the
    windows' reach before its first frame, which run ``n`` decoded, then the frames after run ``n``'s last.
    Each decoder keeps the reach (``keep_frames``: the camera's window span, as RGB; nothing else) and reads
    on without a seek, so each frame of an episode is decoded once."""

    def __init__(self, cfg: ConsumerConfig, store: EpisodeStore) -> None:
        self._cfg, self._store = cfg, store
        self._cache: DecoderCache[tuple[int, str]] = DecoderCache(cfg.decoder_cache_size)
        self.produced = 0

    def _open(self, rows: EpisodeRows, key: str) -> ClipDecoder:
        cfg = self._cfg
        clip = self._store.clip(cfg.row_of[rows.episode_index], key)
        context = ClipContext(rows.episode_index, key)
        return make_decoder(  # channels first: the CHW tensors of build_sample need no transposing copy
            cfg.decoder,
            clip,
            cfg.fps,
            rows.length,
            context,
            tolerance_s=cfg.tolerance_s,
            channels_first=True,
            frame_size=cfg.store.index.frame_size(key),
            keep_frames=window_reach(cfg.spec, key) if cfg.run_length > 1 else None,
        )

    def is_open(self, rows: EpisodeRows, key: str) -> bool:
        return (rows.episode_index, key) in self._cache

    def frames(self, rows: EpisodeRows, key: str, positions: np.ndarray) -> np.ndarray:
        decoder = self._cache.get((rows.episode_index, key), lambda: self._open(rows, key))
        before = getattr(decoder, "decoded", None)
        frames = decoder.frames(positions.tolist())
        self.produced += len(positions) if before is None else decoder.decoded - before
        return frames

    def discard(self, episode: int, keys: Iterable[str]) -> None:
        for key in keys:
            self._cache.discard((episode, key))

    def close(self) -> None:
        self._cache.close()


# ---- stages ---------------------------------------------------------------------------------------------
def fetch(events: Iterable[Any], store: EpisodeStore, row_of: Mapping[int, int]) -> Iterator[Any]:
    """Stage ``bytes``: ``Load`` -> ``Fetched`` (the episode's parquet member); ``Release`` also releases the
    episode's bytes in the store; emits pass."""
    for ev in events:
        if isinstance(ev, Load):
            yield Fetched(ev.episode, store.parquet_bytes(row_of[ev.episode]))
            continue
        if isinstance(ev, Release):
            store.release(row_of[ev.episode])
        yield ev


def rows(items: Iterable[Any], cfg: ConsumerConfig) -> Iterator[Run | Release]:
    """Stage ``rows``: parse each fetched episode (held while resident); each ``EmitRun`` -> a ``Run`` of its
    episode's rows; ``Release`` drops them and passes."""
    held: dict[int, EpisodeRows] = {}  # resident episode -> rows, shared by its segments in the pool
    lengths, row_of, image_keys = cfg.store.table["length"], cfg.row_of, cfg.spec.image_keys
    for item in items:
        if isinstance(item, EmitRun):
            yield Run(held[item.episode], item.start, item.frames, item.first)
        elif isinstance(item, Fetched):
            length = int(lengths[row_of[item.episode]])
            held[item.episode] = parse_episode_rows(
                item.data, episode_index=item.episode, length=length, image_keys=image_keys, where=cfg.where
            )
        else:
            del held[item.episode]
            yield item


def decode(items: Iterable[Run | Release], decoders: Decoders, spec: SampleSpec) -> Iterator[Decoded]:
    """Stage ``decode``: each run's frames per camera in one decoder call; ``Release`` closes the episode's
    decoders."""
    for item in items:
        if isinstance(item, Release):
            decoders.discard(item.episode, spec.video_keys)
            continue
        video = {}
        for key in spec.video_keys:
            positions = run_positions(spec, key, item)
            video[key] = (positions, decoders.frames(item.rows, key, positions))
        yield Decoded(item, video)


def consume(
    events: Iterable[Any],
    cfg: ConsumerConfig,
    *,
    epoch: int,
    stats: StatsSlot | None = None,
    board: StatsBoard | None = None,
    log_every_s: float | None = None,
    buffer_keys: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[dict[str, Any]]:
    """Turn a consumer's pool events (emits as ``EmitRun``) into samples; only emitted frames (and their
    windows) are decoded. ``buffer_keys``: the shuffle buffer's keys (run mode), None for arrival order."""
    table = cfg.store.table
    tap = (
        NoStats()
        if stats is None
        else StatsTap(
            stats, lambda e: int(table["size"][cfg.row_of[e]]), board=board, log_every_s=log_every_s
        )
    )
    store = tap.store(cfg.store)
    decoders = Decoders(cfg, store)
    plain = dataclasses.replace(cfg.spec, image_transforms=None)  # transforms are the next stage's
    try:
        runs = rows(fetch(tap.events(residency(events)), store, cfg.row_of), cfg)
        waiting = pending(decode(runs, tap.decoders(decoders), cfg.spec))
        if buffer_keys is not None:  # the buffer holds decoded runs, not built samples
            waiting = shuffle_buffer(((p.j, p) for p in waiting), buffer_keys)
        done = transformed(build(waiting, plain), cfg.spec, cfg.transform, seed=cfg.seed, epoch=epoch)
        yield from tap.samples(b.sample for b in done)
    finally:
        # The iteration is over (exhausted, broken off, or failed): close decoders, stop the store's
        # background downloads and release what the pool still held, so no thread outlives the epoch.
        decoders.close()
        cfg.store.close()
