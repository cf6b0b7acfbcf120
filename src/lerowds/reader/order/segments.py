"""Segments (frames ``[start, stop)`` of one episode) one at a time, or many as three numpy columns.

``SegmentArray`` is what the order math passes around: a consumer of a million-episode dataset owns up to a
million segments, and building a Python object per segment cost seconds. It still behaves as a read-only
sequence of ``Segment`` (indexing, iteration, ``len``), so code written for lists keeps working.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from lerowds.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Segment:
    """Frames ``[start, stop)`` of episode ``episode`` (a dataset episode index) that a consumer owns."""

    episode: int
    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.episode < 0 or not 0 <= self.start < self.stop:
            raise ConfigError(
                f"Segment needs episode >= 0 and 0 <= start < stop, got episode={self.episode} "
                f"start={self.start} stop={self.stop}"
            )

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


class SegmentArray(Sequence[Segment]):
    """Segments as int64 columns ``episode``, ``start``, ``stop`` (read-only); a sequence of ``Segment``."""

    __slots__ = ("episode", "start", "stop")

    def __init__(self, episode: np.ndarray, start: np.ndarray, stop: np.ndarray) -> None:
        cols = [np.ascontiguousarray(c, dtype=np.int64).reshape(-1) for c in (episode, start, stop)]
        if not cols[0].shape == cols[1].shape == cols[2].shape:
            raise ConfigError(f"SegmentArray columns differ in length: {[c.size for c in cols]}")
        bad = (cols[0] < 0) | (cols[1] < 0) | (cols[1] >= cols[2])
        if bad.any():
            i = int(np.argmax(bad))
            raise ConfigError(
                f"Segment needs episode >= 0 and 0 <= start < stop, got episode={int(cols[0][i])} "
                f"start={int(cols[1][i])} stop={int(cols[2][i])}"
            )
        for c in cols:
            c.flags.writeable = False
        self.episode, self.start, self.stop = cols

    @classmethod
    def empty(cls) -> SegmentArray:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z)

    @classmethod
    def of(cls, segments: Sequence[Segment] | SegmentArray) -> SegmentArray:
        """``segments`` as a ``SegmentArray`` (itself when it already is one)."""
        if isinstance(segments, SegmentArray):
            return segments
        segs = list(segments)
        if not segs:
            return cls.empty()
        cols = np.array([(s.episode, s.start, s.stop) for s in segs], dtype=np.int64).reshape(-1, 3)
        return cls(cols[:, 0], cols[:, 1], cols[:, 2])

    @property
    def lengths(self) -> np.ndarray:
        """Frames of each segment."""
        return self.stop - self.start

    @property
    def num_frames(self) -> int:
        """Frames of all segments together."""
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return int(self.episode.size)

    @overload
    def __getitem__(self, i: int) -> Segment: ...

    @overload
    def __getitem__(self, i: slice) -> SegmentArray: ...

    def __getitem__(self, i: int | slice) -> Segment | SegmentArray:
        if isinstance(i, slice):
            return SegmentArray(self.episode[i], self.start[i], self.stop[i])
        return Segment(int(self.episode[i]), int(self.start[i]), int(self.stop[i]))

    def __iter__(self) -> Iterator[Segment]:
        for e, a, b in zip(self.episode.tolist(), self.start.tolist(), self.stop.tolist()):
            yield Segment(e, a, b)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SegmentArray):
            return all(np.array_equal(x, y) for x, y in zip(self.columns(), other.columns()))
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.episode, self.start, self.stop

    def __repr__(self) -> str:
        head = ", ".join(f"({e}, {a}, {b})" for e, a, b in zip(*(c[:4].tolist() for c in self.columns())))
        return f"SegmentArray({len(self)} segments: {head}{', ...' if len(self) > 4 else ''})"

    def __getstate__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.columns()

    def __setstate__(self, state: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        cols = [np.array(c, dtype=np.int64) for c in state]
        for c in cols:
            c.flags.writeable = False
        self.episode, self.start, self.stop = cols


def cut(
    episode: np.ndarray, offset: np.ndarray, begin: np.ndarray, end: np.ndarray, lo: int, hi: int
) -> SegmentArray:
    """The part inside ``[lo, hi)`` of a frame sequence made of runs laid end to end, as segments.

    Run ``i`` covers sequence positions ``[begin[i], end[i])`` (``end`` ascending, ``begin[i+1] == end[i]``,
    empty runs allowed), which are frames ``offset[i] + (position - begin[i])`` of episode ``episode[i]``.
    """
    if hi <= lo or not len(end):
        return SegmentArray.empty()
    first = int(np.searchsorted(end, lo, side="right"))
    last = int(np.searchsorted(end, hi, side="left"))
    sl = slice(first, min(last + 1, len(end)))
    b, e, o = begin[sl], end[sl], offset[sl]
    start = np.maximum(b, lo) - b
    stop = np.minimum(e, hi) - b
    keep = start < stop
    return SegmentArray(episode[sl][keep], start[keep] + o[keep], stop[keep] + o[keep])
