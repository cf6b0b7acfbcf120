"""The two integer helpers every order module shares: argument checks and the seeded bit stream."""

from __future__ import annotations

import numpy as np

from lerowds.errors import ConfigError


def check_int(name: str, value: object, low: int = 0) -> None:
    """Raise ``ConfigError`` naming ``name`` unless ``value`` is an integer (not a bool) >= ``low``."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def bit_generator(*words: int) -> np.random.PCG64:
    """``PCG64(SeedSequence(words))``: callers use only its raw outputs, fixed across NumPy versions."""
    return np.random.PCG64(np.random.SeedSequence([int(w) for w in words]))
