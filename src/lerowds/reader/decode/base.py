"""The decoder contract, and what the PyAV and torchcodec backends share.

``ClipDecoder`` is the protocol the reader uses: ``frames(indices)`` and ``close()``. ``BackendDecoder`` is
the one small base of both backends: it checks the constructor's arguments, opens the clip on the first
call (so that an unreadable clip fails with the timestamp that needed it), refuses calls once closed, and
turns a backend's ``DecodeFailure`` into a ``VideoDecodeError`` naming the episode, camera, timestamp and
clip file. A backend implements only ``_open_backend``, ``_decode`` and ``_close_backend``.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from lerowds.checks import check_int
from lerowds.errors import ConfigError, FormatError, VideoDecodeError
from lerowds.reader.decode.clipfile import ClipFile, ClipSource, describe_source, open_clip

if TYPE_CHECKING:
    from typing_extensions import Self

DEFAULT_TOLERANCE_S = 1e-4


@dataclass(frozen=True, slots=True)
class ClipContext:
    """Who a clip belongs to, for error messages: ``episode 12, camera 'observation.images.front'``."""

    episode_index: int
    camera_key: str

    def __str__(self) -> str:
        return f"episode {self.episode_index}, camera {self.camera_key!r}"


@runtime_checkable
class ClipDecoder(Protocol):
    """Decodes frames of one clip by index: (T, H, W, 3) uint8 RGB, in the order asked, repeats allowed."""

    def frames(self, indices: Sequence[int]) -> np.ndarray: ...

    def close(self) -> None: ...


def check_decoder_args(fps: float, num_frames: int, tolerance_s: float, thread_count: int) -> None:
    """Raise ConfigError naming the bad value; shared by every decoder backend."""
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    if num_frames < 0:
        raise ConfigError(f"num_frames must be >= 0, got {num_frames}")
    if not 0 <= tolerance_s < 0.5 / fps:
        raise ConfigError(f"tolerance_s must be in [0, 0.5/fps={0.5 / fps:g}), got {tolerance_s}")
    if thread_count < 0:
        raise ConfigError(f"thread_count must be >= 0 (0 = FFmpeg's choice), got {thread_count}")


def failure_text(exc: BaseException) -> str:
    """How a backend's exception reads inside a VideoDecodeError message."""
    return f"{type(exc).__name__}: {exc}"


class DecodeFailure(Exception):
    """What went wrong for one frame, raised by a backend; ``BackendDecoder`` turns it into a
    VideoDecodeError with the clip's context (chained to the failure's own cause)."""

    def __init__(self, frame: int, reason: str) -> None:
        super().__init__(reason)
        self.frame = frame
        self.reason = reason


class BackendDecoder:
    """A ``ClipDecoder`` on one clip; subclasses decode. Frames are (T, H, W, 3) uint8 RGB; with
    ``channels_first`` they are (T, H, W, 3) views of (T, 3, H, W) memory (same values, CHW without a copy).
    With ``frame_size`` (height, width: what the dataset's features declare), frames of another size are a
    ``FormatError`` (a table pointing the camera at another camera's clip), never a wrongly shaped sample.
    ``keep_frames``: how many of a call's frames (its highest) the decoder keeps, as RGB, for the next call to
    reuse without decoding them again: None keeps the whole call (a per-sample reader's window), ``n`` at
    most ``n`` (a run reader: the windows' reach, which the next run of the episode asks for again; with it
    the decoder also drops the frames it decoded only to reach the call's frames, which such a reader,
    reading forward, never asks for).
    """

    def __init__(
        self,
        source: ClipSource,
        fps: float,
        num_frames: int,
        context: ClipContext | str,
        *,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        thread_count: int = 1,
        channels_first: bool = False,
        frame_size: tuple[int, int] | None = None,
        keep_frames: int | None = None,
    ) -> None:
        check_decoder_args(fps, num_frames, tolerance_s, thread_count)
        self.keep_frames = None if keep_frames is None else check_int("keep_frames", keep_frames)
        self.frame_size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
        self.fps, self.num_frames, self.context, self.tolerance_s = fps, num_frames, context, tolerance_s
        self.thread_count = thread_count
        self.channels_first = channels_first
        self._source: ClipSource | None = source  # None once closed
        self._source_text = describe_source(source)
        self._file: ClipFile | None = None  # the open clip; None until opened (or after a failed open)
        self._init_backend()

    # -- what a backend implements --------------------------------------------------------------------

    def _init_backend(self) -> None:
        """Set the backend's own per-decoder state (called at the end of ``__init__``)."""

    def _open_backend(self, file: ClipFile) -> None:
        """Open the container/decoder on the clip file; any exception means the clip cannot be opened."""
        raise NotImplementedError

    def _decode(self, indices: list[int], wanted: list[int]) -> np.ndarray:
        """Frames ``indices`` (``wanted``: the same, sorted and unique, all in range) of the open clip;
        raise ``DecodeFailure`` naming the frame that failed."""
        raise NotImplementedError

    def _close_backend(self) -> None:
        """Drop the container/decoder (the clip file is closed after it); safe on a half-opened clip."""

    def _after_failure(self) -> None:
        """Called after a ``DecodeFailure``, before it is raised as a VideoDecodeError."""

    # -- shared ----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the clip now instead of at the first ``frames`` call (e.g. before timing); idempotent."""
        self._check_not_closed()
        try:
            self._ensure_open(0)
        except DecodeFailure as failure:
            raise self._error(failure) from failure.__cause__

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """Return frames ``indices`` (any order, repeats allowed) as a (T, H, W, 3) uint8 RGB array."""
        self._check_not_closed()
        idx = [operator.index(i) for i in indices]
        wanted = sorted(set(idx))
        try:
            for k in wanted:
                if not 0 <= k < self.num_frames:
                    raise DecodeFailure(k, f"frame index out of range [0, {self.num_frames})")
            self._ensure_open(wanted[0] if wanted else 0)
            out = self._decode(idx, wanted)
        except DecodeFailure as failure:
            self._after_failure()
            raise self._error(failure) from failure.__cause__
        if self.frame_size is not None and out.shape[1:3] != self.frame_size:
            (h, w), (eh, ew) = out.shape[1:3], self.frame_size
            raise FormatError(
                f"{self.context}: clip {self._source_text} decodes to {h}x{w} frames (height x width), the "
                f"dataset's features declare {eh}x{ew}: the episode table points this camera at another "
                "camera's clip; re-download or re-convert the dataset"
            )
        return out

    def _ensure_open(self, frame: int) -> None:
        if self._file is not None:
            return
        try:
            self._file = open_clip(self._source)  # type: ignore[arg-type]
            self._source_text = str(self._file)
            self._open_backend(self._file)
        except Exception as exc:  # an unreadable clip raises many FFmpeg/OS error types
            self._close_clip()
            raise DecodeFailure(frame, f"cannot open: {failure_text(exc)}") from exc

    def _check_not_closed(self) -> None:
        if self._source is None:
            raise VideoDecodeError(f"{self.context}: decoder of clip {self._source_text} is closed")

    def _error(self, failure: DecodeFailure) -> VideoDecodeError:
        k = failure.frame
        return VideoDecodeError(
            f"{self.context}, timestamp {k / self.fps:.4f} s (frame {k}): {failure.reason} "
            f"in clip {self._source_text}"
        )

    def _close_clip(self) -> None:
        self._close_backend()
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self) -> None:
        """Close the decoder and the clip file; safe to call twice."""
        self._close_clip()
        self._source = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
