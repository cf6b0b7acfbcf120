"""Reproducible augmentations: every sample's transforms run under a seed derived from (seed, epoch, index).

A resumed run therefore applies the same random crops and colour jitter to the same samples as the
uninterrupted one. The seed drives torch's global RNG (which torchvision transforms draw from) inside a
forked RNG state, so the caller's RNG stream is left untouched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from lerowds.errors import ConfigError
from lerowds.reader.sample.build import SampleSpec

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


@dataclass(frozen=True, slots=True)
class DeferredTransforms:
    """A dataset's transforms applied to samples built without them, exactly as the sample loop would have
    (same per-sample seed, same RNG draw order), one sample at a time under ``lock``: consumer threads of one
    process share torch's RNG, so they decode in parallel and augment in turn (``lerowds.Loader``)."""

    spec: SampleSpec  # the dataset's own spec: its image_transforms and windows
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None
    seed: int
    lock: threading.Lock
    where: str = ""

    def apply(self, samples: Iterator[dict[str, Any]], epoch: int) -> Iterator[dict[str, Any]]:
        """A stage: ``samples`` of ``epoch`` in, the same samples transformed out."""
        spec = self.spec
        windowed = set() if spec.windows is None else set(spec.windows.offsets)
        cameras = set(spec.camera_keys)
        for sample in samples:
            if "index" in sample:
                index = int(sample["index"])
            elif "frame_index" in sample:
                index = int(sample["frame_index"])
            else:
                raise ConfigError(
                    f"{self.where}: transforms under lerowds.Loader need an 'index' or 'frame_index' column "
                    "to seed each sample's augmentation"
                )
            with self.lock, seeded_rng(sample_seed(self.seed, epoch, index)):
                if spec.image_transforms is not None:
                    for key in [k for k in sample if k in cameras]:  # build order: the RNG draws match
                        t = sample[key] if key in windowed else sample[key].unsqueeze(0)
                        t = spec.image_transforms(t)
                        sample[key] = t if key in windowed else t[0]
                if self.transform is not None:
                    sample = self.transform(sample)
            yield sample
