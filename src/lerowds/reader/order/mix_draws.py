"""Source order of a weighted mix as pure math: draws, resume positions, and the interleaving stage.

Draw ``i`` of consumer ``(seed, epoch, rank, worker)`` is raw output ``i`` of
``PCG64(SeedSequence([seed, epoch, rank, worker, MIX_TAG]))`` (as in ``order.py``, only raw outputs: fixed
across NumPy versions and platforms), as ``u = (raw >> 11) * 2**-53`` in [0, 1), mapped to a source through
the cumulative normalized weights. ``interleave`` is a generator stage over per-source pass streams; a
resume needs only the counts of the skipped draws (``source_positions``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from lerowds.checks import check_int
from lerowds.errors import ConfigError
from lerowds.reader.order.ints import bit_generator

T = TypeVar("T")

MIX_TAG = 0x4C52_4D58  # "LRMX": stream tag of the source draws
_BLOCK = 4096  # draws generated at once; buffering only, the order does not depend on it


def normalized_weights(weights: Sequence[float]) -> np.ndarray:
    """``weights / sum(weights)`` as float64; each must be finite and >= 0, their sum > 0."""
    w = np.asarray([float(x) for x in weights], dtype=np.float64)
    if w.size == 0 or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"mix weights must be finite, >= 0 and not all 0, got {list(weights)}")
    return w / w.sum()


class SourceDraws:
    """Consumer ``(seed, epoch, rank, worker)``'s source choices: draw ``i`` is raw output ``i`` of
    ``PCG64(SeedSequence([seed, epoch, rank, worker, MIX_TAG]))`` through the inverse CDF of ``weights``."""

    def __init__(self, weights: Sequence[float], *, seed: int, epoch: int, rank: int, worker: int) -> None:
        for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank), ("worker", worker)):
            check_int(name, value)
        self._edges = np.cumsum(normalized_weights(weights))[:-1]  # u >= edges[s-1] and < edges[s] -> s
        self._sources = self._edges.size + 1
        self._bitgen = bit_generator(seed, epoch, rank, worker, MIX_TAG)

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` choices (int64 source positions)."""
        u = (self._bitgen.random_raw(count) >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return np.searchsorted(self._edges, u, side="right").astype(np.int64)

    def counts(self, count: int) -> np.ndarray:
        """How often each source comes in the next ``count`` choices (consumes them)."""
        out = np.zeros(self._sources, dtype=np.int64)
        for start in range(0, count, _BLOCK * 16):
            out += np.bincount(self.take(min(_BLOCK * 16, count - start)), minlength=self._sources)
        return out

    def stream(self, count: int) -> Iterator[int]:
        """The next ``count`` choices one by one."""
        for start in range(0, count, _BLOCK):
            yield from self.take(min(_BLOCK, count - start)).tolist()


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a source's stream resumes: ``skip`` samples into pass ``passes`` (0-based)."""

    passes: int
    skip: int


def source_positions(counts: Sequence[int], per_pass: Sequence[int]) -> list[SourcePosition]:
    """Source ``s`` drawn ``counts[s]`` times with ``per_pass[s]`` samples a pass: ``divmod`` of the two."""
    if len(counts) != len(per_pass):
        raise ConfigError(f"got {len(counts)} counts but {len(per_pass)} per-pass sizes")
    out = []
    for s, (c, n) in enumerate(zip(counts, per_pass)):
        if c and n <= 0:
            raise ConfigError(f"source {s} was drawn {c} times but has {n} samples per pass")
        out.append(SourcePosition(*divmod(int(c), int(n))) if c else SourcePosition(0, 0))
    return out


def interleave(
    choices: Iterable[int],
    open_pass: Callable[[int, int, int], Iterator[T]],
    start: Sequence[SourcePosition],
) -> Iterator[tuple[int, T]]:
    """Yield ``(s, next item of source s)`` for each choice ``s``; ``open_pass(s, pass, skip)`` gives the
    items of a pass, opened on first use and replaced by the next pass when it runs out."""
    passes = [p.passes for p in start]
    skips = [p.skip for p in start]
    streams: list[Iterator[T] | None] = [None] * len(start)
    end = object()
    try:
        for s in choices:
            it = streams[s]
            if it is None:
                it = streams[s] = open_pass(s, passes[s], skips[s])
            item = next(it, end)
            if item is end:
                passes[s] += 1
                it = streams[s] = open_pass(s, passes[s], 0)
                item = next(it, end)
                if item is end:
                    raise ConfigError(f"source {s}: pass {passes[s]} is empty")
            yield s, item  # type: ignore[misc]
    finally:
        for it in streams:
            close = getattr(it, "close", None)
            if close is not None:
                close()
