"""``lerowds plan``'s pool memory: the largest pool window of each consumer, from the episode table's sizes.

An upper bound with no per-frame work (``window_bounds``); an episode is counted once however many of its
segments a window holds, as the consumer counts it (``Residency``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.reader.order.events import Residency
from lerowds.reader.order.lifetimes import window_bounds

# Memory of one open PyAV decoder (RSS growth after decoding a frame), measured once with PyAV 18.1, one
# decoder thread, 128x96..1280x720: libdav1d (AV1) ~5-7 YUV frames, FFmpeg's h264 ~15-16 (its reference
# buffer), plus a small fixed part. torchcodec and threaded decoding differ; this is an estimate.
DECODER_FRAMES = {"av1": 7}
DECODER_FRAMES_DEFAULT = 16
DECODER_FIXED_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class PoolMemory:
    """Peak pool memory over the epoch, an upper bound: the largest pool window of each consumer (an episode
    is counted from its admission until the window moves past it). ``*_bytes`` are estimates: tabular ≈
    parquet bytes of the held episodes, decoders ≈ ``decoder_bytes`` each; a rank's figure sums its workers'
    peaks."""

    tabular_bytes: int  # max over consumers of the peak tabular bytes held
    decoders: int  # max over consumers of the peak number of open decoders
    decoder_bytes: int  # max over consumers of the peak decoder bytes
    consumer_bytes: int  # max over consumers of the peak of tabular + decoder bytes
    rank_bytes: int  # max over ranks of the sum of its workers' peaks
    per_rank_bytes: tuple[int, ...]
    bytes_per_decoder: dict[str, int]  # camera -> estimated bytes of one open decoder


def decoder_bytes_estimate(feature: dict[str, Any]) -> int:
    """Estimated bytes of one open decoder of a video feature (see ``DECODER_FRAMES``)."""
    info = feature.get("info") or {}
    shape = feature.get("shape") or [0, 0]
    height = int(info.get("video.height") or shape[0])
    width = int(info.get("video.width") or shape[1])
    pix_fmt = str(info.get("video.pix_fmt") or "yuv420p")
    per_pixel = 3.0 if "444" in pix_fmt else 2.0 if "422" in pix_fmt else 1.5
    if any(depth in pix_fmt for depth in ("10", "12")):
        per_pixel *= 2
    frames = DECODER_FRAMES.get(str(info.get("video.codec") or ""), DECODER_FRAMES_DEFAULT)
    return int(frames * height * width * per_pixel) + DECODER_FIXED_BYTES


@dataclass(frozen=True, slots=True)
class Peak:
    tabular: int  # bytes
    open_episodes: int  # episodes whose decoders may be open
    total: int  # bytes, tabular + decoders


def consumer_peak(
    rows: np.ndarray,
    *,
    pool_size: int,
    shuffle: bool,
    tabular_sizes: np.ndarray,
    span_sizes: np.ndarray,
    byte_budget: int | None,
    episode_decoder_bytes: int,
    num_cameras: int,
) -> Peak:
    """One consumer's peak pool memory: the largest of its pool windows (segments of table rows ``rows``),
    an episode counted once however many of its segments a window holds (``Residency``, as the consumer)."""
    if not rows.size:
        return Peak(0, 0, 0)
    lo, hi = window_bounds(
        rows.size, pool_size=pool_size, sizes=span_sizes[rows], byte_budget=byte_budget, shuffle=shuffle
    )
    per_episode = episode_decoder_bytes if num_cameras else 0
    if np.unique(rows).size < rows.size:  # an episode twice in the share (remainder="repeat")
        return peak_refcounted(rows, lo, hi, tabular_sizes[rows], per_episode, num_cameras > 0)
    # every episode once: each counts 1 while in the window, so a window holds its segments' sum
    held = np.concatenate([[0], np.cumsum(tabular_sizes[rows])])
    tabular = held[hi + 1] - held[lo]
    count = (hi - lo + 1) if num_cameras else np.zeros_like(lo)
    total = tabular + count * per_episode
    return Peak(int(tabular.max()), int(count.max()), int(total.max()))


def peak_refcounted(
    episodes: np.ndarray, lo: np.ndarray, hi: np.ndarray, sizes: np.ndarray, per_episode: int, cameras: bool
) -> Peak:
    """``consumer_peak`` by walking the windows ``[lo[t], hi[t]]`` (they only move forward) through ``Residency``."""
    held = Residency()
    admit, evict, ep, size = held.admit, held.evict, episodes.tolist(), sizes.tolist()
    tabular = peak_tabular = peak_count = peak_total = 0
    first, last = 0, -1  # the window held so far: segments [first, last]
    for a, b in zip(lo.tolist(), hi.tolist()):
        for i in range(first, a):  # leave, then enter
            if evict(ep[i]):
                tabular -= size[i]
        for j in range(last + 1, b + 1):
            if admit(ep[j]):
                tabular += size[j]
        first, last = a, max(last, b)
        count = len(held) if cameras else 0
        peak_tabular = max(peak_tabular, tabular)
        peak_count = max(peak_count, count)
        peak_total = max(peak_total, tabular + count * per_episode)
    return Peak(peak_tabular, peak_count, peak_total)
