"""delta_timestamps → frame offsets, and exact in-episode windows with lerobot's padding rule."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from lerowds.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DeltaWindows:
    """Validated windows: for each key, the frame offsets ``round(delta_s * fps)`` in the user's order."""

    offsets: Mapping[str, tuple[int, ...]]

    def __post_init__(self) -> None:
        for key, offs in self.offsets.items():
            if len(offs) == 0:
                raise ConfigError(
                    f"delta_timestamps[{key!r}] is empty; give at least one offset (e.g. [0.0])"
                )

    @property
    def span(self) -> tuple[int, int]:
        """The smallest and largest offset over all keys (how far windows reach back and ahead)."""
        if not self.offsets:
            return 0, 0
        lo = min(min(o) for o in self.offsets.values())
        hi = max(max(o) for o in self.offsets.values())
        return lo, hi


def validate_delta_timestamps(
    delta_timestamps: Mapping[str, Iterable[float]] | None,
    *,
    fps: int,
    features: Iterable[str],
    tolerance_s: float = 1e-4,
) -> DeltaWindows | None:
    """Check keys exist and every delta is a multiple of 1/fps within ``tolerance_s`` (as lerobot does)."""
    if delta_timestamps is None:
        return None
    if not isinstance(delta_timestamps, Mapping):
        raise ConfigError(
            f"delta_timestamps must be a dict key -> list of seconds, got {type(delta_timestamps)}"
        )
    known = list(features)
    offsets: dict[str, tuple[int, ...]] = {}
    for key, deltas in delta_timestamps.items():
        if key not in known:
            raise ConfigError(
                f"delta_timestamps key {key!r} is not a feature of this dataset; features: {known}"
            )
        if isinstance(deltas, (str, bytes)) or not isinstance(deltas, Iterable):
            raise ConfigError(f"delta_timestamps[{key!r}] must be a list of seconds, got {deltas!r}")
        values = _seconds(key, deltas)
        bad = [d for d in values if abs(d * fps - round(d * fps)) / fps > tolerance_s]
        if bad:
            raise ConfigError(
                f"delta_timestamps[{key!r}] must be multiples of 1/fps={1 / fps:g} s within "
                f"tolerance_s={tolerance_s:g}, got {bad} (in {values})"
            )
        offsets[key] = tuple(round(d * fps) for d in values)
    return DeltaWindows(offsets)


def _seconds(key: str, deltas: Iterable[object]) -> list[float]:
    """The deltas as finite floats; anything else (None, NaN, inf, a string, a bool) names the key."""
    items = list(deltas)
    values = []
    for d in items:
        try:
            if isinstance(d, (bool, str, bytes)):
                raise TypeError
            value = float(d)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"delta_timestamps[{key!r}] must hold numbers of seconds, got {d!r} (in {items!r})"
            ) from None
        if not np.isfinite(value):
            raise ConfigError(
                f"delta_timestamps[{key!r}] must hold finite seconds, got {value} (in {items!r})"
            )
        values.append(value)
    return values


def window_positions(frame: int, length: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame positions of a window around ``frame`` in an episode of ``length`` frames, and its pad mask.

    Out-of-episode positions take the nearest in-episode frame (first or last) and are marked padded,
    which is lerobot's rule.
    """
    raw = frame + offsets
    pos = np.clip(raw, 0, length - 1)
    return pos, raw != pos
