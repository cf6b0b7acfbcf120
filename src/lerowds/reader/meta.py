"""``ds.meta``: what a training script asks of a dataset before iterating (fps, features, cameras, stats).

It stands in for lerobot's ``LeRobotDatasetMetadata`` where lerobot's training reads one
(``resolve_delta_timestamps``, ``make_policy(ds_meta=...)``, ``make_pre_post_processors(dataset_stats=...)``):
same attribute names, and ``stats`` as lerobot loads them (numpy arrays, at least 1-d).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.format import DatasetIndex

# Columns lerobot (>= 0.6) treats as language annotations (``lerobot.datasets.language.LANGUAGE_COLUMNS``).
LANGUAGE_COLUMNS = ("language_persistent", "language_events")


@dataclass(frozen=True, slots=True)
class DatasetMeta:
    """Dataset-level metadata, mirroring the attributes of lerobot's ``LeRobotDatasetMetadata``."""

    repo_id: str
    fps: int
    features: dict[str, Any]
    camera_keys: tuple[str, ...]
    video_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    tasks: tuple[str, ...]
    stats: dict[str, Any]
    total_frames: int
    total_episodes: int
    robot_type: str | None
    fingerprint: str

    @classmethod
    def from_index(cls, index: DatasetIndex) -> DatasetMeta:
        return cls(
            repo_id=index.repo_id,
            fps=index.fps,
            features=features_as_loaded(index.features),
            camera_keys=tuple(index.camera_keys),
            video_keys=tuple(index.video_keys),
            image_keys=tuple(index.image_keys),
            tasks=index.tasks,
            stats=stats_as_arrays(index.stats),
            total_frames=index.total_frames,
            total_episodes=index.total_episodes,
            robot_type=index.robot_type,
            fingerprint=index.fingerprint(),
        )

    @property
    def total_tasks(self) -> int:
        return len(self.tasks)

    @property
    def depth_keys(self) -> list[str]:
        """Cameras holding depth maps (lerobot's rule: ``is_depth_map`` in the feature's info)."""
        return [k for k in self.camera_keys if _is_depth(self.features[k])]

    @property
    def has_language_columns(self) -> bool:
        return any(col in self.features for col in LANGUAGE_COLUMNS)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(f["shape"]) for k, f in self.features.items()}

    @property
    def names(self) -> dict[str, Any]:
        return {k: f.get("names") for k, f in self.features.items()}


def _is_depth(feature: dict[str, Any]) -> bool:
    info = feature.get("info") or {}
    video_info = feature.get("video_info") or {}
    return bool(
        info.get("is_depth_map") or info.get("video.is_depth_map") or video_info.get("video.is_depth_map")
    )


def features_as_loaded(features: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``features`` with every ``shape`` a tuple, as lerobot's ``load_info`` gives them."""
    return {k: {**f, "shape": tuple(f["shape"])} if "shape" in f else dict(f) for k, f in features.items()}


def stats_as_arrays(stats: dict[str, Any]) -> dict[str, Any]:
    """Every numeric leaf as an (at least 1-d) numpy array, nesting kept: how lerobot loads ``stats.json``.

    A fresh copy per call, so a trainer may overwrite entries (e.g. ImageNet stats for cameras) in place."""
    return {
        k: stats_as_arrays(v) if isinstance(v, dict) else np.atleast_1d(np.array(v)) for k, v in stats.items()
    }
