"""The sample half of a consumer's path as stages, iterator in, iterator out: decoded runs -> built samples ->
transformed samples (``pending`` in between: the shuffle buffer reorders pending samples, which hold their
run's decoded frames once, and each is built as it leaves). A **run** is frames ``[start, start + r)`` of one episode whose samples are built from one
decode (``r = 1``: one frame, today's per-sample path); every item carries its sample's arrival position ``j``
in the consumer's stream (what the shuffle buffer orders by)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lerowds.reader.sample.augment import sample_seed, seeded_rng
from lerowds.reader.sample.build import SampleSpec, build_sample, sample_positions
from lerowds.reader.sample.episode import EpisodeRows


@dataclass(frozen=True, slots=True)
class Run:
    """Frames ``frames`` (ascending, in ``[start, start + r)``) of an episode to build from one decode; the sample
    of frame ``f`` is the consumer's ``first + f - start``-th in arrival order."""

    rows: EpisodeRows
    start: int
    frames: tuple[int, ...]
    first: int


@dataclass(frozen=True, slots=True)
class Decoded:
    """A run and, per video key, the decoded frames at ``positions`` (ascending unless the run has one frame:
    then exactly the window's positions, repeats included, as the per-sample path asks for them)."""

    run: Run
    video: Mapping[str, tuple[np.ndarray, np.ndarray]]  # key -> (positions, (T, H, W, 3) frames)


@dataclass(frozen=True, slots=True)
class Built:
    """A built sample, its arrival position ``j`` and the index its transforms are seeded by."""

    j: int
    index: int
    sample: dict[str, Any]


def run_positions(spec: SampleSpec, key: str, run: Run) -> np.ndarray:
    """The frames of camera ``key`` the run's samples need: the window of its one frame as asked for, or the
    ascending union of its frames' windows (decoded in one forward pass)."""
    length = run.rows.length
    if len(run.frames) == 1:
        return sample_positions(spec, key, run.frames[0], length)[0]
    return np.unique(np.concatenate([sample_positions(spec, key, f, length)[0] for f in run.frames]))


def _lookup(positions: np.ndarray, frames: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Rows ``wanted`` of the run's decoded ``frames`` (at ascending ``positions``), a fresh array in the
    decoder's memory layout: (T, H, W, 3), a view of (T, 3, H, W) memory when the decoder gave one."""
    idx = np.searchsorted(positions, wanted)
    chw = frames.transpose(0, 3, 1, 2)
    if chw.flags.c_contiguous:  # channels-first decoder: copy CHW rows, no transposing copy
        return chw[idx].transpose(0, 2, 3, 1)
    return frames[idx]


@dataclass(frozen=True, slots=True)
class Pending:
    """Frame ``frame`` of a decoded run, to be built: its arrival position ``j`` and the index its transforms
    are seeded by. Pending samples of one run share its decoded frames (held until the last one is built)."""

    j: int
    index: int
    decoded: Decoded
    frame: int


def pending(decoded: Iterable[Decoded]) -> Iterator[Pending]:
    """Stage: each decoded run -> one pending sample per frame to build, in frame order."""
    for item in decoded:
        run = item.run
        index_col = run.rows.columns.get("index")
        for f in run.frames:
            index = int(index_col[f]) if index_col is not None else f
            yield Pending(run.first + f - run.start, index, item, f)


def build(items: Iterable[Pending], spec: SampleSpec) -> Iterator[Built]:
    """Stage: each pending sample -> the built sample (frames shared between overlapping windows); no
    transforms."""
    for item in items:
        run, video = item.decoded.run, item.decoded.video
        single = len(run.frames) == 1

        def frames_of(
            key: str, wanted: np.ndarray, video: Mapping[str, Any] = video, single: bool = single
        ) -> np.ndarray:
            positions, frames = video[key]
            return frames if single else _lookup(positions, frames, wanted)

        yield Built(item.j, item.index, build_sample(run.rows, item.frame, spec, frames_of))


def apply_transforms(
    sample: dict[str, Any],
    spec: SampleSpec,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> dict[str, Any]:
    """``spec.image_transforms`` on each camera in build order, then ``transform``: the RNG draws of a sample
    built with them (call under the sample's seeded RNG)."""
    if spec.image_transforms is not None:
        windowed = set() if spec.windows is None else set(spec.windows.offsets)
        cameras = set(spec.camera_keys)
        for key in [k for k in sample if k in cameras]:
            t: torch.Tensor = sample[key] if key in windowed else sample[key].unsqueeze(0)
            t = spec.image_transforms(t)
            sample[key] = t if key in windowed else t[0]
    return transform(sample) if transform is not None else sample


def transformed(
    built: Iterable[Built],
    spec: SampleSpec,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None,
    *,
    seed: int,
    epoch: int,
) -> Iterator[Built]:
    """Stage: ``spec``'s image transforms and ``transform`` under each sample's seed (seed, epoch, index); a
    resumed or reordered run augments every sample identically. Without transforms, the items as they are."""
    if spec.image_transforms is None and transform is None:
        yield from built
        return
    for item in built:
        with seeded_rng(sample_seed(seed, epoch, item.index)):
            sample = apply_transforms(item.sample, spec, transform)
        yield Built(item.j, item.index, sample)
