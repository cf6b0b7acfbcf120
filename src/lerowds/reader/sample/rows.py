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
        n = self._ids.size
        if n and self._ids[0] == 0 and self._ids[-1] == n - 1:
            # strictly increasing ids (``EpisodeTable`` checks it) from 0 to n-1: each episode is its row
            rows, bad = episodes.copy(), (episodes < 0) | (episodes >= n)
        else:
            # queries in sorted order: searchsorted then walks the ids once instead of jumping about (a
            # consumer's episodes come shuffled; at 1M episodes this is ~2x less CPU, the sort included)
            order = np.argsort(episodes, kind="stable")
            rows = np.empty_like(episodes)
            rows[order] = np.searchsorted(self._ids, episodes[order])
            bad = rows >= n
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
