"""Build one training sample from in-RAM episode rows plus decoded frames, exactly as LeRobotDataset does."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lerowds.errors import FormatError
from lerowds.reader.sample.episode import EpisodeRows
from lerowds.reader.sample.windows import DeltaWindows, window_positions

# decode_video(camera_key, positions) -> (T, H, W, 3) uint8 frames of the current episode
VideoFn = Callable[[str, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class SampleSpec:
    """What a sample holds: the dataset's keys in lerobot's order and how to present cameras."""

    video_keys: tuple[str, ...]
    image_keys: tuple[str, ...]
    tasks: Sequence[str] | Mapping[int, str]  # task_index -> task string
    windows: DeltaWindows | None = None
    return_uint8: bool = False
    image_transforms: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def camera_keys(self) -> tuple[str, ...]:
        return self.video_keys + self.image_keys


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode an encoded image (PNG/JPEG bytes as lerobot stores ``dtype: image``) to HWC uint8 RGB."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as e:  # PIL raises many types for corrupt data
        raise FormatError(f"{where}: cannot decode image ({e})") from e


def frames_to_tensor(frames: np.ndarray, return_uint8: bool) -> torch.Tensor:
    """(T, H, W, C) uint8 → (T, C, H, W) uint8, or float32 in [0, 1] like torchvision's ToTensor."""
    t = torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2)))
    return t if return_uint8 else t.to(torch.float32).div_(255.0)


@functools.lru_cache(maxsize=256)
def _offsets(offsets: tuple[int, ...]) -> tuple[np.ndarray, int, int]:
    """A window's offsets as an array (read-only: shared by every sample), and their min and max."""
    arr = np.asarray(offsets, dtype=np.int64)
    arr.flags.writeable = False
    return arr, int(arr.min()), int(arr.max())


def sample_positions(
    spec: SampleSpec, key: str, frame: int, length: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Frames of ``key`` the sample of ``frame`` holds, and their pad mask (None: not windowed)."""
    if spec.windows is not None and key in spec.windows.offsets:
        offs, lo, hi = _offsets(tuple(spec.windows.offsets[key]))
        if 0 <= frame + lo and frame + hi < length:  # inside the episode: what window_positions gives
            return frame + offs, np.zeros(len(offs), dtype=bool)
        return window_positions(frame, length, offs)
    return np.asarray([frame], dtype=np.int64), None


def window_reach(spec: SampleSpec, key: str) -> int:
    """How many frames of camera ``key`` two consecutive runs both need: its window's span (largest offset
    minus smallest; 0 without a window)."""
    if spec.windows is None or key not in spec.windows.offsets:
        return 0
    offsets = spec.windows.offsets[key]
    return max(offsets) - min(offsets)


def build_sample(rows: EpisodeRows, frame: int, spec: SampleSpec, decode_video: VideoFn) -> dict[str, Any]:
    """The sample of ``frame`` of an episode: videos first, then the parquet columns, pad masks, task."""
    if not 0 <= frame < rows.length:
        raise IndexError(f"frame {frame} outside episode {rows.episode_index} of length {rows.length}")
    item: dict[str, Any] = {}
    pads: dict[str, torch.Tensor] = {}

    def camera(key: str, frames: np.ndarray, windowed: bool) -> torch.Tensor:
        t = frames_to_tensor(frames, spec.return_uint8)
        if spec.image_transforms is not None:
            t = spec.image_transforms(t)
        return t if windowed else t[0]

    for key in spec.video_keys:
        pos, pad = sample_positions(spec, key, frame, rows.length)
        item[key] = camera(key, decode_video(key, pos), pad is not None)
        if pad is not None:
            pads[key] = torch.from_numpy(pad)
    for key, col in rows.columns.items():
        pos, pad = sample_positions(spec, key, frame, rows.length)
        if key in spec.image_keys:
            where = f"episode {rows.episode_index}, image {key!r}"
            imgs = np.stack([decode_image(col[p], f"{where}, frame {p}") for p in pos])
            item[key] = camera(key, imgs, pad is not None)
        else:
            # a window's fancy index is already a fresh array; a single row is copied out of the episode
            item[key] = torch.from_numpy(col[pos] if pad is not None else np.array(col[frame]))
        if pad is not None:
            pads[key] = torch.from_numpy(pad)
    if spec.windows is not None:
        for key in spec.windows.offsets:
            item[f"{key}_is_pad"] = pads[key]
    if "task_index" in rows.columns:
        task_index = int(rows.columns["task_index"][frame])
        try:
            item["task"] = spec.tasks[task_index] if task_index >= 0 else spec.tasks[None]  # type: ignore[index]
        except (IndexError, KeyError, TypeError):
            raise FormatError(
                f"episode {rows.episode_index}, frame {frame}: task_index {task_index} is not among the "
                f"{len(spec.tasks)} known tasks"
            ) from None
    return item
