"""PyAV version differences (lerowds.avcompat): the converter's truncation check without
``Stream.index_entries`` (PyAV < 17, e.g. lerobot 0.6.1's av 15), and swscale's ``threads`` argument.

Both code paths run on whichever PyAV is installed: the fallbacks are driven with stand-in objects that lack
the newer attributes, and must agree with what the installed PyAV reports."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import av
import pytest
from av.video.reformatter import VideoReformatter

from lerowds.avcompat import index_entries, reformat_threads_kwarg
from lerowds.convert import mp4
from lerowds.convert.remux import _index_end, _raise_if_truncated
from lerowds.errors import SourceError

FRONT = "videos/observation.images.front/chunk-000/file-000.mp4"


def test_reformat_threads_kwarg_follows_the_installed_pyav() -> None:
    frame = av.VideoFrame(4, 4, "yuv420p")
    kwarg = reformat_threads_kwarg()
    assert kwarg == ({"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {})
    assert VideoReformatter().reformat(frame, format="rgb24", **kwarg).format.name == "rgb24"  # accepted here


def test_index_end_from_the_native_table_equals_the_demuxer_index(small_root: Path) -> None:
    path = small_root / FRONT
    track = mp4.read_track(path)
    assert track is not None
    expected = int((track.offsets + track.sizes).max())
    assert _index_end(path, SimpleNamespace()) == expected  # no index_entries: the native sample table
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        entries = index_entries(stream)  # PyAV >= 17: the demuxer's index says the same
        assert entries is None or max(e.pos + e.size for e in entries) == expected
        assert _index_end(path, stream) == expected


def test_truncation_is_caught_without_index_entries(small_root: Path, tmp_path: Path) -> None:
    path = tmp_path / "t.mp4"
    shutil.copyfile(small_root / FRONT, path)
    track = mp4.read_track(path)
    assert track is not None and track.offsets[0] > 0  # moov first: the table survives truncation
    with open(path, "r+b") as f:
        f.truncate(int(track.offsets[-3]))
    with pytest.raises(SourceError, match=r"t\.mp4: unreadable mp4 \(truncated: its index needs \d+ bytes"):
        _raise_if_truncated(path, SimpleNamespace())


def test_index_end_is_none_for_a_layout_the_native_table_does_not_read(tmp_path: Path) -> None:
    path = tmp_path / "junk.mp4"
    path.write_bytes(b"\0" * 64)  # not an mp4: neither source of an index
    assert _index_end(path, SimpleNamespace()) is None
    _raise_if_truncated(path, SimpleNamespace())  # nothing to compare: the frame-count error reports it
