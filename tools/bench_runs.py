"""Benchmark run mode (``run_length=r``, ``shuffle_buffer=S``) against the per-sample order (r=1, S=0).

Not a test. Builds (once, under ``--workdir``) issue 12's bench set as ``tools/bench_loader.py`` does (two
240x320 AV1 cameras, camera-like texture, window t-2..t on each camera, a 10-step action chunk), once per
``--gops`` value (the v3 writer's ``gop``; the converted clips' mean keyframe interval is printed). Then, over
``--rounds``, each configuration on every GOP back to back: ``lerowds.Loader(ds, 32, num_threads=2)`` with
uint8 cameras for each ``(r, S)`` of ``--runs``: samples/s, samples per CPU-second (user + system time of the
process and its live DataLoader workers, ``psutil``: barely moved by other load on a shared machine, so read
it there), decoded frames per sample per camera (``ds.stats()["decoder_frames"]``) and the buffer's memory
per consumer (``dryrun_runs.buffer_bytes``). Ratios are medians over rounds of each round's ratio (to r=1,
and to the first GOP for the same ``(r, S)``).

    python tools/bench_runs.py [--episodes 12 --length 90 --samples 600 --rounds 2 --runs 1:0 4:32 8:64 16:128]
    <lerobot venv>/bin/python tools/bench_runs.py --runs 1:0 4:256 8:512 --limit --dataloader 1:0 8:512 --lerobot

Side by side in the same rounds (each interleaved with the ``--runs`` rows, every ratio taken within a round):
``--limit``: the per-sample decode limit as ``tools/bench_loader.py`` measures it (exactly the frames the r=1
run's samples ask for, decoded from open decoders by 2 threads started together; needs ``1:0`` in ``--runs``);
``--dataloader r:S ...``: the DataLoader path (2 workers) with lerobot-train's loader settings (batch 32,
``pin_memory`` off as on a CPU host, ``drop_last=False``, ``prefetch_factor=4``, persistent ``spawn`` workers);
``--epoch``: time one whole epoch from ``iter()`` instead of ``--samples`` after the first batch (a
run-mode buffer fills before its first batch: excluding that batch would leave its decoding out of the
clock); DataLoader rows time their second epoch, after an untimed one has started the persistent workers.
``--lerobot``: lerobot's map-style ``LeRobotDataset`` on the same data (the v3 source the set was converted
from) as lerobot-train builds it (torchcodec, ``return_uint8=True``, ``EpisodeAwareSampler`` with shuffle)
through the same DataLoader settings (needs lerobot installed: run in lerobot 0.6.1's venv).
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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import build_dataset, limit_threads
from bench_reader import worker_requests
from cpu_clock import cpu_since, cpu_tree

from lerowds import LeRobotWebDataset, Loader
from lerowds.reader.decode.base import ClipContext
from lerowds.reader.decode.pyav import PyAVClipDecoder
from lerowds.reader.extras.dryrun_runs import buffer_bytes

logger = logging.getLogger("bench_runs")
CAMERAS = ("observation.images.cam_0", "observation.images.cam_1")
WINDOW = (-2, -1, 0)
# lerobot 0.6.1's lerobot_train.py: pin_memory=device.type == "cuda" (a CPU host here), drop_last=False,
# prefetch_factor=4, persistent_workers=True, multiprocessing_context="spawn" (TrainPipelineConfig defaults)
TRAIN_LOADER = {
    "num_workers": 2,
    "pin_memory": False,
    "drop_last": False,
    "prefetch_factor": 4,
    "persistent_workers": True,
    "multiprocessing_context": "spawn",
}


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


def timed(batches: Any, samples: int, epoch: bool = False) -> tuple[float, float, list[tuple[int, int]]]:
    """Samples/s, samples per CPU-second (``cpu_tree``) and the (episode, frame) pairs emitted: with ``epoch``,
    over one whole epoch timed from ``iter()``; else after the first batch until ``samples`` samples."""
    t0, cpu0, n, emitted = time.perf_counter(), cpu_tree(), 0, []
    it = iter(batches)
    for i, batch in enumerate(it):
        assert batch[CAMERAS[0]].dtype == torch.uint8
        emitted += zip(batch["episode_index"].tolist(), batch["frame_index"].tolist())
        if i == 0 and not epoch:
            t0, cpu0 = time.perf_counter(), cpu_tree()
            continue
        n += len(batch["index"])
        if n >= samples and not epoch:
            break
    rate, cpu_rate = n / (time.perf_counter() - t0), n / max(cpu_since(cpu0), 1e-9)
    del it
    return rate, cpu_rate, emitted


def warm_timed(dl: DataLoader, samples: int, epoch: bool) -> dict[str, float]:
    """``timed`` on a DataLoader; with ``epoch``, the second epoch (the first, untimed, starts the
    persistent workers)."""
    if epoch:
        for _ in dl:
            pass
    rate, cpu_rate, _ = timed(dl, samples, epoch)
    return {"rate": rate, "cpu_rate": cpu_rate}


def run_once(
    root: Path, delta: dict[str, list[float]], r: int, s: int, samples: int, epoch: bool = False
) -> dict[str, Any]:
    """Samples/s of ``Loader(ds, 32, num_threads=2)`` (uint8 cameras) after the first batch, and its stats."""
    ds = LeRobotWebDataset(
        root, delta_timestamps=delta, return_uint8=True, run_length=r, shuffle_buffer=s, stats=True
    )
    loader = Loader(ds, 32, num_threads=2)
    try:
        rate, cpu_rate, emitted = timed(loader, samples, epoch)
    finally:
        loader.close()
    st = ds.stats()
    per_cam = st["decoder_frames"] / max(st["samples"], 1) / len(CAMERAS)
    returned = st["frames_decoded"] / max(st["samples"], 1) / len(CAMERAS)
    return {
        "rate": rate,
        "cpu_rate": cpu_rate,
        "decoded_per_sample_cam": per_cam,
        "returned_per_sample_cam": returned,
        "emitted": emitted,
    }


def limit_once(root: Path, emitted: list[tuple[int, int]]) -> dict[str, Any]:
    """The per-sample decode limit of ``tools/bench_loader.py``: exactly the windows of ``emitted`` (the
    r=1 run's samples), decoded from open decoders by 2 threads started together, in samples/s."""
    ds = LeRobotWebDataset(root)
    wall, cpu = limit_threads(ds, worker_requests(ds, emitted, 2, WINDOW))
    return {"rate": len(emitted) / wall, "cpu_rate": len(emitted) / max(cpu, 1e-9)}


def dataloader_once(
    root: Path, delta: dict[str, list[float]], r: int, s: int, samples: int, epoch: bool
) -> dict[str, Any]:
    """Samples/s of the DataLoader path (2 workers, lerobot-train's settings, uint8 cameras)."""
    ds = LeRobotWebDataset(root, delta_timestamps=delta, return_uint8=True, run_length=r, shuffle_buffer=s)
    dl = DataLoader(ds, batch_size=32, **TRAIN_LOADER)  # type: ignore[arg-type]
    got = warm_timed(dl, samples, epoch)
    del dl
    return got


def lerobot_once(
    v3: Path, repo_id: str, delta: dict[str, list[float]], samples: int, epoch: bool
) -> dict[str, Any]:
    """Samples/s of lerobot's map-style ``LeRobotDataset`` as lerobot-train 0.6.1 builds and loads it."""
    from lerobot.datasets import EpisodeAwareSampler  # type: ignore[import-not-found]
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # type: ignore[import-not-found]

    ds = LeRobotDataset(
        repo_id, root=v3, delta_timestamps=delta, video_backend="torchcodec", return_uint8=True
    )
    sampler = EpisodeAwareSampler(
        ds.meta.episodes["dataset_from_index"],
        ds.meta.episodes["dataset_to_index"],
        episode_indices_to_use=ds.episodes,
        shuffle=True,
        seed=0,
        absolute_to_relative_idx=ds.absolute_to_relative_idx,
    )
    dl = DataLoader(ds, batch_size=32, shuffle=False, sampler=sampler, **TRAIN_LOADER)  # type: ignore[arg-type]
    got = warm_timed(dl, samples, epoch)
    del dl
    return got


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-runs"))
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--length", type=int, default=90, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of both cameras")
    parser.add_argument("--gops", type=int, nargs="+", default=[2, 30])
    parser.add_argument("--runs", nargs="+", default=["1:0", "4:32", "8:64", "16:128"], help="r:S pairs")
    parser.add_argument("--samples", type=int, default=600, help="samples timed (after the first batch)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quality", action="store_true", help="shuffle quality only (no decoding)")
    parser.add_argument("--epoch", action="store_true", help="time one whole epoch from iter()")
    parser.add_argument("--limit", action="store_true", help="the per-sample decode limit (needs 1:0)")
    parser.add_argument("--dataloader", nargs="*", default=[], help="r:S pairs for the DataLoader path")
    parser.add_argument("--lerobot", action="store_true", help="lerobot's LeRobotDataset (lerobot venv)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")
    torch.set_num_threads(1)
    runs = [tuple(int(x) for x in p.split(":")) for p in args.runs]
    if args.quality:
        print(quality(runs))
        return
    roots = {
        g: build_dataset(args.workdir / f"gop{g}", args.episodes, args.length, args.fps, args.size, g)
        for g in args.gops
    }
    gop_seen = {g: keyframe_interval(root) for g, root in roots.items()}
    logger.info("frames per keyframe as converted: %s", gop_seen)
    delta: dict[str, list[float]] = {k: [o / args.fps for o in WINDOW] for k in CAMERAS}
    delta["action"] = [i / args.fps for i in range(10)]
    h, w = (int(v) for v in args.size.split("x"))
    frame_bytes = len(CAMERAS) * h * w * 3  # a frame of every camera, uint8 (as decoded)
    if args.limit and (1, 0) not in runs:
        parser.error("--limit measures the frames of the r=1 run: add 1:0 to --runs")
    dl_runs = [tuple(int(x) for x in p.split(":")) for p in args.dataloader]
    rows = []

    def log(row: dict[str, Any]) -> None:
        rows.append(row)
        logger.info("%s", {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})

    for rnd in range(args.rounds):  # each configuration on every GOP back to back: GOP ratios within a round
        for r, s in runs:
            for g, root in roots.items():
                got = run_once(root, delta, r, s, args.samples, args.epoch)
                emitted = got.pop("emitted")
                row = {"round": rnd, "gop": g, "what": "Loader", "r": r, "S": s} | got
                row["buffer_mb"] = buffer_bytes(r, s, frame_bytes, span=2) / 1e6
                log(row)
                if args.limit and (r, s) == (1, 0):
                    log({"round": rnd, "gop": g, "what": "limit", "r": 1, "S": 0} | limit_once(root, emitted))
        for r, s in dl_runs:
            for g, root in roots.items():
                got = dataloader_once(root, delta, r, s, args.samples, args.epoch)
                log({"round": rnd, "gop": g, "what": "DataLoader", "r": r, "S": s} | got)
        if args.lerobot:
            for g, root in roots.items():
                got = lerobot_once(root.parent / "v3", "lerowds/bench-runs", delta, args.samples, args.epoch)
                log({"round": rnd, "gop": g, "what": "lerobot", "r": 1, "S": 0} | got)
    print(markdown([x for x in rows if x["what"] == "Loader"], gop_seen))
    if args.limit or dl_runs or args.lerobot:
        print()
        print(side_by_side(rows, gop_seen))
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


def _median_ratio(rs: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> str:
    """Median over rounds of each row of ``rs`` ÷ the row of ``base`` from the same round (by ``key``)."""
    by_round = {x["round"]: x[key] for x in base}
    got = [x[key] / by_round[x["round"]] for x in rs if x["round"] in by_round]
    return f"{np.median(got):.2f}x" if got else ""


def markdown(rows: list[dict[str, Any]], gop_seen: dict[int, float]) -> str:
    """One line per (GOP, r, S): median samples/s, median of per-round ratios to r=1 and to the first GOP
    (wall and CPU), decode work, buffer."""
    first = next(iter(gop_seen))
    head = ["GOP (frames/keyframe)", "r", "S", "samples/s", "÷ r=1 (median of rounds)", "decoded frames per"]
    head[-1] += " sample per camera (returned)"
    head += ["buffer per consumer (uint8)", f"÷ GOP {first} (same r, S)"]
    head += ["samples per CPU-s", "÷ r=1 (CPU)", f"÷ GOP {first} (CPU)"]
    lines = [head, ["---"] * len(head)]
    for g in dict.fromkeys(x["gop"] for x in rows):
        base = [x for x in rows if x["gop"] == g and (x["r"], x["S"]) == (1, 0)]
        for r, s in dict.fromkeys((x["r"], x["S"]) for x in rows if x["gop"] == g):
            rs = [x for x in rows if x["gop"] == g and (x["r"], x["S"]) == (r, s)]
            at_first = [x for x in rows if x["gop"] == first and (x["r"], x["S"]) == (r, s)]
            lines.append(
                [f"{g} ({gop_seen[g]:.1f})", str(r), str(s), f"{np.median([x['rate'] for x in rs]):.0f}"]
                + [_median_ratio(rs, base, "rate")]
                + [
                    f"{np.median([x['decoded_per_sample_cam'] for x in rs]):.2f} "  # noqa: ISC004
                    f"({np.median([x['returned_per_sample_cam'] for x in rs]):.2f})",
                    f"{rs[0]['buffer_mb']:.0f} MB",
                    _median_ratio(rs, at_first, "rate"),
                    f"{np.median([x['cpu_rate'] for x in rs]):.0f}",
                    _median_ratio(rs, base, "cpu_rate"),
                    _median_ratio(rs, at_first, "cpu_rate"),
                ]
            )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


LABELS = {
    "Loader": "lerowds `Loader`, 2 threads",
    "DataLoader": "lerowds, DataLoader 2 workers",
    "limit": "per-sample decode limit (2 threads)",
    "lerobot": "lerobot 0.6.1 `LeRobotDataset`, DataLoader 2 workers",
}


def side_by_side(rows: list[dict[str, Any]], gop_seen: dict[int, float]) -> str:
    """One line per (GOP, configuration): median samples/s and the medians of per-round ratios to the
    same round's decode limit, lerobot and per-sample Loader."""
    head = ["GOP (frames/keyframe)", "configuration", "r", "S", "samples/s", "÷ decode limit", "÷ lerobot"]
    head += ["÷ Loader r=1", "samples per CPU-s", "÷ limit (CPU)", "÷ lerobot (CPU)", "÷ Loader r=1 (CPU)"]
    lines = [head, ["---"] * len(head)]

    def ratio(rs: list[dict[str, Any]], g: int, what: str, key: str = "rate") -> str:
        return _median_ratio(
            rs, [x for x in rows if x["gop"] == g and x["what"] == what and x["r"] == 1], key
        )

    for g in dict.fromkeys(x["gop"] for x in rows):
        for what, r, s in dict.fromkeys((x["what"], x["r"], x["S"]) for x in rows if x["gop"] == g):
            rs = [x for x in rows if x["gop"] == g and (x["what"], x["r"], x["S"]) == (what, r, s)]
            lines.append(
                [f"{g} ({gop_seen[g]:.1f})", LABELS[what]]
                + (["", ""] if what in ("limit", "lerobot") else [str(r), str(s)])
                + [f"{np.median([x['rate'] for x in rs]):.0f}"]
                + [ratio(rs, g, "limit"), ratio(rs, g, "lerobot"), ratio(rs, g, "Loader")]
                + [f"{np.median([x['cpu_rate'] for x in rs]):.0f}"]
                + [ratio(rs, g, w, "cpu_rate") for w in ("limit", "lerobot", "Loader")]
            )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


if __name__ == "__main__":
    main()
