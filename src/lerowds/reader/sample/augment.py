"""Reproducible augmentations: every sample's transforms run under a seed derived from (seed, epoch, index).

A resumed run therefore applies the same random crops and colour jitter to the same samples as the
uninterrupted one. The seed drives torch's global RNG (which torchvision transforms draw from) inside a
forked RNG state, so the caller's RNG stream is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_MASK64 = (1 << 64) - 1
AUGMENT_TAG = 0x4C52_4147  # "LRAG"


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, index): same sample, same augmentation."""
    h = AUGMENT_TAG
    for word in (seed, epoch, index):
        h = _splitmix64(h ^ (int(word) & _MASK64))
    return h >> 1


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run the body with torch's CPU RNG seeded by ``seed``, restoring the previous RNG state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
