"""The events of a consumer's pool stream: a segment enters the pool, one of its frames is emitted, it leaves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lerowds.reader.order.segments import Segment


@dataclass(frozen=True, slots=True)
class Admit:
    """Segment ``index`` (its position in the consumer's list) enters the pool; ``frames`` remain to emit."""

    index: int
    segment: Segment
    frames: Sequence[int]  # ascending; ``range(start, stop)`` unless the pool was rebuilt by a skip


@dataclass(frozen=True, slots=True)
class Emit:
    """Emit frame ``frame`` of episode ``episode`` (from pool segment ``index``)."""

    index: int
    episode: int
    frame: int


@dataclass(frozen=True, slots=True)
class Evict:
    """Segment ``index`` (of episode ``episode``) has no frame left and leaves the pool."""

    index: int
    episode: int


PoolEvent = Admit | Emit | Evict
