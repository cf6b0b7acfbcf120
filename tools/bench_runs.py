"""Benchmark run mode (``run_length=r``, ``shuffle_buffer=S``) against the per-sample order (r=1, S=0).

Not a test. Builds (once, cached under ``--workdir``) issue 12's bench set shaped as ``tools/bench_loader.py``
does (two 240x320 AV1 cameras, libsvtav1, camera-like texture, window t-2..t on each camera, a 10-step action
chunk), once per ``--gops`` value (the v3 writer's ``gop``; the mean keyframe interval of a converted clip is
printed). Then, interleaved over ``--rounds``: ``lerowds.Loader(ds, 32, num_threads=2)`` with uint8 cameras
for each ``(r, S)`` of ``--runs``: samples/s after the first batch, decoded frames per sample per camera
(every frame the decoder produced, ``ds.stats()["decoder_frames"]``), and the buffer's memory per consumer
thread (``dryrun_runs.buffer_bytes``: the decoded frames of the runs its waiting samples come from). The figure to read is the median over rounds of each round's
ratio to r=1 on the same set: the machine is shared and noisy, so compare ratios of one run.

    python tools/bench_runs.py [--episodes 12 --length 90 --samples 600 --rounds 2 --runs 1:0 4:32 8:64 16:128]
    python tools/bench_runs.py --quality [--runs ...]   # shuffle quality only, no decoding

``--quality``: the shuffle figures of ``lerowds plan`` on one consumer of ``bench_scale.py``'s synthetic 4,000
episodes (lognormal lengths 100-700), pool 64, batch 32, for each ``(r, S)``: distinct episodes per batch,
same-episode pair rate, pairs within 10 frames of each other in one episode.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reader import textured_frame

from lerowds import LeRobotWebDataset, Loader
from lerowds.reader.decode.base import ClipContext
from lerowds.reader.decode.pyav import PyAVClipDecoder
from lerowds.reader.extras.dryrun_runs import buffer_bytes

logger = logging.getLogger("bench_runs")
CAMERAS = ("observation.images.cam_0", "observation.images.cam_1")


def build_dataset(workdir: Path, episodes: int, length: int, fps: int, size: str, gop: int) -> Path:
    """The converted bench set with keyframes every ``gop`` frames (written once, then reused)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing import v3writer
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec

    params = {"episodes": episodes, "length": length, "fps": fps, "size": size, "gop": gop}
    base = workdir / f"gop{gop}"
    out, stamp = base / "converted", base / "params.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return out
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    h, w = (int(v) for v in size.split("x"))
    spec = DatasetSpec(
        repo_id="lerowds/bench-runs",
        fps=fps,
        episode_lengths=(length,) * episodes,
        episode_tasks=tuple((f"task {e % 3}",) for e in range(episodes)),
        cameras=tuple(CameraSpec(key, h, w) for key in CAMERAS),
        gop=gop,
    )
    v3writer.encode_frame = textured_frame  # type: ignore[assignment]  # camera-like content
    v3writer.write_v3_dataset(base / "v3", spec)
    convert(ConvertOptions(repo_id=spec.repo_id, root=base / "v3", output=out, progress=False))
    stamp.write_text(json.dumps(params))
    return out


def keyframe_interval(root: Path) -> float:
    """Mean frames per keyframe of the first episode's first camera clip, as converted."""
    ds = LeRobotWebDataset(root)
    store = ds._store
    length = int(store.table["length"][0])
    dec = PyAVClipDecoder(store.clip(0, CAMERAS[0]), ds.meta.fps, length, ClipContext(0, CAMERAS[0]))
    try:
        dec.open()
        keys = len(set(dec._table.key_of_frame.tolist()))
    finally:
        dec.close()
    return length / max(keys, 1)


def run_once(root: Path, delta: dict[str, list[float]], r: int, s: int, samples: int) -> dict[str, Any]:
    """Samples/s of ``Loader(ds, 32, num_threads=2)`` (uint8 cameras) after the first batch, and its stats."""
    ds = LeRobotWebDataset(
        root, delta_timestamps=delta, return_uint8=True, run_length=r, shuffle_buffer=s, stats=True
    )
    loader = Loader(ds, 32, num_threads=2)
    try:
        it = iter(loader)
        next(it)
        t0, n = time.perf_counter(), 0
        for batch in it:
            n += len(batch["index"])
            if n >= samples:
                break
        rate = n / (time.perf_counter() - t0)
        del it
    finally:
        loader.close()
    st = ds.stats()
    per_cam = st["decoder_frames"] / max(st["samples"], 1) / len(CAMERAS)
    returned = st["frames_decoded"] / max(st["samples"], 1) / len(CAMERAS)
    return {"rate": rate, "decoded_per_sample_cam": per_cam, "returned_per_sample_cam": returned}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-runs"))
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--length", type=int, default=90, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of both cameras")
    parser.add_argument("--gops", type=int, nargs="+", default=[2, 30])
    parser.add_argument("--runs", nargs="+", default=["1:0", "4:32", "8:64", "16:128"], help="r:S pairs")
    parser.add_argument(
        "--samples", type=int, default=600, help="samples timed per run (after the first batch)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--quality", action="store_true", help="shuffle quality only (no dataset, no decoding)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")
    torch.set_num_threads(1)
    runs = [tuple(int(x) for x in p.split(":")) for p in args.runs]
    if args.quality:
        print(quality(runs))
        return
    roots = {
        g: build_dataset(args.workdir, args.episodes, args.length, args.fps, args.size, g) for g in args.gops
    }
    gop_seen = {g: keyframe_interval(root) for g, root in roots.items()}
    logger.info("frames per keyframe as converted: %s", gop_seen)
    delta: dict[str, list[float]] = {k: [o / args.fps for o in (-2, -1, 0)] for k in CAMERAS}
    delta["action"] = [i / args.fps for i in range(10)]
    h, w = (int(v) for v in args.size.split("x"))
    frame_bytes = len(CAMERAS) * h * w * 3  # a frame of every camera, uint8 (as decoded)
    rows = []
    for rnd in range(args.rounds):
        for g, root in roots.items():
            for r, s in runs:
                row = {"round": rnd, "gop": g, "r": r, "S": s} | run_once(root, delta, r, s, args.samples)
                row["buffer_mb"] = buffer_bytes(r, s, frame_bytes, span=2) / 1e6
                rows.append(row)
                logger.info("%s", {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    print(markdown(rows, gop_seen))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def quality(runs: Sequence[tuple[int, int]], episodes: int = 4000, pool: int = 64, batch: int = 32) -> str:
    """The shuffle figures of each ``(r, S)`` on one consumer of synthetic episodes, as a markdown table."""
    from bench_scale import synthetic_lengths

    from lerowds.reader.extras.dryrun import ideal_shuffle
    from lerowds.reader.extras.dryrun_runs import run_batch_quality, run_stream
    from lerowds.reader.order.segments import SegmentArray

    lengths = synthetic_lengths(episodes, seed=5)
    segs = SegmentArray(np.arange(episodes), np.zeros(episodes, np.int64), lengths)
    kw = {"pool_size": pool, "seed": 0, "epoch": 0, "rank": 0, "worker": 0, "shuffle": True}
    lines = ["| r | S | distinct episodes per batch | same-episode pair rate | pairs within 10 frames |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for r, s in runs:
        got = run_batch_quality([run_stream(segs, run_length=r, shuffle_buffer=s, **kw)], batch_size=batch)
        assert got is not None
        lines.append(f"| {r} | {s} | {got[1]:.2f} | {got[2]:.4f} | {got[3]:.4f} |")
    ideal = ideal_shuffle(lengths, batch_size=batch)
    lines.append(f"| ideal global shuffle | | {ideal.distinct_episodes:.2f} | {ideal.collision_rate:.4f} | |")
    return "\n".join(lines)


def markdown(rows: list[dict[str, Any]], gop_seen: dict[int, float]) -> str:
    """One line per (GOP, r, S): median samples/s, median of per-round ratios to r=1, decode work, buffer."""
    head = ["GOP (frames/keyframe)", "r", "S", "samples/s", "÷ r=1 (median of rounds)", "decoded frames per"]
    head[-1] += " sample per camera (returned)"
    head.append("buffer per consumer (uint8)")
    lines = [head, ["---"] * len(head)]
    for g in dict.fromkeys(x["gop"] for x in rows):
        base = {x["round"]: x["rate"] for x in rows if x["gop"] == g and (x["r"], x["S"]) == (1, 0)}
        for r, s in dict.fromkeys((x["r"], x["S"]) for x in rows if x["gop"] == g):
            rs = [x for x in rows if x["gop"] == g and (x["r"], x["S"]) == (r, s)]
            ratio = [x["rate"] / base[x["round"]] for x in rs if x["round"] in base]
            lines.append(
                [
                    f"{g} ({gop_seen[g]:.1f})",
                    str(r),
                    str(s),
                    f"{np.median([x['rate'] for x in rs]):.0f}",
                    f"{np.median(ratio):.2f}x" if ratio else "",
                    (
                        f"{np.median([x['decoded_per_sample_cam'] for x in rs]):.2f} "
                        f"({np.median([x['returned_per_sample_cam'] for x in rs]):.2f})"
                    ),
                    f"{rs[0]['buffer_mb']:.0f} MB",
                ]
            )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


if __name__ == "__main__":
    main()
