"""The torchcodec backend (system FFmpeg): the same contract as PyAV; torch and torchcodec are imported only
when a clip is opened (or availability is asked), so the reader imports without them."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from lerowds.reader.decode.base import BackendDecoder, DecodeFailure, failure_text
from lerowds.reader.decode.clipfile import ClipFile


@functools.cache
def torchcodec_unavailable_reason() -> str | None:
    """None when torchcodec imports and loads its FFmpeg libraries, else why not."""
    try:
        import torchcodec.decoders  # noqa: F401
    except (ImportError, OSError, RuntimeError) as exc:  # OSError: the system FFmpeg is missing
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


class TorchCodecClipDecoder(BackendDecoder):
    """Decodes frames of one clip with torchcodec's ``VideoDecoder``; arguments: ``BackendDecoder``. With
    ``keep_frames`` it keeps that many of a call's highest frames and asks torchcodec only for the others
    (torchcodec reads on without a seek when the next frame asked for follows in the same GOP). ``decoded``
    counts the frames asked of torchcodec (those it decodes only to reach them are not reported)."""

    def _init_backend(self) -> None:
        self._dec: Any = None
        self._recent: dict[int, np.ndarray] = {}  # with keep_frames: the previous call's highest frames (HWC)
        self.decoded = 0

    def _open_backend(self, file: ClipFile) -> None:
        from torchcodec.decoders import VideoDecoder

        self._dec = VideoDecoder(
            file, dimension_order="NHWC", num_ffmpeg_threads=self.thread_count, seek_mode="approximate"
        )

    def _decode(self, indices: list[int], wanted: list[int]) -> np.ndarray:
        if not wanted:
            return np.empty((0, self._dec.metadata.height, self._dec.metadata.width, 3), dtype=np.uint8)
        new = [k for k in wanted if k not in self._recent]
        rows: dict[int, np.ndarray] = {k: self._recent[k] for k in wanted if k in self._recent}
        if new:
            rows.update(zip(new, self._ask(new)))
        keep = self.keep_frames
        if keep is not None:  # copies: a kept row must not hold the whole batch
            self._recent = {k: np.array(rows[k]) for k in wanted[len(wanted) - keep :]} if keep else {}
        out = np.stack([rows[k] for k in indices])
        return (
            np.ascontiguousarray(out.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
            if self.channels_first
            else out
        )

    def _ask(self, wanted: list[int]) -> np.ndarray:
        """Frames ``wanted`` (ascending) from torchcodec, (N, H, W, 3)."""
        meta = self._dec.metadata  # times outside the stream are clamped: the check below names the nearest
        lo, hi = meta.begin_stream_seconds or 0.0, (meta.end_stream_seconds or np.inf) - 1e-6
        try:  # played at k/fps + tol: the frame within tolerance of k/fps, never its predecessor
            batch = self._dec.get_frames_played_at(
                [min(max(k / self.fps + self.tolerance_s, lo), hi) for k in wanted]
            )
        except Exception as exc:  # corrupt data raises RuntimeError from the C++ core
            raise DecodeFailure(wanted[0], f"decoding failed: {failure_text(exc)}") from exc
        for k, t in zip(wanted, batch.pts_seconds.tolist()):
            if abs(t - k / self.fps) > self.tolerance_s:
                raise DecodeFailure(k, f"no frame within {self.tolerance_s:g} s (nearest {t:.4f} s)")
        self.decoded += len(wanted)
        return batch.data.numpy()

    def _close_backend(self) -> None:
        self._dec, self._recent = None, {}
