"""The parts of ``index.json`` read or written apart from ``json``: each shard's episode id list (parsed by
Arrow, held as one compact array) and statistics that are not finite numbers."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from lerowds.format.table import compact_int


class EpisodeIds(Sequence[int]):
    """A shard's episode indices as one compact read-only array (a tuple of a million Python ints cost
    ~36 MB in every reader process, which never needs them); compares equal to any sequence of the same ints."""

    __slots__ = ("_ids",)

    def __init__(self, ids: Iterable[int] | np.ndarray) -> None:
        if not isinstance(ids, (list, tuple, np.ndarray)):
            ids = np.fromiter(ids, dtype=np.int64)
        self._ids = compact_int(np.asarray(ids, dtype=np.int64))

    def __len__(self) -> int:
        return int(self._ids.size)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        if isinstance(i, slice):
            return EpisodeIds(self._ids[i])
        return int(self._ids[i])

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EpisodeIds):
            return bool(np.array_equal(self._ids, other._ids))
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and list(other) == self._ids.tolist()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"EpisodeIds({self._ids.tolist()[:8]}{'...' if len(self) > 8 else ''})"


def nonfinite_stats(stats: Any, path: str = "") -> tuple[Any, list[str]]:
    """``stats`` with every NaN or infinite number replaced by ``None`` (JSON ``null``: most JSON parsers
    refuse ``NaN``), and the paths of those statistics (``"observation.state/std"``)."""
    if isinstance(stats, Mapping):
        out, where = {}, []
        for k, v in stats.items():
            out[k], sub = nonfinite_stats(v, f"{path}/{k}" if path else str(k))
            where += sub
        return out, where
    if isinstance(stats, (list, tuple)):
        items = [nonfinite_stats(v, path) for v in stats]
        return [v for v, _ in items], [path] if any(w for _, w in items) else []
    if isinstance(stats, float) and not math.isfinite(stats):
        return None, [path]
    return stats, []


def null_as_nan(stats: Any) -> Any:
    """Statistics as lerobot loads its own ``stats.json`` (which may hold ``NaN``): ``null`` back to NaN."""
    if isinstance(stats, dict):
        return {k: null_as_nan(v) for k, v in stats.items()}
    if isinstance(stats, list):
        return [null_as_nan(v) for v in stats]
    return math.nan if stats is None else stats


_EPISODE_LIST = re.compile(rb'"episodes": \[([0-9,\s]*)\]')
_SPACED_DIGITS = re.compile(rb"[0-9]\s+[0-9]")  # "1 2" is not two ids


def _parse_ids(lines: bytes, count: int) -> np.ndarray:
    """The ``count`` integers of ``lines`` (one per line, digits only), parsed by Arrow's CSV reader as one
    column (no Python object per id); an empty line or a missing or extra one is a ValueError."""
    if not count:
        return np.zeros(0, np.int64)
    try:
        column = pa_csv.read_csv(
            pa.BufferReader(lines),
            read_options=pa_csv.ReadOptions(column_names=["id"], use_threads=False),
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(column_types={"id": pa.int64()}),
        ).column(0)
    except pa.ArrowException as e:
        raise ValueError(f"bad episode list ({e})") from None
    if column.null_count or len(column) != count:
        raise ValueError("bad episode list (an empty item)")
    return column.to_numpy()


def cut_episode_lists(data: bytes) -> tuple[bytes, list[np.ndarray]]:
    """``index.json`` with each shard's ``"episodes": [...]`` emptied, and those lists parsed apart, all in
    one Arrow call (no ``np.fromstring``, which NumPy is removing).

    A million episode ids parsed by ``json`` cost ~0.2 CPU-s and ~45 MB that CPython's allocator keeps;
    the key and an integer list cannot occur inside a JSON string (its quotes would be escaped)."""
    bodies: list[bytes] = []
    counts: list[int] = []

    def take(match: re.Match[bytes]) -> bytes:
        body = match.group(1).strip()
        if _SPACED_DIGITS.search(body):
            raise ValueError(f"bad episode list {body[:80]!r}")
        if body:  # "3, 4,5" -> "3\n4\n5": one line per id; "1,,2" leaves an empty line, "1," one too few
            bodies.append(body.translate(None, b" \t\r\n").replace(b",", b"\n"))
        counts.append(bodies[-1].count(b"\n") + 1 if body else 0)
        return b'"episodes": []'

    cut = _EPISODE_LIST.sub(take, data)
    ids = _parse_ids(b"\n".join(bodies), sum(counts))
    return cut, np.split(ids, np.cumsum(counts)[:-1]) if counts else []
