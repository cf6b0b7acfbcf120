"""Live per-stage stats: cheap counters per consumer, shared with the main process, read as one dict.

Each DataLoader worker (or the main process with ``num_workers=0``) writes only its own slot of one
shared array (no locks: one writer per slot); ``StatsBoard.snapshot()`` in any process sums the slots.
Off by default: a dataset without a board does no timing at all.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from multiprocessing import context as mp_context
from typing import Any

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
        self._arr = mp.RawArray("d", MAX_SLOTS * len(FIELDS))

    def slot(self, worker: int) -> StatsSlot:
        if not 0 <= worker < MAX_SLOTS:
            raise ValueError(f"stats support at most {MAX_SLOTS} workers per rank, got worker {worker}")
        return StatsSlot(self._arr, worker)

    def reset(self) -> None:
        self._arr[:] = [0.0] * len(self._arr)

    def snapshot(self) -> dict[str, float]:
        """Totals over consumers plus derived rates: decode ms per frame, hit rate, samples/s."""
        n = len(FIELDS)
        total = dict.fromkeys(FIELDS, 0.0)
        starts, ends = [], []
        for slot in range(MAX_SLOTS):
            row = self._arr[slot * n : (slot + 1) * n]
            if not row[0] and not row[_F["episodes_admitted"]]:
                continue
            for name, value in zip(FIELDS, row):
                total[name] += value
            if row[_F["first_sample_time"]]:
                starts.append(row[_F["first_sample_time"]])
                ends.append(row[_F["last_sample_time"]])
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

    def __getstate__(self) -> dict[str, Any]:
        if mp_context.get_spawning_popen() is None:
            return {"values": list(self._arr)}  # a plain copy (deepcopy/pickle) gets a private board
        return {"arr": self._arr}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "arr" in state:
            self._arr = state["arr"]
        else:
            self._arr = mp.RawArray("d", state["values"])
