"""Live per-stage stats: cheap counters per consumer, shared with the main process, read as one dict.

Each DataLoader worker (or the main process with ``num_workers=0``) writes only its own slot of one
``shared.SharedArray`` (no locks: one writer per slot); ``StatsBoard.snapshot()`` in any process sums the slots.
Off by default: a dataset without a board does no timing at all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from lerowds.reader.order.events import Load, Release
from lerowds.reader.shared import SharedArray

logger = logging.getLogger(__name__)
T = TypeVar("T")

FIELDS = (
    "samples",
    "fetch_s",
    "fetch_bytes",
    "episodes_admitted",
    "decode_s",
    "frames_decoded",
    "decoder_frames",
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
            f"({s['frames_decoded']:.0f} frames returned, {s['decoder_frames']:.0f} decoded, decoder hits {100 * s['decoder_hit_rate']:.0f}%), "
            f"pool {s['pool_episodes']:.0f} episodes / {s['pool_bytes'] / 1e6:.1f} MB"
        )


class NoStats:
    """The stats tap of a dataset without stats: every wrapper is the identity (no timing at all)."""

    def store(self, store: T) -> T:
        return store

    def decoders(self, decoders: T) -> T:
        return decoders

    def events(self, events: Iterable[T]) -> Iterable[T]:
        return events

    def samples(self, samples: Iterable[T]) -> Iterable[T]:
        return samples


class StatsTap(NoStats):
    """One consumer's stats as one wrapping layer around its sample path (no ``if stats`` in the loop): the
    store's byte fetches (``fetch_s``, ``fetch_bytes``), the pool's episode events (``episodes_admitted``,
    ``pool_*``), the decoders (``decode_s``, hits and misses, ``frames_decoded``: frames returned,
    ``decoder_frames``: frames the decoder produced, those decoded only to reach a target included) and the
    samples out (``samples``, first and last sample times, the periodic log)."""

    def __init__(
        self,
        slot: StatsSlot,
        episode_bytes: Callable[[int], int],
        *,
        board: StatsBoard | None = None,
        log_every_s: float | None = None,
    ) -> None:
        self.slot, self._bytes = slot, episode_bytes
        self._board, self._log_every_s = board, log_every_s

    def store(self, store: T) -> T:
        return _TimedStore(store, self.slot)  # type: ignore[return-value]  # the store's interface

    def decoders(self, decoders: T) -> T:
        return _TimedDecoders(decoders, self.slot)  # type: ignore[return-value]  # the decoders' interface

    def events(self, events: Iterable[T]) -> Iterator[T]:
        slot = self.slot
        for ev in events:
            if isinstance(ev, Load):
                slot.add("episodes_admitted", 1)
                slot.add("pool_episodes", 1)
                slot.add("pool_bytes", self._bytes(ev.episode))
                slot.set("pool_bytes_peak", max(slot.get("pool_bytes_peak"), slot.get("pool_bytes")))
            elif isinstance(ev, Release):
                slot.add("pool_episodes", -1)
                slot.add("pool_bytes", -self._bytes(ev.episode))
            yield ev

    def samples(self, samples: Iterable[T]) -> Iterator[T]:
        every, board = self._log_every_s, self._board
        next_log = time.perf_counter() + every if every and board is not None else None
        for sample in samples:
            yield sample
            self.slot.sample_done()
            if next_log is not None and board is not None and time.perf_counter() >= next_log:
                logger.info("lerowds stats: %s", board.format())
                next_log = time.perf_counter() + (every or 0.0)


class _TimedStore:
    """An episode store whose ``parquet_bytes`` is timed and counted; everything else passes through."""

    def __init__(self, store: Any, slot: StatsSlot) -> None:
        self._store, self._slot = store, slot

    def parquet_bytes(self, row: int) -> bytes:
        t0 = time.perf_counter()
        data = self._store.parquet_bytes(row)
        self._slot.add("fetch_s", time.perf_counter() - t0)
        self._slot.add("fetch_bytes", len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _TimedDecoders:
    """A consumer's decoders (``pipeline.Decoders``) whose ``frames`` calls are timed and counted."""

    def __init__(self, decoders: Any, slot: StatsSlot) -> None:
        self._decoders, self._slot = decoders, slot

    def frames(self, episode: Any, key: str, positions: Any) -> Any:
        slot, decoders = self._slot, self._decoders
        slot.add("decoder_hits" if decoders.is_open(episode, key) else "decoder_misses", 1)
        produced = decoders.produced
        t0 = time.perf_counter()
        frames = decoders.frames(episode, key, positions)
        slot.add("decode_s", time.perf_counter() - t0)
        slot.add("frames_decoded", len(positions))
        slot.add("decoder_frames", decoders.produced - produced)
        return frames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._decoders, name)
