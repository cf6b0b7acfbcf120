"""Clip decoding: byte-range files, the PyAV (and torchcodec) decoders, the decoder LRU, decode_limit.

Uses the real LeRobot v3 fixture mp4s: a whole fixture mp4 is a valid clip and its frames self-identify.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lerowds.errors import ConfigError, FormatError, VideoDecodeError
from lerowds.format import ClipRange
from lerowds.reader.decode import cache as decoder_cache
from lerowds.reader.decode.base import BackendDecoder, ClipContext, ClipDecoder, DecodeFailure
from lerowds.reader.decode.cache import (
    DecoderCache,
    DecoderCacheStats,
    decode_limit,
    make_decoder,
    resolve_decoder_kind,
)
from lerowds.reader.decode.clipfile import ByteRangeFile, ClipFile, MemoryClipFile, describe_source, open_clip
from lerowds.reader.decode.pyav import PyAVClipDecoder
from lerowds.reader.decode.torchcodec import torchcodec_unavailable_reason
from lerowds.testing.framecode import decode_frame_id, encode_frame

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
VIDEOS = FIXTURES / "lerobot_v3_small" / "videos"
FPS = 15
CAMS = {"observation.images.front": 0, "observation.images.wrist": 1}
CTX = ClipContext(3, "observation.images.front")
# Skipped where torchcodec is not installed. Where it is installed under CI=true, and always in CI's lerobot
# environment (LEROWDS_LEROBOT_ENV=1), a torchcodec that does not load (no system FFmpeg) fails these tests.
_TORCHCODEC_REQUIRED = os.environ.get("LEROWDS_LEROBOT_ENV") == "1" or (
    os.environ.get("CI") == "true" and importlib.util.find_spec("torchcodec") is not None
)
needs_torchcodec = pytest.mark.skipif(
    torchcodec_unavailable_reason() is not None and not _TORCHCODEC_REQUIRED,
    reason=f"torchcodec: {torchcodec_unavailable_reason()}",
)


def _fixture_clips() -> list[Path]:
    clips = sorted(VIDEOS.glob("*/chunk-*/file-*.mp4"))
    if not clips:
        message = f"fixture videos missing under {VIDEOS}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return clips


@functools.cache
def _episode_lengths() -> tuple[int, ...]:
    manifest = json.loads((FIXTURES / "lerobot_v3_small.manifest.json").read_text())
    return tuple(manifest["episode_lengths"])


@functools.cache
def plain_decode(data: bytes) -> tuple[np.ndarray, ...]:
    """Every frame of an mp4, decoded front to back the plain PyAV way."""
    with av.open(io.BytesIO(data)) as container:
        return tuple(frame.to_ndarray(format="rgb24") for frame in container.decode(video=0))


def _cam(path: Path) -> int:
    return CAMS[path.parts[-3]]


def _assert_ids_contiguous(ids: list[tuple[int, int]]) -> None:
    """Frame ids run through whole episodes in order: (e, 0..len-1), (e+1, 0..), ..."""
    lengths = _episode_lengths()
    e, f = ids[0]
    assert f == 0, ids[:3]
    for got in ids[1:]:
        e, f = (e, f + 1) if f + 1 < lengths[e] else (e + 1, 0)
        assert got == (e, f)
    assert f == lengths[e] - 1


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, ClipRange]:
    """All fixture mp4s in one file at odd offsets with garbage around each, like tar members."""
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("decode") / "shard.bin"
    ranges = {}
    with path.open("wb") as out:
        for clip in _fixture_clips():
            out.write(rng.integers(0, 256, int(rng.integers(1, 999)) | 1, dtype=np.uint8).tobytes())
            data = clip.read_bytes()
            ranges[clip] = ClipRange(str(path), out.tell(), len(data))
            out.write(data)
        out.write(b"\xff" * 777)
    return ranges


def _one(shard: dict[Path, ClipRange], name: str = "observation.images.front/chunk-000/file-001.mp4"):
    clip = VIDEOS / name
    return clip, shard[clip], plain_decode(clip.read_bytes())


# ---------------------------------------------------------------------------------------------- clip files


def test_byte_range_file_reads_only_its_window(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with ByteRangeFile(path, 1001, 17) as f:
        assert (f.size, f.read(5), f.tell()) == (17, bytes(range(233, 238)), 5)
        assert f.seek(-2, io.SEEK_END) == 15 and f.read(100) == bytes([248, 249]) and f.read(1) == b""
        assert f.seek(3) == 3 and f.seek(2, io.SEEK_CUR) == 5 and f.read(1) == bytes([238])
        buf = bytearray(4)
        f.seek(0)
        assert f.readinto(buf) == 4 and bytes(buf) == bytes(range(233, 237))
        with pytest.raises(ValueError, match="before the start"):
            f.seek(-1)
    mem = MemoryClipFile(memoryview(path.read_bytes())[1001:1018])
    assert mem.read() == bytes(range(233, 250)) and str(mem) == "<memory 17 bytes>"
    with pytest.raises(FormatError, match=r"f\.bin@1000\+100 lies outside"):
        ByteRangeFile(path, 1000, 100)


def test_open_clip_and_describe_source(tmp_path: Path) -> None:
    path = tmp_path / "c.mp4"
    path.write_bytes(b"x" * 10)
    assert str(open_clip(ClipRange(str(path), 2, 8))) == f"{path}@2+8"
    assert open_clip(path).size == 10 and open_clip(b"abc").read() == b"abc"
    assert describe_source(bytearray(5)) == "<memory 5 bytes>"
    assert describe_source(ClipRange("shards/s.tar", 512, 90)) == "shards/s.tar@512+90"
    with pytest.raises(ValueError, match="size=0"):
        ClipRange("x", 0, 0)
    with pytest.raises(TypeError, match="int"):
        open_clip(5)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ decoding


def test_every_frame_of_every_clip_through_byte_range(shard: dict[Path, ClipRange]) -> None:
    for clip, source in shard.items():
        ref = plain_decode(clip.read_bytes())
        with PyAVClipDecoder(source, FPS, len(ref), CTX) as dec:
            one_by_one = [dec.frames([k])[0] for k in range(len(ref))]
            assert dec.seeks == 0, "reading in order must never seek"
            assert dec.decoded == len(ref), "reading in order must decode each frame once"
            whole = dec.frames(range(len(ref)))
        assert all(np.array_equal(a, r) for a, r in zip(one_by_one, ref, strict=True)), clip
        assert np.array_equal(whole, np.stack(ref)) and whole.dtype == np.uint8
        _assert_ids_contiguous([decode_frame_id(img, _cam(clip)) for img in whole])


def test_channels_first_gives_the_same_pixels(shard: dict[Path, ClipRange]) -> None:
    """The planar (gbrp) path behind channels_first: the same values as rgb24, CHW in memory."""
    for clip, source in shard.items():
        ref = np.stack(plain_decode(clip.read_bytes()))
        with PyAVClipDecoder(source, FPS, len(ref), CTX, channels_first=True) as dec:
            got = dec.frames(list(range(len(ref)))[::-1])
            again = dec.frames([0, 0, len(ref) - 1])  # from the kept frames
        assert got.shape == ref.shape and got.transpose(0, 3, 1, 2).flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(got, ref[::-1])
        np.testing.assert_array_equal(again, ref[[0, 0, len(ref) - 1]])


@pytest.mark.parametrize(
    "height, width, pix_fmt",
    # yuv420p at widths 40 and 424 (width % 16 in 2..8): swscale's gbrp leaves the last columns unwritten
    [(30, 46, "yuv444p"), (17, 33, "yuv444p"), (30, 40, "yuv420p"), (32, 424, "yuv420p")],
)
def test_channels_first_with_padded_plane_lines(height: int, width: int, pix_fmt: str) -> None:
    """Widths whose planes swscale pads to an aligned line size (and odd sizes) keep their pixels."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=FPS, options={"g": "4", "bf": "0", "crf": "20"})
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        rng = np.random.default_rng(0)
        for _ in range(6):
            img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode(None))
    data = buf.getvalue()
    ref = np.stack(plain_decode(data))
    with PyAVClipDecoder(data, FPS, len(ref), CTX, channels_first=True) as dec:
        np.testing.assert_array_equal(dec.frames(range(len(ref))), ref)


def test_random_order_and_padded_windows(shard: dict[Path, ClipRange]) -> None:
    rng = random.Random(0)
    for clip in list(shard)[::3]:
        ref = plain_decode(clip.read_bytes())
        n = len(ref)
        with PyAVClipDecoder(shard[clip], FPS, n, CTX) as dec:
            order = rng.sample(range(n), n)
            assert np.array_equal(dec.frames(order), np.stack([ref[k] for k in order]))
            for _ in range(40):
                t = rng.randrange(n)
                window = [min(max(t + d, 0), n - 1) for d in (-2, -1, 0, 1)]  # padded like the reader
                got = dec.frames(window)
                assert got.shape == (4, *ref[0].shape)
                assert all(np.array_equal(g, ref[k]) for g, k in zip(got, window, strict=True))
            assert dec.frames([]).shape == (0, *ref[0].shape)


def test_sequential_windows_decode_each_frame_once(shard: dict[Path, ClipRange]) -> None:
    _, source, ref = _one(shard)
    with PyAVClipDecoder(source, FPS, len(ref), CTX) as dec:
        for t in range(len(ref)):
            window = [max(t - 2, 0), max(t - 1, 0), t]
            got = dec.frames(window)
            assert [decode_frame_id(g, 0)[1] for g in got] == window
        assert (dec.seeks, dec.decoded) == (0, len(ref))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.lists(st.integers(0, 89), max_size=6), min_size=1, max_size=8))
def test_any_sequence_of_calls_matches_plain_decode(
    shard: dict[Path, ClipRange], calls: list[list[int]]
) -> None:
    _, source, ref = _one(shard)
    with PyAVClipDecoder(source, FPS, len(ref), CTX) as dec:
        for indices in calls:
            got = dec.frames(indices)
            assert all(np.array_equal(g, ref[k]) for g, k in zip(got, indices, strict=True))


def test_memory_source_and_two_threads_give_the_same_frames(shard: dict[Path, ClipRange]) -> None:
    clip, _, ref = _one(shard, "observation.images.wrist/chunk-000/file-000.mp4")
    picks = random.Random(3).choices(range(len(ref)), k=60)
    for dec in (
        PyAVClipDecoder(memoryview(clip.read_bytes()), FPS, len(ref), CTX),
        PyAVClipDecoder(str(clip), FPS, len(ref), CTX, thread_count=2),
    ):
        with dec:
            assert np.array_equal(dec.frames(picks), np.stack([ref[k] for k in picks]))
            assert all(np.array_equal(dec.frames([k])[0], ref[k]) for k in range(len(ref)))


@pytest.fixture(scope="module")
def h264_with_b_frames() -> bytes:
    """A clip whose decode order differs from its display order (B-frames), as other tools write."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "8", "bf": "2", "crf": "10"}
        for i in range(40):
            frame = av.VideoFrame.from_ndarray(encode_frame(5, i, 64, 64), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize("threads", [1, 3])
def test_reordered_stream(h264_with_b_frames: bytes, threads: int) -> None:
    ref = plain_decode(h264_with_b_frames)
    assert [decode_frame_id(r) for r in ref] == [(5, i) for i in range(40)]
    rng = random.Random(threads)
    with PyAVClipDecoder(h264_with_b_frames, FPS, 40, CTX, thread_count=threads) as dec:
        for _ in range(30):
            picks = [rng.randrange(40) for _ in range(rng.randint(1, 4))]
            assert all(np.array_equal(g, ref[k]) for g, k in zip(dec.frames(picks), picks, strict=True))
    with PyAVClipDecoder(h264_with_b_frames, FPS, 40, CTX, thread_count=threads) as dec:
        for t in range(40):
            got = dec.frames([max(t - 1, 0), t])
            assert np.array_equal(got[1], ref[t])
        assert dec.seeks <= 1 and dec.decoded == 40  # one seek after the packet scan, then straight on


def _runs(n: int, r: int, reach: int) -> list[list[int]]:
    """What a run reader asks an episode's decoder for: each run of ``r`` frames with its window's reach."""
    return [list(range(max(s - reach, 0), min(s + r, n))) for s in range(0, n, r)]


@pytest.mark.parametrize("kind", ["pyav", pytest.param("torchcodec", marks=needs_torchcodec)])
def test_ascending_runs_decode_each_frame_once_keeping_only_the_reach(
    shard: dict[Path, ClipRange], kind: str
) -> None:
    """Runs of 8 with a t-2..t window read in order (run mode): each frame decoded (asked of torchcodec)
    once, no seek; between calls the decoder holds the 2 reach frames, not the run's 10."""
    _, source, ref = _one(shard)
    n = len(ref)
    with make_decoder(kind, source, FPS, n, CTX, channels_first=True, keep_frames=2) as dec:
        for want in _runs(n, 8, 2):
            got = dec.frames(want)
            assert all(np.array_equal(g, ref[k]) for g, k in zip(got, want, strict=True))
            assert sorted(dec._recent) == want[-2:]
        assert dec.decoded == n and getattr(dec, "seeks", 0) == 0


def test_a_run_reader_drops_what_a_seek_decoded_before_its_frames(shard: dict[Path, ClipRange]) -> None:
    _, source, ref = _one(shard)
    with PyAVClipDecoder(source, FPS, len(ref), CTX, keep_frames=2) as dec:
        dec.frames(range(51, 60))  # a seek to the keyframe before 51, decoding up to it
        assert dec.seeks == 1 and dec.decoded > 9
        assert not [k for k in dec._spare if k < 60] and sorted(dec._recent) == [58, 59]
    with pytest.raises(ConfigError, match="keep_frames must be an integer >= 0, got -1"):
        PyAVClipDecoder(source, FPS, len(ref), CTX, keep_frames=-1)


@pytest.mark.parametrize("threads", [1, 3])
def test_ascending_runs_read_on_through_a_reordered_stream(h264_with_b_frames: bytes, threads: int) -> None:
    ref = plain_decode(h264_with_b_frames)
    with PyAVClipDecoder(h264_with_b_frames, FPS, 40, CTX, thread_count=threads, keep_frames=1) as dec:
        for want in _runs(40, 6, 1):
            assert all(np.array_equal(g, ref[k]) for g, k in zip(dec.frames(want), want, strict=True))
        assert dec.seeks <= 1 and dec.decoded == 40


# -------------------------------------------------------------------------------------------------- errors


def _message(exc: pytest.ExceptionInfo[VideoDecodeError]) -> str:
    text = str(exc.value)
    assert text.startswith("episode 3, camera 'observation.images.front', timestamp "), text
    return text


class _ScriptedBackend(BackendDecoder):
    """A backend whose first open fails and whose frame 7 cannot be decoded: what BackendDecoder adds."""

    def _init_backend(self) -> None:
        self.log: list[str] = []
        self.files: list[io.RawIOBase] = []
        self.fail_next_open = True

    def _open_backend(self, file: ClipFile) -> None:
        self.log.append("open")
        self.files.append(file)
        if self.fail_next_open:
            self.fail_next_open = False
            raise OSError("disk gone")

    def _decode(self, indices: list[int], wanted: list[int]) -> np.ndarray:
        self.log.append(f"decode {wanted}")
        if 7 in wanted:
            raise DecodeFailure(7, "frame seven is unreadable")
        return np.array(indices, dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(3, axis=3)

    def _close_backend(self) -> None:
        self.log.append("close")

    def _after_failure(self) -> None:
        self.log.append("after failure")


def test_backend_base_wraps_errors_opens_lazily_and_closes() -> None:
    dec = _ScriptedBackend(b"0123456789", FPS, 20, CTX)
    assert isinstance(dec, ClipDecoder) and dec.log == []  # nothing opened before the first call
    with pytest.raises(VideoDecodeError) as exc:
        dec.frames([5, 3])
    assert _message(exc).endswith(
        "0.2000 s (frame 3): cannot open: OSError: disk gone in clip <memory 10 bytes>"
    )
    assert isinstance(exc.value.__cause__, OSError) and dec.files[0].closed  # the half-opened clip is closed
    assert dec.frames([5, 3, 5])[:, 0, 0, 0].tolist() == [5, 3, 5]  # the next call opens again
    dec.open()  # already open: no third open
    with pytest.raises(VideoDecodeError, match=r"\(frame 20\): frame index out of range \[0, 20\)"):
        dec.frames([1, 20])  # refused before the backend decodes anything
    with pytest.raises(VideoDecodeError) as exc:
        dec.frames([9, 7])
    assert _message(exc).endswith("0.4667 s (frame 7): frame seven is unreadable in clip <memory 10 bytes>")
    assert dec.log == [
        "open",  # fails
        "close",
        "after failure",
        "open",
        "decode [3, 5]",
        "after failure",  # frame 20 out of range
        "decode [7, 9]",
        "after failure",
    ]
    dec.close()
    dec.close()
    assert dec.log[-2:] == ["close", "close"] and dec.files[1].closed  # a second close is harmless
    for call in (lambda: dec.frames([1]), dec.open):
        with pytest.raises(
            VideoDecodeError, match=r"camera 'observation.images.front': decoder of clip .* is closed"
        ):
            call()
    with pytest.raises(ConfigError, match="thread_count must be >= 0"):
        _ScriptedBackend(b"", FPS, 1, CTX, thread_count=-1)


def test_out_of_range_index_raises_and_decoder_stays_usable(shard: dict[Path, ClipRange]) -> None:
    _, source, ref = _one(shard)
    with PyAVClipDecoder(source, FPS, 90, CTX) as dec:
        with pytest.raises(VideoDecodeError) as exc:
            dec.frames([3, 90])
        assert "timestamp 6.0000 s (frame 90): frame index out of range [0, 90)" in _message(exc)
        assert str(source) in str(exc.value)
        with pytest.raises(VideoDecodeError, match=r"frame -1\): frame index out of range"):
            dec.frames([-1])
        assert np.array_equal(dec.frames([89])[0], ref[89])
    with pytest.raises(VideoDecodeError, match="is closed"):
        dec.frames([0])


def test_missing_frame_names_the_nearest_timestamp(shard: dict[Path, ClipRange]) -> None:
    _, source, _ = _one(shard)
    with PyAVClipDecoder(source, FPS, 95, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([92])
    assert "timestamp 6.1333 s (frame 92): no frame within 0.0001 s (nearest 5.9333 s)" in _message(exc)
    with PyAVClipDecoder(source, 2 * FPS, 180, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([0, 1])  # a 15 fps clip read as 30 fps: odd frames do not exist
    assert "timestamp 0.0333 s (frame 1): no frame within 0.0001 s (nearest 0.0000 s)" in _message(exc)


def test_truncated_clip_raises(shard: dict[Path, ClipRange]) -> None:
    _, source, _ = _one(shard)
    cut = ClipRange(source.path, source.offset, source.size // 2)
    with PyAVClipDecoder(cut, FPS, 90, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([40, 41])
    assert "timestamp 2.6667 s (frame 40): cannot open" in _message(exc) and str(cut) in str(exc.value)
    beyond = ClipRange(source.path, os.path.getsize(source.path) - 10, 100)
    with PyAVClipDecoder(beyond, FPS, 90, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([0])
    assert "FormatError" in _message(exc) and "lies outside" in str(exc.value)


def test_corrupt_bytes_raise(shard: dict[Path, ClipRange]) -> None:
    clip, _, _ = _one(shard)
    data = bytearray(clip.read_bytes())
    data[200:1200] = bytes(b ^ 0x5A for b in data[200:1200])  # inside mdat: frames 1.. are garbage
    with PyAVClipDecoder(bytes(data), FPS, 90, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames(range(90))
    assert "decoding failed" in _message(exc) and "<memory" in str(exc.value)


# ---------------------------------------------------------------------------------------- backend choice


def test_make_decoder_kinds() -> None:
    assert resolve_decoder_kind("auto") == "pyav" and resolve_decoder_kind("pyav") == "pyav"
    with pytest.raises(ConfigError, match=r"one of \('auto', 'pyav', 'torchcodec'\), got 'bogus'"):
        make_decoder("bogus", b"", FPS, 1, CTX)
    assert isinstance(make_decoder("auto", b"", FPS, 1, CTX), PyAVClipDecoder)
    with pytest.raises(ConfigError, match="fps must be > 0, got 0"):
        make_decoder("pyav", b"", 0, 1, CTX)
    with pytest.raises(ConfigError, match="tolerance_s"):
        make_decoder("pyav", b"", FPS, 1, CTX, tolerance_s=0.5)


def test_unavailable_torchcodec_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder_cache, "torchcodec_unavailable_reason", lambda: "ImportError: nope")
    with pytest.raises(ConfigError, match=r"'torchcodec' is unavailable here \(ImportError: nope\)"):
        resolve_decoder_kind("torchcodec")


@needs_torchcodec
def test_torchcodec_matches_pyav(shard: dict[Path, ClipRange]) -> None:
    _, source, ref = _one(shard)
    rng = random.Random(5)
    with make_decoder("torchcodec", source, FPS, len(ref), CTX) as dec:
        picks = rng.sample(range(len(ref)), 30) + [0, 0, 89, 89]
        assert np.array_equal(dec.frames(picks), np.stack([ref[k] for k in picks]))
        with pytest.raises(VideoDecodeError) as exc:
            dec.frames([90])
        assert "(frame 90): frame index out of range" in _message(exc)
    with make_decoder("torchcodec", source, FPS, 95, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([92])
    assert "(frame 92): no frame within 0.0001 s (nearest 5.9333 s)" in _message(exc)
    cut = ClipRange(source.path, source.offset, source.size // 2)
    with make_decoder("torchcodec", cut, FPS, 90, CTX) as dec, pytest.raises(VideoDecodeError) as exc:
        dec.frames([1])
    assert "cannot open" in _message(exc)


# ------------------------------------------------------------------------------------ cache and the limit


class FakeDecoder:
    def __init__(self, key: object, log: list) -> None:
        self.key, self.log, self.closed = key, log, False

    def frames(self, indices: list[int]) -> np.ndarray:
        self.log.append((self.key, list(indices)))
        return np.zeros((len(indices), 2, 2, 3), dtype=np.uint8)

    def close(self) -> None:
        self.closed = True


def test_decoder_cache_lru_closes_evicted_and_counts() -> None:
    log: list = []
    made: dict[str, FakeDecoder] = {}

    def factory(key: str) -> Callable[[], FakeDecoder]:
        return lambda: made.setdefault(key, FakeDecoder(key, log))

    cache: DecoderCache[str] = DecoderCache(2)
    a = cache.get("a", factory("a"))
    assert cache.get("b", factory("b")) is made["b"] and cache.get("a", factory("a")) is a
    cache.get("c", factory("c"))  # evicts b, the least recently used
    assert made["b"].closed and not a.closed and "b" not in cache and len(cache) == 2
    assert cache.stats == DecoderCacheStats(hits=1, misses=3, opens=3, evictions=1)
    with pytest.raises(RuntimeError):
        cache.get("d", lambda: (_ for _ in ()).throw(RuntimeError("cannot open")))
    assert cache.stats.opens == 3 and cache.stats.misses == 4 and len(cache) == 2
    cache.discard("a")
    assert a.closed and "a" not in cache
    cache.close()
    assert made["c"].closed and len(cache) == 0
    with pytest.raises(ConfigError, match="capacity must be an integer >= 1, got 0"):
        DecoderCache(0)


def test_decoder_cache_reuses_real_decoders(shard: dict[Path, ClipRange]) -> None:
    clips = list(shard.items())[:3]
    with DecoderCache(2) as cache:
        for _ in range(3):
            for clip, source in clips[:2]:
                dec = cache.get(clip, functools.partial(make_decoder, "auto", source, FPS, 20, CTX))
                assert decode_frame_id(dec.frames([19])[0], _cam(clip))[1] == 19
        assert cache.stats == DecoderCacheStats(hits=4, misses=2, opens=2, evictions=0)


def test_decode_limit_opens_each_clip_once_and_keeps_request_order() -> None:
    log: list = []
    opened: list[FakeDecoder] = []

    def factory(key: str) -> FakeDecoder:
        opened.append(FakeDecoder(key, log))
        return opened[-1]

    requests = [("x", [1]), ("y", [2, 2]), ("x", [0, 1, 2])]
    seconds = decode_limit(requests, factory)
    assert seconds >= 0 and [d.key for d in opened] == ["x", "y"] and all(d.closed for d in opened)
    assert log == [("x", [1]), ("y", [2, 2]), ("x", [0, 1, 2])]


def test_decode_limit_on_real_clips(shard: dict[Path, ClipRange]) -> None:
    sources = dict(enumerate(shard.values()))
    requests = [(i % 3, [k, k + 1]) for i, k in enumerate(range(0, 18, 2))]
    assert decode_limit(requests, lambda i: make_decoder("auto", sources[i], FPS, 20, CTX)) > 0
