"""The windowed pool's integer math (order version 2, see ``lerowds.reader.order.pool``): each segment's pool
window, its lifetime ``[admit, evict)``, and the counter-based 64-bit keys of its frames.

Pure functions of integers and numpy arrays; ``PoolOrder`` sorts frames by these keys, ``lerowds plan``
bounds pool memory with the windows.
"""

from __future__ import annotations

import numpy as np

from lerowds.checks import check_int

KEY_TAG = 0x4C52_504B  # "LRPK": SeedSequence tag of the frame keys
GAMMA = np.uint64(0x9E37_79B9_7F4A_7C15)
_MIX1 = np.uint64(0xBF58_476D_1CE4_E5B9)
_MIX2 = np.uint64(0x94D0_49BB_1331_11EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on uint64 (wrapping arithmetic), in place: a bijective 64-bit mixer."""
    x ^= x >> np.uint64(30)
    x *= _MIX1
    x ^= x >> np.uint64(27)
    x *= _MIX2
    x ^= x >> np.uint64(31)
    return x


def key_base(seed: int, epoch: int, rank: int, worker: int) -> np.uint64:
    """The consumer's 64-bit key stream offset."""
    for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
        check_int(name, value)
    words = [int(seed), int(epoch), int(rank), int(worker), KEY_TAG]
    return np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]


def pool_windows(
    num_segments: int, *, pool_size: int, sizes: np.ndarray | None = None, byte_budget: int | None = None
) -> np.ndarray:
    """``lo_j`` for each segment ``j``: the first segment of the pool when ``j`` is admitted (ascending)."""
    j = np.arange(num_segments, dtype=np.int64)
    lo = np.maximum(j - pool_size + 1, 0)
    if byte_budget is not None and num_segments:
        held = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
        lo = np.maximum(lo, np.searchsorted(held, held[1:] - byte_budget, side="left"))
    return np.minimum(lo, j)


def window_bounds(
    num_segments: int,
    *,
    pool_size: int,
    sizes: np.ndarray | None = None,
    byte_budget: int | None = None,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: every pool the consumer ever holds lies inside one window ``[lo[j], hi[j]]``."""
    j = np.arange(num_segments, dtype=np.int64)
    if shuffle:
        return pool_windows(num_segments, pool_size=pool_size, sizes=sizes, byte_budget=byte_budget), j
    return j, ordered_fill(j, num_segments, pool_size, sizes, byte_budget) - 1


def ordered_fill(
    c: np.ndarray, m: int, pool_size: int, sizes: np.ndarray | None, byte_budget: int | None
) -> np.ndarray:
    """Without shuffle, the pool while segment ``c`` drains is ``[c, g)``: filled in list order up to
    ``pool_size`` segments and the budget (at least one segment)."""
    g = np.minimum(c + pool_size, m)
    if byte_budget is not None:
        held = np.concatenate([[0], np.cumsum(np.asarray(sizes, dtype=np.int64))])
        fits = np.searchsorted(held, held[c] + byte_budget, side="right") - 1
        g = np.minimum(g, np.maximum(c + 1, fits))
    return g


def lifetimes(lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Admission and eviction times ``(a, b)`` of each segment from the windows ``lo`` (both ascending)."""
    m = lo.size
    if not m:
        return lo.copy(), lo.copy()
    j = np.arange(m, dtype=np.int64)
    h = int(np.searchsorted(lo, 0, side="right")) - 1
    if h == m - 1:  # the whole share in the first window: one lifetime for all, a uniform shuffle
        return np.zeros(m, dtype=np.int64), np.full(m, m, dtype=np.int64)
    admit = np.where(j <= h, 0, j)
    e = np.searchsorted(lo, j, side="right")
    evict = np.where(e < m, e, m + j - lo[-1])
    return admit, evict


def frame_keys(counter: np.ndarray, base: np.uint64, admit: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Key of each frame: ``(admit << 32) + width * (mix64(base + (counter + 1) * GAMMA) >> 32)``, uint64.

    ``counter``: the frame's position in the consumer's list; ``admit``/``width``: its segment's admission
    time and lifetime (``evict - admit``), per frame."""
    x = counter.astype(np.uint64)
    x += np.uint64(1)
    x *= GAMMA
    x += base
    key = mix64(x) >> np.uint64(32)
    key *= width
    key += admit.astype(np.uint64) << np.uint64(32)
    return key
