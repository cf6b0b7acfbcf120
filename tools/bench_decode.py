"""Benchmark clip decoding: random single frames, t-2..t windows and sequential reads, frames/s.

Not a test. Encodes synthetic clips the way LeRobot v3 does (libsvtav1, g=2, crf=30, yuv420p), then times
``decode_limit`` (decoders already open, one decoder thread) for lerowds' decoders and for a naive PyAV
reader that seeks per request and converts with ``frame.to_ndarray(format="rgb24")``. The machine is
noisy: compare ratios within one run.

    python tools/bench_decode.py --sizes 96x128 240x320
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from lerowds.format import ClipRange
from lerowds.reader.decode.base import ClipDecoder
from lerowds.reader.decode.cache import decode_limit, make_decoder
from lerowds.reader.decode.torchcodec import torchcodec_unavailable_reason

logger = logging.getLogger("bench_decode")


@dataclass(frozen=True, slots=True)
class Clip:
    source: ClipRange
    fps: int
    num_frames: int


def encode_clip(path: Path, height: int, width: int, num_frames: int, fps: int, seed: int) -> None:
    """A moving gradient with a bright square and light noise: compresses like a robot camera feed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libsvtav1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "2", "crf": "30", "preset": "8"}
        for i in range(num_frames):
            base = 128 + 80 * np.sin((xx + 3 * i) / 17.0) * np.cos((yy - 2 * i) / 23.0)
            img = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 4, (height, width, 3))
            y0, x0 = (5 * i) % max(height - 16, 1), (7 * i) % max(width - 16, 1)
            img[y0 : y0 + 16, x0 : x0 + 16] = (250, 40, 40)
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class NaivePyAVDecoder:
    """The usual way: per request seek to its first frame, decode to its last, ``to_ndarray`` each hit."""

    def __init__(self, clip: Clip) -> None:
        self._container = av.open(clip.source.path)
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1
        self._fps = clip.fps

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        tb = float(self._stream.time_base)
        wanted = sorted(set(indices))
        self._container.seek(round(wanted[0] / self._fps / tb), stream=self._stream, backward=True)
        got: dict[int, np.ndarray] = {}
        for frame in self._container.decode(self._stream):
            k = round(frame.pts * tb * self._fps)
            if k in wanted:
                got[k] = frame.to_ndarray(format="rgb24")
            if k >= wanted[-1]:
                break
        return np.stack([got[k] for k in indices])

    def close(self) -> None:
        self._container.close()


def make_requests(clips: Sequence[Clip], pattern: str, count: int, seed: int) -> list[tuple[int, list[int]]]:
    """(clip number, frame indices) requests: ``random`` single frames, ``window`` t-2..t, ``sequential``."""
    rng = random.Random(seed)
    out: list[tuple[int, list[int]]] = []
    while len(out) < count:
        c = rng.randrange(len(clips))
        if pattern == "sequential":
            out.extend((c, [t]) for t in range(clips[c].num_frames))
            continue
        t = rng.randrange(clips[c].num_frames)
        out.append((c, [t] if pattern == "random" else [max(t - 2, 0), max(t - 1, 0), t]))
    return out[:count]


def measure(
    clips: Sequence[Clip],
    factory: Callable[[Clip], ClipDecoder],
    requests: list[tuple[int, list[int]]],
    repeats: int,
) -> float:
    """Best frames/s over ``repeats`` runs of ``decode_limit``."""
    frames = sum(len(idx) for _, idx in requests)
    best = min(decode_limit(requests, lambda c: factory(clips[c])) for _ in range(repeats))
    return frames / best


def check_same(clips: Sequence[Clip], backends: dict[str, Callable[[Clip], ClipDecoder]]) -> None:
    """Every backend returns the same pixels as the naive reader on a few random windows."""
    rng = random.Random(1)
    for clip in clips[:2]:
        picks = [rng.randrange(clip.num_frames) for _ in range(5)]
        ref = NaivePyAVDecoder(clip)
        want = [ref.frames([t]) for t in picks]
        ref.close()
        for name, factory in backends.items():
            dec = factory(clip)
            for t, w in zip(picks, want):
                if not np.array_equal(dec.frames([t]), w):
                    raise SystemExit(f"{name} differs from the naive reader at frame {t} of {clip.source}")
            dec.close()


def run(args: argparse.Namespace, workdir: Path) -> None:
    backends: dict[str, Callable[[Clip], Any]] = {
        "lerowds pyav": lambda c: make_decoder("pyav", c.source, c.fps, c.num_frames, "bench"),
        "naive pyav": NaivePyAVDecoder,
    }
    if torchcodec_unavailable_reason() is None:
        backends["lerowds torchcodec"] = lambda c: make_decoder(
            "torchcodec", c.source, c.fps, c.num_frames, "bench"
        )
    else:
        logger.info("torchcodec skipped: %s", torchcodec_unavailable_reason())
    rows = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        clips = []
        for i in range(args.clips):
            path = workdir / f"clip-{height}x{width}-{i}.mp4"
            encode_clip(path, height, width, args.frames, args.fps, seed=i)
            clips.append(Clip(ClipRange(str(path), 0, path.stat().st_size), args.fps, args.frames))
        check_same(clips, backends)
        count = max(round(args.requests * (96 * 128 / (height * width)) ** 0.5), 100)
        for pattern in ("random", "window", "sequential"):
            requests = make_requests(clips, pattern, count, args.seed)
            rates = {name: measure(clips, f, requests, args.repeats) for name, f in backends.items()}
            rows.append((size, pattern, rates))
    names = list(backends)
    header = f"{'size':>8} {'access':>10} " + " ".join(f"{n:>20}" for n in names) + f" {'lerowds/naive':>14}"
    lines = [header]
    for size, pattern, rates in rows:
        cells = " ".join(f"{rates[n]:>16,.0f} f/s" for n in names)
        lines.append(f"{size:>8} {pattern:>10} {cells} {rates['lerowds pyav'] / rates['naive pyav']:>13.2f}x")
    logger.info("frames/s, decoders open, 1 thread, best of %d:\n%s", args.repeats, "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["96x128", "240x320"], help="HxW of the clips")
    parser.add_argument("--clips", type=int, default=4, help="clips (episodes) per size")
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--requests", type=int, default=1500, help="requests at 96x128; fewer when larger")
    parser.add_argument("--repeats", type=int, default=3, help="runs per cell; the best is reported")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    av.logging.set_level(av.logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        run(args, Path(tmp))


if __name__ == "__main__":
    main()
