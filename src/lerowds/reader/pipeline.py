"""One consumer's sample loop: pool events in, samples out (admit → tabular rows, emit → decode + build)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.reader.decode.base import ClipContext, ClipDecoder
from lerowds.reader.decode.cache import DecoderCache, make_decoder
from lerowds.reader.extras.stats import StatsBoard, StatsSlot
from lerowds.reader.io.store import EpisodeStore
from lerowds.reader.order.events import Admit, Emit, Evict, Load, residency
from lerowds.reader.sample.augment import sample_seed, seeded_rng
from lerowds.reader.sample.build import SampleSpec, build_sample
from lerowds.reader.sample.episode import EpisodeRows, parse_episode_rows

logger = logging.getLogger(__name__)


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

    @property
    def seeded(self) -> bool:
        """Transforms run under a per-sample seed so a resumed run augments identically."""
        return self.transform is not None or self.spec.image_transforms is not None


def consume(
    events: Iterator[Admit | Emit | Evict],
    cfg: ConsumerConfig,
    *,
    epoch: int,
    stats: StatsSlot | None = None,
    board: StatsBoard | None = None,
    log_every_s: float | None = None,
) -> Iterator[dict[str, Any]]:
    """Turn a consumer's pool events into samples; only emitted frames (and their windows) are decoded."""
    store, spec = cfg.store, cfg.spec
    rows_of: dict[int, EpisodeRows] = {}  # resident episode -> rows, shared by its segments in the pool
    decoders: DecoderCache[tuple[int, str]] = DecoderCache(cfg.decoder_cache_size)
    next_log = time.perf_counter() + log_every_s if log_every_s else None

    def open_decoder(rows: EpisodeRows, key: str) -> ClipDecoder:
        clip = store.clip(cfg.row_of[rows.episode_index], key)
        context = ClipContext(rows.episode_index, key)
        return make_decoder(  # channels first: the CHW tensors of build_sample need no transposing copy
            cfg.decoder,
            clip,
            cfg.fps,
            rows.length,
            context,
            tolerance_s=cfg.tolerance_s,
            channels_first=True,
            frame_size=store.index.frame_size(key),
        )

    def decode(rows: EpisodeRows, key: str, positions: np.ndarray) -> np.ndarray:
        cache_key = (rows.episode_index, key)
        if stats is None:
            return decoders.get(cache_key, lambda: open_decoder(rows, key)).frames(positions.tolist())
        stats.add("decoder_hits" if cache_key in decoders else "decoder_misses", 1)
        t0 = time.perf_counter()
        frames = decoders.get(cache_key, lambda: open_decoder(rows, key)).frames(positions.tolist())
        stats.add("decode_s", time.perf_counter() - t0)
        stats.add("frames_decoded", len(positions))
        return frames

    def admit(episode: int) -> None:
        row = cfg.row_of[episode]
        t0 = time.perf_counter() if stats is not None else 0.0
        data = store.parquet_bytes(row)
        length = int(store.table["length"][row])
        rows_of[episode] = parse_episode_rows(
            data, episode_index=episode, length=length, image_keys=spec.image_keys, where=cfg.where
        )
        if stats is not None:
            size = int(store.table["size"][row])
            stats.add("fetch_s", time.perf_counter() - t0)
            stats.add("fetch_bytes", len(data))
            stats.add("episodes_admitted", 1)
            stats.add("pool_episodes", 1)
            stats.add("pool_bytes", size)
            stats.set("pool_bytes_peak", max(stats.get("pool_bytes_peak"), stats.get("pool_bytes")))

    def evict(episode: int) -> None:
        del rows_of[episode]
        for key in spec.video_keys:
            decoders.discard((episode, key))
        store.release(cfg.row_of[episode])
        if stats is not None:
            stats.add("pool_episodes", -1)
            stats.add("pool_bytes", -int(store.table["size"][cfg.row_of[episode]]))

    def build(rows: EpisodeRows, frame: int) -> dict[str, Any]:
        def video(key: str, positions: np.ndarray) -> np.ndarray:
            return decode(rows, key, positions)

        if not cfg.seeded:
            return build_sample(rows, frame, spec, video)
        index = int(rows.columns["index"][frame]) if "index" in rows.columns else frame
        with seeded_rng(sample_seed(cfg.seed, epoch, index)):
            sample = build_sample(rows, frame, spec, video)
            return cfg.transform(sample) if cfg.transform is not None else sample

    try:
        for ev in residency(events):  # episode Load / Release from the pool's Admit / Evict
            if isinstance(ev, Emit):
                yield build(rows_of[ev.episode], ev.frame)
                if stats is not None:
                    stats.sample_done()
                    if next_log is not None and board is not None and time.perf_counter() >= next_log:
                        logger.info("lerowds stats: %s", board.format())
                        next_log = time.perf_counter() + (log_every_s or 0.0)
            elif isinstance(ev, Load):
                admit(ev.episode)
            else:
                evict(ev.episode)
    finally:
        # The iteration is over (exhausted, broken off, or failed): close decoders, stop the store's
        # background downloads and release what the pool still held, so no thread outlives the epoch.
        decoders.close()
        store.close()
