"""``ds.meta``: what a training script asks of a dataset before iterating (fps, features, cameras, stats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lerowds.format import DatasetIndex


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
            features=index.features,
            camera_keys=tuple(index.camera_keys),
            video_keys=tuple(index.video_keys),
            image_keys=tuple(index.image_keys),
            tasks=index.tasks,
            stats=index.stats,
            total_frames=index.total_frames,
            total_episodes=index.total_episodes,
            robot_type=index.robot_type,
            fingerprint=index.fingerprint(),
        )

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(f["shape"]) for k, f in self.features.items()}

    @property
    def names(self) -> dict[str, Any]:
        return {k: f.get("names") for k, f in self.features.items()}
