"""Episode index -> episode table row, by binary search over the table's (strictly increasing) ids."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from lerowds.errors import FormatError


class RowOf(Mapping[int, int]):
    """A read-only mapping ``episode index -> table row`` that holds only the table's id column (no dict:
    a million-episode dict cost ~100 MB in every process)."""

    __slots__ = ("_ids",)

    def __init__(self, episode_ids: np.ndarray) -> None:
        self._ids = np.asarray(episode_ids)

    def rows(self, episodes: np.ndarray) -> np.ndarray:
        """Rows of many episodes at once (int64); an episode not in the table raises ``FormatError``."""
        episodes = np.asarray(episodes, dtype=np.int64)
        rows = np.searchsorted(self._ids, episodes)
        bad = rows >= self._ids.size
        bad[~bad] = self._ids[rows[~bad]] != episodes[~bad]
        if bad.any():
            missing = episodes[bad][:10].tolist()
            raise FormatError(f"episodes {missing} are not in this dataset ({self._ids.size} episodes)")
        return rows.astype(np.int64)

    def __getitem__(self, episode: int) -> int:
        row = int(np.searchsorted(self._ids, episode))
        if row >= self._ids.size or int(self._ids[row]) != episode:
            raise KeyError(episode)
        return row

    def __contains__(self, episode: object) -> bool:
        try:
            self[int(episode)]  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError):
            return False
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.tolist())

    def __len__(self) -> int:
        return int(self._ids.size)
