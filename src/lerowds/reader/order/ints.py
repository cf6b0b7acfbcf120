"""The seeded bit stream every order module draws from (argument checks live in ``lerowds.checks``)."""

from __future__ import annotations

import numpy as np


def bit_generator(*words: int) -> np.random.PCG64:
    """``PCG64(SeedSequence(words))``: callers use only its raw outputs, fixed across NumPy versions."""
    return np.random.PCG64(np.random.SeedSequence([int(w) for w in words]))
