"""``lerowds.mix(...)``: a weighted mix of converted datasets, opening path sources as ``LeRobotWebDataset``.

The mix itself (``MixedDataset``, its semantics, ``PASS_STRIDE``) is in ``mixed.py``, which does not import
the dataset; this module ties the two together, so neither imports the other's importer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.mixed import PASS_STRIDE, MixedDataset, MixSource, check_compatible, open_mix

__all__ = ["PASS_STRIDE", "MixSource", "MixedDataset", "check_compatible", "mix"]


def mix(
    sources: Mapping[str, Any] | Sequence[Any],
    weights: Mapping[str, float] | Sequence[float] | None = None,
    *,
    seed: int = 0,
    samples_per_epoch: int | None = None,
    **dataset_kwargs: Any,
) -> MixedDataset:
    """Mix datasets by weight: ``sources`` maps a name to a ``LeRobotWebDataset`` or a path/URL (a sequence is
    named by repo ids, or by positions when those repeat); ``{path: weight}`` is also accepted.

    ``weights`` (a mapping by name or a sequence; default: proportional to frames) are normalized to 1. Path
    sources are opened as ``LeRobotWebDataset(path, seed=seed, **dataset_kwargs)``.
    """
    return open_mix(
        sources,
        weights,
        open_source=LeRobotWebDataset,
        seed=seed,
        samples_per_epoch=samples_per_epoch,
        **dataset_kwargs,
    )
