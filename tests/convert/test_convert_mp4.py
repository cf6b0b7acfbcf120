"""The native mp4 path: its sample tables equal FFmpeg's demuxer, its clips carry the same packets as PyAV's
remux, unusual layouts fall back to PyAV, and a truncated source is an error naming the file."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
from convert_helpers import FPS, SMALL_CAMS, H, W, decode_frames, decode_rgb, encode_bframes
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.convert import mp4
from lerowds.convert.remux import VideoFiles, cut_clip
from lerowds.convert.source import fps_of, load_episodes, load_info
from lerowds.errors import SourceError
from lerowds.format import FileSlices, ShardWriter
from lerowds.testing.framecode import decode_frame_id, encode_frame


def _packets(data: str | Path | bytes) -> list[av.Packet]:
    with av.open(io.BytesIO(data) if isinstance(data, bytes) else str(data)) as c:
        return [p for p in c.demux(video=0) if p.size]


def _assert_table_matches_ffmpeg(path: Path) -> mp4.Track:
    track = mp4.read_track(path)
    assert track is not None, f"{path}: the native path should handle lerobot's layout"
    packets = _packets(path)
    assert track.pts.tolist() == [p.pts for p in packets]
    assert track.dts.tolist() == [p.dts for p in packets]
    assert track.keyframe.tolist() == [p.is_keyframe for p in packets]
    assert track.offsets.tolist() == [p.pos for p in packets]
    assert track.sizes.tolist() == [p.size for p in packets]
    return track


def test_sample_tables_of_the_real_fixture_match_ffmpeg(small_root: Path) -> None:
    files = sorted(small_root.glob("videos/*/*/*.mp4"))
    assert len(files) >= 10
    for path in files:
        _assert_table_matches_ffmpeg(path)


def test_sample_table_with_bframes_and_an_edit_list(tmp_path: Path) -> None:
    path = tmp_path / "b.mp4"
    encode_bframes(path, [(0, 12), (1, 7)], alone=True)
    track = _assert_table_matches_ffmpeg(path)
    assert np.any(track.pts != track.dts) and track.dts.min() < 0  # the case under test


def _clips(path: Path, lo: float, hi: float, n: int) -> tuple[object, object]:
    native = cut_clip(path, lo, hi, FPS, expected_frames=n, label="x", videos=VideoFiles())
    pyav = cut_clip(path, lo, hi, FPS, expected_frames=n, label="x", videos=VideoFiles(native=False))
    return native, pyav


def test_native_clips_hold_the_same_packets_as_pyav_remux(small_root: Path) -> None:
    info = load_info(small_root, "lerowds/small")
    fps, episodes = fps_of(info, small_root), load_episodes(small_root, info)
    videos, checked = VideoFiles(), 0
    for episode in episodes:
        for key, ref in episode.videos:
            path = small_root / ref.path
            args = (path, ref.from_timestamp, ref.to_timestamp, fps)
            native = cut_clip(*args, expected_frames=episode.length, label="x", videos=videos)
            pyav = cut_clip(*args, expected_frames=episode.length, label="x", videos=VideoFiles(native=False))
            assert isinstance(native.content, FileSlices) and isinstance(pyav.content, bytes)
            a, b = _packets(native.data), _packets(pyav.data)
            assert [bytes(p) for p in a] == [bytes(p) for p in b]
            assert [(p.pts, p.dts, p.is_keyframe) for p in a] == [(p.pts, p.dts, p.is_keyframe) for p in b]
            frames = decode_frames(native.data)
            assert frames[0][0] == 0.0 and len(frames) == episode.length
            ids = {decode_frame_id(img, cam=SMALL_CAMS[key]) for img in decode_rgb(native.data)}
            assert ids == {(episode.episode_index, f) for f in range(episode.length)}, key
            checked += 1
    assert checked == sum(len(e.videos) for e in episodes) > 0


def test_native_bframe_clips_equal_pyav_remux(tmp_path: Path) -> None:
    path = tmp_path / "b.mp4"
    episodes = [(0, 23), (1, 1), (2, 17)]
    for (e, n), (lo, hi) in zip(episodes, encode_bframes(path, episodes, alone=True)):
        native, pyav = _clips(path, lo, hi, n)
        assert isinstance(native.content, FileSlices)
        a, b = decode_frames(native.data), decode_frames(pyav.data)
        assert [t for t, _ in a] == [t for t, _ in b] and a[0][0] == 0.0
        for (_, x), (_, y) in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        assert [bytes(p) for p in _packets(native.data)] == [bytes(p) for p in _packets(pyav.data)]


def test_fragmented_source_falls_back_to_pyav(tmp_path: Path) -> None:
    path = tmp_path / "frag.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "frag_keyframe+empty_moov"}) as out:
        s = out.add_stream("libx264", rate=FPS, options={"g": "5", "bf": "0"})
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for f in range(10):
            out.mux(s.encode(av.VideoFrame.from_ndarray(encode_frame(3, f, H, W), format="rgb24")))
        out.mux(s.encode(None))
    assert mp4.read_track(path) is None
    clip = cut_clip(path, 5 / FPS, 10 / FPS, FPS, expected_frames=5, label="x")
    assert isinstance(clip.content, bytes)
    assert [decode_frame_id(img) for img in decode_rgb(clip.data)] == [(3, f) for f in range(5, 10)]


def test_truncated_source_is_an_error_naming_the_file(small_root: Path, tmp_path: Path) -> None:
    src = small_root / "videos/observation.images.front/chunk-000/file-000.mp4"
    path = tmp_path / "t.mp4"
    shutil.copyfile(src, path)
    track = mp4.read_track(path)
    assert track is not None and track.offsets[0] > 0  # moov before mdat: the table survives truncation
    with open(path, "r+b") as f:
        f.truncate(int(track.offsets[-3]))
    last = int(track.pts[-1]) / track.timescale
    with pytest.raises(SourceError, match=r"t\.mp4.*truncated"):
        cut_clip(path, 20 / 15, last + 1 / 15, 15, expected_frames=len(track.pts) - 20, label="episode 1")


def test_missing_source_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.mp4: missing"):
        mp4.read_track(tmp_path / "nope.mp4")


@settings(max_examples=30, deadline=None)
@given(
    head=st.binary(max_size=700),
    pieces=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 3000)), max_size=6),
)
def test_file_slices_write_the_same_tar_as_bytes(head: bytes, pieces: list[tuple[int, int]]) -> None:
    import tempfile

    blob = bytes(range(256)) * 40
    ranges = tuple((o, min(s, len(blob) - o)) for o, s in pieces if o < len(blob))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src.bin"
        src.write_bytes(blob)
        slices = FileSlices(head, str(src), ranges)
        expected = head + b"".join(blob[o : o + s] for o, s in ranges)
        assert len(slices) == len(expected) and slices.read() == expected
        results = []
        for name, content in (("a.tar", slices), ("b.tar", expected)):
            with ShardWriter(Path(tmp) / name) as w:
                loc = w.add_episode([("k.json", b"{}"), ("k.cam.mp4", content)])
                results.append((loc, w.commit()))
        assert results[0] == results[1]
        assert (Path(tmp) / "a.tar").read_bytes() == (Path(tmp) / "b.tar").read_bytes()
