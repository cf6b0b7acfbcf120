"""What a synthetic LeRobot v3 dataset holds: spec dataclasses, per-frame content, stats, presets (no I/O).

Every value is a pure function of (episode_index, frame_index), so a test can tell which frame it got.
Stats have lerobot's keys and shapes (images: per channel, (3, 1, 1), in [0, 1]).
The vector rule is the manifest's (``shared/fixtures/lerobot_v3_small.manifest.json``, key "vectors").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lerowds.checks import check_int, is_int

CODECS = {"libsvtav1": "av1", "libx264": "h264"}  # encoder -> codec name lerobot records in info.json
# svtav1: lerobot's default; x264 blurs the frame code's bands at small sizes above 15
DEFAULT_CRF = {"libsvtav1": 30, "libx264": 15}
RESERVED_KEYS = (
    "observation.state",
    "action",
    "timestamp",
    "frame_index",
    "episode_index",
    "index",
    "task_index",
    "observation.velocity",
    "next.reward",
    "next.done",
)
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
MIN_CODE_HEIGHT = 28  # 4 bands with a 3 px margin each (framecode.encode_frame)
MIN_CODE_WIDTH = 7


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """One camera: ``dtype`` "video" (mp4 files) or "image" (PNG bytes inside the data parquet).

    ``file_frames`` overrides ``DatasetSpec.video_file_frames`` for this camera, so cameras roll over
    into new mp4 files independently, as in lerobot.
    """

    key: str
    h: int
    w: int
    dtype: str = "video"
    file_frames: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or self.key in RESERVED_KEYS:
            raise ValueError(
                f"camera key must be a non-empty string other than {RESERVED_KEYS}, got {self.key!r}"
            )
        if self.dtype not in ("video", "image"):
            raise ValueError(f"camera {self.key!r}: dtype must be 'video' or 'image', got {self.dtype!r}")
        if self.h < MIN_CODE_HEIGHT or self.w < MIN_CODE_WIDTH:
            raise ValueError(
                f"camera {self.key!r}: need h >= {MIN_CODE_HEIGHT} and w >= {MIN_CODE_WIDTH} "
                f"for the frame code, got {self.h}x{self.w}"
            )
        if self.dtype == "video" and (self.h % 2 or self.w % 2):
            raise ValueError(f"camera {self.key!r}: yuv420p video needs even h and w, got {self.h}x{self.w}")
        if self.file_frames is not None:
            check_int(f"camera {self.key!r} file_frames", self.file_frames, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSpec:
    """A synthetic dataset. Files roll over by frame counts (lerobot rolls by bytes; same layout rules).

    ``episode_tasks[e]`` with k tasks gives task j to frames ``[j*L//k, (j+1)*L//k)``; for k = 2 that is
    tasks[0] for ``frame_index < L//2``, else tasks[1]. ``non_keyframe_episodes`` are encoded in one run with
    the episode before them (a larger GOP), so their clip does not start on a keyframe.
    ``data_files_size_in_mb``/``video_files_size_in_mb`` are only recorded in info.json. Pixels name
    (episode_index % 256, frame_index % 256): keep both below 256 for frames to be unambiguous.
    """

    repo_id: str = "lerowds/sample"
    fps: int = 15
    episode_lengths: tuple[int, ...]
    episode_tasks: tuple[tuple[str, ...], ...]
    cameras: tuple[CameraSpec, ...] = ()
    extra_features: bool = False
    robot_type: str = "lerowds_synthetic_arm"
    chunks_size: int = 1000
    data_file_frames: int | None = None
    video_file_frames: int | None = None
    meta_file_episodes: int | None = None
    data_files_size_in_mb: float = 100.0
    video_files_size_in_mb: float = 200.0
    gop: int = 2
    codec: str = "libsvtav1"
    crf: int | None = None
    preset: int | None = None
    non_keyframe_episodes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("episode_lengths", "cameras", "non_keyframe_episodes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "episode_tasks", tuple(tuple(t) for t in self.episode_tasks))
        if not isinstance(self.repo_id, str) or not self.repo_id:
            raise ValueError(f"repo_id must be a non-empty string, got {self.repo_id!r}")
        check_int("fps", self.fps, 1)
        if not self.episode_lengths or any(not is_int(n) or n < 1 for n in self.episode_lengths):
            raise ValueError(f"episode_lengths must be non-empty ints >= 1, got {self.episode_lengths!r}")
        if len(self.episode_tasks) != len(self.episode_lengths):
            raise ValueError(
                f"episode_tasks has {len(self.episode_tasks)} entries for "
                f"{len(self.episode_lengths)} episodes"
            )
        for e, (tasks, n) in enumerate(zip(self.episode_tasks, self.episode_lengths)):
            if not tasks or len(set(tasks)) != len(tasks) or not all(isinstance(t, str) and t for t in tasks):
                raise ValueError(f"episode_tasks[{e}] must be distinct non-empty strings, got {tasks!r}")
            if len(tasks) > n:
                raise ValueError(f"episode {e} has {n} frames, too few for its {len(tasks)} tasks {tasks!r}")
        keys = [c.key for c in self.cameras]
        if len(set(keys)) != len(keys):
            raise ValueError(f"camera keys must be distinct, got {keys}")
        for name in ("chunks_size", "gop", "data_file_frames", "video_file_frames", "meta_file_episodes"):
            value = getattr(self, name)
            if value is not None or name in ("chunks_size", "gop"):  # the file limits may be None
                check_int(name, value, 1)
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {sorted(CODECS)}, got {self.codec!r}")
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ValueError(f"crf must be None or in [0, 63], got {self.crf!r}")
        bad = [e for e in self.non_keyframe_episodes if not 1 <= e < len(self.episode_lengths)]
        if bad:
            raise ValueError(f"non_keyframe_episodes must be in [1, {len(self.episode_lengths)}), got {bad}")
        if self.non_keyframe_episodes and not self.video_keys:
            raise ValueError(f"non_keyframe_episodes={self.non_keyframe_episodes} needs a video camera")

    @property
    def video_keys(self) -> list[str]:
        return [c.key for c in self.cameras if c.dtype == "video"]

    @property
    def total_frames(self) -> int:
        return sum(self.episode_lengths)

    def tasks(self) -> list[str]:
        """All distinct tasks, in order of first use; the position is the task_index."""
        seen: dict[str, None] = {}
        for tasks, n in zip(self.episode_tasks, self.episode_lengths):
            for j in frame_task_slots(n, len(tasks)):
                seen.setdefault(tasks[j], None)
        return list(seen)

    def features(self) -> dict[str, dict[str, Any]]:
        """info.json ``features`` in lerobot's order: user features, cameras, then the default columns."""
        joints = [f"j{i}" for i in range(6)]
        feats: dict[str, dict[str, Any]] = {
            "observation.state": {"dtype": "float32", "shape": [6], "names": joints},
            "action": {"dtype": "float32", "shape": [6], "names": joints},
        }
        if self.extra_features:
            feats["observation.velocity"] = {"dtype": "float32", "shape": [3], "names": ["vx", "vy", "vz"]}
            feats["next.reward"] = {"dtype": "float32", "shape": [1], "names": None}
            feats["next.done"] = {"dtype": "bool", "shape": [1], "names": None}
        for cam in self.cameras:
            feats[cam.key] = {
                "dtype": cam.dtype,
                "shape": [cam.h, cam.w, 3],
                "names": ["height", "width", "channels"],
            }
            if cam.dtype == "video":
                feats[cam.key]["info"] = {
                    "video.height": cam.h,
                    "video.width": cam.w,
                    "video.codec": CODECS[self.codec],
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": self.fps,
                    "video.channels": 3,
                    "has_audio": False,
                }
        for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            feats[key] = {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
        return feats


def frame_task_slots(length: int, n_tasks: int) -> np.ndarray:
    """Which of an episode's tasks each frame uses: task j for frames [j*L//k, (j+1)*L//k)."""
    return np.searchsorted([(j * length) // n_tasks for j in range(1, n_tasks)], np.arange(length), "right")


def vector_columns(episode_index: int, length: int, fps: int, extra: bool) -> dict[str, np.ndarray]:
    """The non-camera feature values of one episode (manifest rule; extras: velocity, reward, done)."""
    e, f = float(episode_index), np.arange(length, dtype=np.float64)
    j = np.arange(2, 6, dtype=np.float64)[None, :]
    state, action = np.empty((length, 6)), np.empty((length, 6))
    state[:, 0], state[:, 1], action[:, 0], action[:, 1] = e, f, e, f
    state[:, 2:] = np.sin(0.07 * j * f[:, None] + 0.3 * e + j)
    action[:, 2:] = 0.5 * np.cos(0.05 * j * f[:, None] - 0.2 * e + j) + 0.01 * j
    cols = {"observation.state": state.astype(np.float32), "action": action.astype(np.float32)}
    if extra:
        last = f == length - 1
        cols["observation.velocity"] = np.stack([np.full(length, e), f, np.sin(0.1 * f + e)], 1).astype(
            np.float32
        )
        cols["next.reward"] = last.astype(np.float32)
        cols["next.done"] = last
    cols["timestamp"] = f / fps  # float64 here (stats use it); stored as float32
    return cols


# ---------------------------------------------------------------- stats (lerobot's keys, shapes and aggregation)
def sample_indices(n: int) -> np.ndarray:
    """lerobot's image-stats sampling: every frame up to 100, then ~n**0.75 evenly spread."""
    k = max(min(100, n), min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def vector_stats(arr: np.ndarray) -> dict[str, np.ndarray]:
    """Stats over frames (axis 0); min/max keep the dtype (int64, bool), as lerobot's numpy calls do."""
    keep = arr.ndim == 1
    stats = {
        "min": np.min(arr, 0, keepdims=keep),
        "max": np.max(arr, 0, keepdims=keep),
        "mean": np.mean(arr, 0, keepdims=keep),
        "std": np.std(arr, 0, keepdims=keep),
        "count": np.array([len(arr)]),
    }
    q = np.quantile(arr.astype(np.float64), list(QUANTILES.values()), axis=0)
    stats.update({k: np.atleast_1d(v) for k, v in zip(QUANTILES, q)})
    return stats


def image_stats(frames: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per-channel stats in [0, 1] with shape (3, 1, 1), exact from a 256-bin histogram per channel."""
    hist = np.stack(
        [np.bincount(np.concatenate([f[..., c].ravel() for f in frames]), minlength=256) for c in range(3)]
    ).astype(np.float64)
    vals, total = np.arange(256) / 255.0, hist.sum(1)
    cdf = np.cumsum(hist, 1) / total[:, None]
    mean = hist @ vals / total
    stats = {
        "min": vals[np.argmax(hist > 0, 1)],
        "max": vals[255 - np.argmax(hist[:, ::-1] > 0, 1)],
        "mean": mean,
        "std": np.sqrt(np.maximum(hist @ vals**2 / total - mean**2, 0.0)),
    }
    stats = {k: v.reshape(3, 1, 1) for k, v in stats.items()}
    stats["count"] = np.array([len(frames)])
    stats.update({k: vals[np.argmax(cdf >= q - 1e-12, 1)].reshape(3, 1, 1) for k, q in QUANTILES.items()})
    return stats


def aggregate_stats(stats: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """lerobot's aggregation: pooled mean/std, min of mins, max of maxs, count-weighted quantiles."""
    means = np.stack([s["mean"] for s in stats])
    w = np.array([s["count"][0] for s in stats], np.float64).reshape((-1,) + (1,) * (means.ndim - 1))
    total = w.sum()
    mean = (means * w).sum(0) / total
    var = ((np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * w).sum(0) / total
    out = {
        "min": np.min(np.stack([s["min"] for s in stats]), 0),
        "max": np.max(np.stack([s["max"] for s in stats]), 0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(total)]),
    }
    out.update({k: (np.stack([s[k] for s in stats]) * w).sum(0) / total for k in QUANTILES})
    return out


_TASKS = ("pick up the red cube", "open the top drawer", "push the blue block to the left")
_FIXTURE_TASKS = (0, 1, 2, 0, 1, 1, 2, 0, 1, 2, 2, 0)


def sample_spec(name: str = "demo") -> DatasetSpec:
    """A ready spec: "demo", "edge" (every edge case), "novideo" (no mp4 at all) or "fixture"."""
    front, wrist = (
        CameraSpec("observation.images.front", 96, 128),
        CameraSpec("observation.images.wrist", 64, 64),
    )
    top = CameraSpec("observation.images.top", 48, 64, dtype="image")
    if name == "demo":
        lengths = (1, 2, 3, *(12 + (37 * i) % 61 for i in range(33)))
        tasks = tuple(
            (_TASKS[e % 3],) if e % 5 != 4 else (_TASKS[e % 3], _TASKS[(e + 1) % 3])
            for e in range(len(lengths))
        )
        return DatasetSpec(
            repo_id="lerowds/demo",
            episode_lengths=lengths,
            episode_tasks=tasks,
            cameras=(front, wrist, top),
            chunks_size=4,
            data_file_frames=150,
            video_file_frames=200,
            meta_file_episodes=10,
        )
    if name == "edge":
        long_task = "stack every block on the blue plate, slowly, without knocking the tower over; " * 14
        long_task = long_task.strip()
        uni = "ramasser le cube rouge 🟥 — 拾起红色方块 — Würfel „aufheben“"
        lengths = (5, 1, 2, 3, 40, 17, 2, 60, 1, 25, 9, 33)
        tasks = (
            (_TASKS[0],),
            (uni,),
            (_TASKS[1], uni),
            (long_task,),
            (_TASKS[0], _TASKS[2]),
            (uni,),
            (long_task, _TASKS[0]),
            (_TASKS[1],),
            (_TASKS[2],),
            (_TASKS[0], long_task),
            (uni,),
            (_TASKS[1],),
        )
        cams = (front, CameraSpec("observation.images.side", 30, 40, file_frames=45), top, wrist)
        return DatasetSpec(
            repo_id="lerowds/edge",
            fps=10,
            episode_lengths=lengths,
            episode_tasks=tasks,
            cameras=cams,
            extra_features=True,
            chunks_size=2,
            data_file_frames=50,
            video_file_frames=70,
            meta_file_episodes=5,
            non_keyframe_episodes=(2, 5, 9, 10),
        )
    if name == "novideo":
        lengths = (1, 2, 3, 50, 120, 7)
        return DatasetSpec(
            repo_id="lerowds/novideo",
            fps=50,
            episode_lengths=lengths,
            episode_tasks=tuple((_TASKS[e % 3],) for e in range(len(lengths))),
            cameras=(CameraSpec("observation.images.top", 32, 40, dtype="image"),),
            extra_features=True,
            chunks_size=2,
            data_file_frames=60,
            meta_file_episodes=4,
        )
    if name == "fixture":  # shared/fixtures/lerobot_v3_small; data, wrist and meta layouts match it exactly
        lengths = (20, 47, 90, 33, 61, 25, 78, 40, 55, 22, 86, 30)
        return DatasetSpec(
            repo_id="lerowds/fixture_small",
            episode_lengths=lengths,
            episode_tasks=tuple((_TASKS[t],) for t in _FIXTURE_TASKS),
            cameras=(
                CameraSpec(front.key, 96, 128, file_frames=95),
                CameraSpec(wrist.key, 64, 64, file_frames=160),
            ),
            chunks_size=2,
            data_file_frames=128,
            meta_file_episodes=10,
            data_files_size_in_mb=0.01,
            video_files_size_in_mb=0.012,
        )
    raise ValueError(f"unknown sample spec {name!r}; choose one of 'demo', 'edge', 'novideo', 'fixture'")
