"""The events of a consumer's pool stream (a segment enters the pool, one of its frames is emitted, it
leaves) and what they make resident: the episodes whose segments are in the pool."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

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
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Load:
    """Episode ``episode`` becomes resident: the first of its segments entered the pool (read its rows)."""

    episode: int


@dataclass(frozen=True, slots=True)
class Release:
    """Episode ``episode`` is no longer resident: the last of its segments left the pool (free it)."""

    episode: int


class Residency:
    """The episodes a consumer holds: one is resident while any of its segments is in the pool (two can be,
    with ``remainder="repeat"``). A refcount of pool segments per episode; the real consumer
    (``pipeline.consume``) and the dry run (``lerowds plan``) both count with it."""

    __slots__ = ("_refs",)

    def __init__(self) -> None:
        self._refs: dict[int, int] = {}  # episode -> its segments in the pool

    def admit(self, episode: int) -> bool:
        """A segment of ``episode`` entered the pool; True when the episode becomes resident."""
        refs = self._refs.get(episode, 0)
        self._refs[episode] = refs + 1
        return refs == 0

    def evict(self, episode: int) -> bool:
        """A segment of ``episode`` left the pool; True when the episode stops being resident."""
        refs = self._refs.get(episode, 0)
        if refs == 0:
            raise ValueError(f"episode {episode} left the pool but none of its segments is in it")
        if refs == 1:
            del self._refs[episode]
            return True
        self._refs[episode] = refs - 1
        return False

    def __contains__(self, episode: object) -> bool:
        return episode in self._refs

    def __len__(self) -> int:
        return len(self._refs)


def residency(events: Iterable[T]) -> Iterator[T | Load | Release]:
    """Pool events in, episode events out: ``Load`` before an episode's first segment's frames, each
    ``Emit`` as it is, ``Release`` after its last segment leaves."""
    held = Residency()
    for ev in events:
        if isinstance(ev, Admit):
            if held.admit(ev.segment.episode):
                yield Load(ev.segment.episode)
        elif isinstance(ev, Evict):
            if held.evict(ev.episode):
                yield Release(ev.episode)
        else:  # an emit (of a frame, or of a run: ``order.runs.EmitRun``) passes as it is
            yield ev
