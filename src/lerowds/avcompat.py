"""What differs between the PyAV versions lerowds supports (15 to 18): detected by feature, not by version.

lerobot 0.6.1 pins ``av>=15,<16``; CI also runs the newest PyAV (docs/VERSIONS.md). The
differences that matter here:

- ``VideoReformatter.reformat(..., threads=)`` exists from PyAV 17 (``reformat_threads_kwarg`` detects it).
- ``Stream.index_entries`` (the demuxer's sample index) exists from PyAV 17; callers fall back to demuxing
  or to the native mp4 sample table (``convert.mp4``).
"""

from __future__ import annotations

from typing import Any


def index_entries(stream: Any) -> Any | None:
    """The demuxer's sample index of ``stream`` (PyAV >= 17), or None where PyAV does not expose it."""
    return getattr(stream, "index_entries", None)


def reformat_threads_kwarg() -> dict[str, int]:
    """``{"threads": 1}`` where ``VideoReformatter.reformat`` takes it (PyAV >= 17), else ``{}``: pass it to
    keep swscale on the calling thread."""
    import av
    from av.video.reformatter import VideoReformatter

    try:
        VideoReformatter().reformat(av.VideoFrame(2, 2, "yuv420p"), format="rgb24", threads=1)
    except TypeError:
        return {}
    return {"threads": 1}
