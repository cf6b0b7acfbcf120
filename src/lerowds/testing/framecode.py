"""Self-identifying frames: each image carries its (episode_index, frame_index) as four gray bands.

The rule is the one of ``shared/fixtures/README.md``: band ``k`` (top to bottom, height ``H//4``, the last
band takes the remainder) is flat gray ``16 + 14 * ((digits[k] + 3*cam) % 16)`` with
``digits = [f % 16, (f // 16) % 16, e % 16, (e // 16) % 16]``.
"""

from __future__ import annotations

import numpy as np

LEVEL_BASE = 16
LEVEL_STEP = 14
CAM_OFFSET = 3
MARGIN = 3


def _digits(episode_index: int, frame_index: int) -> list[int]:
    f, e = frame_index, episode_index
    return [f % 16, (f // 16) % 16, e % 16, (e // 16) % 16]


def _band_rows(height: int) -> list[tuple[int, int]]:
    band = height // 4
    return [(k * band, (k + 1) * band if k < 3 else height) for k in range(4)]


def encode_frame(episode_index: int, frame_index: int, height: int, width: int, cam: int = 0) -> np.ndarray:
    """Return an (H, W, 3) uint8 image that encodes (episode_index, frame_index) for camera number ``cam``."""
    if height < 4 * (2 * MARGIN + 1):
        raise ValueError(f"height must be >= {4 * (2 * MARGIN + 1)} to carry a frame code, got {height}")
    img = np.empty((height, width, 3), dtype=np.uint8)
    for (lo, hi), d in zip(_band_rows(height), _digits(episode_index, frame_index)):
        img[lo:hi] = LEVEL_BASE + LEVEL_STEP * ((d + CAM_OFFSET * cam) % 16)
    return img


def decode_frame_id(image: np.ndarray, cam: int = 0, code_width: int | None = None) -> tuple[int, int]:
    """Recover (episode_index, frame_index) from an image in HWC or CHW layout, uint8 or float in [0, 1]."""
    img = np.asarray(image)
    if img.ndim != 3:
        raise ValueError(f"expected a 3-d image, got shape {img.shape}")
    if img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    img = img.astype(np.float64)
    if img.max() <= 1.0 + 1e-6:
        img = img * 255.0
    height, width = img.shape[:2]
    cols = slice(MARGIN, (code_width or width) - MARGIN)
    digits = []
    for lo, hi in _band_rows(height):
        level = img[lo + MARGIN : hi - MARGIN, cols].mean()
        code = round(float(level - LEVEL_BASE) / LEVEL_STEP) % 16
        digits.append((code - CAM_OFFSET * cam) % 16)
    f = digits[0] + 16 * digits[1]
    e = digits[2] + 16 * digits[3]
    return e, f
