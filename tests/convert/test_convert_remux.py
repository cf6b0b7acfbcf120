"""Stream-copied clips decode bit-for-bit like their source segment, B-frames included, or fail clearly."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from convert_helpers import FPS, decode_frames, decode_rgb, encode_bframes

from lerowds.convert.remux import count_frames, cut_clip
from lerowds.errors import ConversionError
from lerowds.testing.framecode import decode_frame_id


def _segment(frames: list[tuple[float, np.ndarray]], lo: float, hi: float) -> list[np.ndarray]:
    half = 0.5 / FPS
    return [img for t, img in frames if lo - half <= t < hi - half]


def test_bframe_episodes_copy_bit_exact(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    episodes = [(0, 23), (1, 1), (2, 17), (3, 2), (4, 30)]
    spans = encode_bframes(path, episodes, alone=True)
    with av.open(str(path)) as c:
        pts_dts = [(p.pts, p.dts) for p in c.demux(video=0) if p.size]
    assert any(p != d for p, d in pts_dts) and min(d for _, d in pts_dts) < 0  # really B-frames
    source = decode_frames(path)
    for (e, n), (lo, hi) in zip(episodes, spans):
        clip = cut_clip(path, lo, hi, FPS, expected_frames=n, label=f"episode {e}")
        assert not clip.reencoded and clip.num_frames == n and count_frames(clip.data) == (n, n)
        got = decode_frames(clip.data)
        assert got[0][0] == 0.0 and [round(t * FPS) for t, _ in got] == list(range(n))
        for (_, a), b in zip(got, _segment(source, lo, hi), strict=True):
            np.testing.assert_array_equal(a, b)
        assert [decode_frame_id(img) for img in decode_rgb(clip.data)] == [(e, f) for f in range(n)]
        assert (
            cut_clip(path, lo, hi, FPS, expected_frames=n, label="again").data == clip.data
        )  # deterministic


def test_continuous_bframe_stream_cuts_on_keyframes_or_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    encode_bframes(path, [(0, 60)], alone=False, gop=10)
    source = decode_frames(path)
    copied = failed = 0
    for a, b in [(0, 10), (10, 20), (10, 33), (20, 60), (3, 10), (11, 20), (25, 40), (30, 35)]:
        lo, hi = a / FPS, b / FPS
        try:
            clip = cut_clip(path, lo, hi, FPS, expected_frames=b - a, label=f"cut {a}:{b}")
        except ConversionError as e:
            failed += 1
            assert f"cut {a}:{b}" in str(e) and "--reencode" in str(e)
            assert a % 10 != 0 or b % 10 != 0  # only cuts off the GOP grid may fail
            clip = cut_clip(path, lo, hi, FPS, expected_frames=b - a, label=f"cut {a}:{b}", reencode=True)
            assert clip.reencoded
            assert [decode_frame_id(img) for img in decode_rgb(clip.data)] == [(0, f) for f in range(a, b)]
            continue
        copied += 1
        for (_, x), y in zip(decode_frames(clip.data), _segment(source, lo, hi), strict=True):
            np.testing.assert_array_equal(x, y)
    assert copied >= 3 and failed >= 2


def test_non_keyframe_start_on_the_real_fixture(small_root: Path) -> None:
    path = small_root / "videos/observation.images.front/chunk-000/file-000.mp4"
    with pytest.raises(ConversionError, match="episode 0, camera 'front'.*not a keyframe.*--reencode"):
        cut_clip(path, 1 / 15, 21 / 15, 15, expected_frames=20, label="episode 0, camera 'front'")
    a = cut_clip(path, 1 / 15, 21 / 15, 15, expected_frames=20, label="x", reencode=True)
    b = cut_clip(path, 1 / 15, 21 / 15, 15, expected_frames=20, label="x", reencode=True)
    assert a.reencoded and a.codec == "av1" and a.data == b.data  # same codec family, deterministic
    with av.open(io.BytesIO(a.data)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert [decode_frame_id(img) for img in decode_rgb(a.data)] == [(0, f) for f in range(1, 20)] + [(1, 0)]


def test_wrong_frame_count(small_root: Path) -> None:
    path = small_root / "videos/observation.images.front/chunk-000/file-000.mp4"
    with pytest.raises(ConversionError, match=r"holds 20 frames but the episode metadata says length=21"):
        cut_clip(path, 0, 20 / 15, 15, expected_frames=21, label="episode 0")
