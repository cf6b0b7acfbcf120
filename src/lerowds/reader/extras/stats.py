"""Live per-stage stats: cheap counters per consumer, shared with the main process, read as one dict.

Each DataLoader worker (or the main process with ``num_workers=0``) writes only its own slot of one
``shared.SharedArray`` (no locks: one writer per slot); ``StatsBoard.snapshot()`` in any process sums the slots.
Off by default: a dataset without a board does no timing at all.
"""

from __future__ import annotations

import time
from typing import Any

from lerowds.reader.shared import SharedArray

FIELDS = (
    "samples",
    "fetch_s",
    "fetch_bytes",
    "episodes_admitted",
    "decode_s",
    "frames_decoded",
    "decoder_hits",
    "decoder_misses",
    "pool_episodes",
    "pool_bytes",
    "pool_bytes_peak",
    "first_sample_time",
    "last_sample_time",
)
_F = {name: i for i, name in enumerate(FIELDS)}
MAX_SLOTS = 256


class StatsSlot:
    """The counters of one consumer (a view on its slot of the shared array)."""

    __slots__ = ("_arr", "_base")

    def __init__(self, arr: Any, slot: int) -> None:
        """``arr``: the board's flat array of slots × ``FIELDS`` (``SharedArray.raw``)."""
        self._arr, self._base = arr, slot * len(FIELDS)

    def add(self, field: str, value: float) -> None:
        self._arr[self._base + _F[field]] += value

    def set(self, field: str, value: float) -> None:
        self._arr[self._base + _F[field]] = value

    def get(self, field: str) -> float:
        return self._arr[self._base + _F[field]]

    def sample_done(self) -> None:
        now = time.perf_counter()
        arr, base = self._arr, self._base
        arr[base] += 1
        if not arr[base + _F["first_sample_time"]]:
            arr[base + _F["first_sample_time"]] = now
        arr[base + _F["last_sample_time"]] = now


class StatsBoard:
    """One shared array of ``MAX_SLOTS`` consumer slots (rank-local worker ids)."""

    def __init__(self) -> None:
        self._shared = SharedArray(FIELDS, slots=MAX_SLOTS, typecode="d")  # travels as SharedArray does

    def slot(self, worker: int) -> StatsSlot:
        if not 0 <= worker < MAX_SLOTS:
            raise ValueError(f"stats support at most {MAX_SLOTS} workers per rank, got worker {worker}")
        return StatsSlot(self._shared.raw, worker)

    def reset(self) -> None:
        self._shared.reset()

    def snapshot(self) -> dict[str, float]:
        """Totals over consumers plus derived rates: decode ms per frame, hit rate, samples/s."""
        total = dict.fromkeys(FIELDS, 0.0)
        starts, ends = [], []
        for row in self._shared.rows():
            if not row["samples"] and not row["episodes_admitted"]:
                continue
            for name, value in row.items():
                total[name] += value
            if row["first_sample_time"]:
                starts.append(row["first_sample_time"])
                ends.append(row["last_sample_time"])
        out = {k: v for k, v in total.items() if k not in ("first_sample_time", "last_sample_time")}
        out["fetch_ms"] = out.pop("fetch_s") * 1e3
        out["decode_ms"] = out.pop("decode_s") * 1e3
        out["decode_ms_per_frame"] = (
            out["decode_ms"] / out["frames_decoded"] if out["frames_decoded"] else 0.0
        )
        lookups = out["decoder_hits"] + out["decoder_misses"]
        out["decoder_hit_rate"] = out["decoder_hits"] / lookups if lookups else 0.0
        span = (max(ends) - min(starts)) if starts else 0.0
        out["samples_per_s"] = (out["samples"] - 1) / span if span > 0 else 0.0
        return out

    def format(self) -> str:
        s = self.snapshot()
        return (
            f"{s['samples']:.0f} samples ({s['samples_per_s']:.0f}/s), fetch {s['fetch_ms']:.0f} ms / "
            f"{s['fetch_bytes'] / 1e6:.1f} MB, decode {s['decode_ms_per_frame']:.2f} ms/frame "
            f"({s['frames_decoded']:.0f} frames, decoder hits {100 * s['decoder_hit_rate']:.0f}%), "
            f"pool {s['pool_episodes']:.0f} episodes / {s['pool_bytes'] / 1e6:.1f} MB"
        )
