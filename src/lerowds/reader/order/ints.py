"""The two integer helpers every order module shares: the argument check (``lerowds.checks``) and the
seeded bit stream."""

from __future__ import annotations

import numpy as np

from lerowds.checks import check_int

__all__ = ["bit_generator", "check_int"]


def bit_generator(*words: int) -> np.random.PCG64:
    """``PCG64(SeedSequence(words))``: callers use only its raw outputs, fixed across NumPy versions."""
    return np.random.PCG64(np.random.SeedSequence([int(w) for w in words]))
