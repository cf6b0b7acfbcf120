"""Benchmark ``LeRobotWebDataset`` in a DataLoader against the decode limit of exactly the frames it emitted.

Not a test. Builds (once, cached under ``--workdir``) a converted dataset with two AV1 cameras encoded the
way LeRobot v3 does (libsvtav1, g=2, crf=30), then in one run:

1. iterates ``DataLoader(LeRobotWebDataset(..., delta_timestamps=...), batch_size=B, num_workers=W,
   persistent_workers=True)`` for ``--epochs`` epochs: samples/s over each epoch after its first batch,
   time to first batch from the DataLoader iterator's creation, peak RSS of the worker processes;
2. decodes the frames epoch 0 emitted (same episode, camera and frame-index requests, in each worker's
   order; recovered from the batches' ``episode_index``/``frame_index``) with ``decode_limit`` from open
   decoders, in one process (per core) and split like the workers over W processes started together.

ratio = reader samples/s ÷ limit samples/s (W processes). The machine is noisy: compare within one run.

    python tools/bench_reader.py --workdir /tmp/lerowds-bench
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset
from lerowds.reader.decode import ClipContext
from lerowds.reader.decoder_cache import decode_limit, make_decoder
from lerowds.reader.order import rank_plan, worker_segments
from lerowds.reader.store import LocalStore
from lerowds.reader.windows import window_positions

logger = logging.getLogger("bench_reader")

Request = tuple[tuple[int, str], list[int]]  # ((episode, camera key), frame indices)


@dataclass(frozen=True, slots=True)
class BenchData:
    """What the cached dataset holds; a different value rebuilds it."""

    episodes: int
    length: int
    fps: int
    sizes: tuple[str, ...]


def camera_key(size: str) -> str:
    return f"observation.images.cam_{size}"


def build_dataset(workdir: Path, data: BenchData) -> Path:
    """The converted dataset for ``data`` under ``workdir`` (written once, then reused)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec
    from lerowds.testing.v3writer import write_v3_dataset

    out, stamp = workdir / "converted", workdir / "bench_data.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(data) | {"sizes": list(data.sizes)}:
        return out
    import shutil

    for path in (workdir / "v3", out, stamp):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    cams = []
    for size in data.sizes:
        h, w = (int(v) for v in size.split("x"))
        cams.append(CameraSpec(camera_key(size), h, w))
    spec = DatasetSpec(
        repo_id="lerowds/bench-reader",
        fps=data.fps,
        episode_lengths=(data.length,) * data.episodes,
        episode_tasks=tuple((f"task {e % 3}",) for e in range(data.episodes)),
        cameras=tuple(cams),
    )
    t = time.perf_counter()
    write_v3_dataset(workdir / "v3", spec)
    logger.info("wrote the LeRobot v3 dataset in %.0f s", time.perf_counter() - t)
    t = time.perf_counter()
    convert(ConvertOptions(repo_id=spec.repo_id, root=workdir / "v3", output=out, progress=False))
    logger.info("converted it in %.1f s", time.perf_counter() - t)
    stamp.write_text(json.dumps(asdict(data) | {"sizes": list(data.sizes)}))
    return out


# ------------------------------------------------------------------------------------------ reader run
class RssSampler:
    """Peak RSS (MB) of this process's children (the DataLoader workers), sampled every ``period`` s."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.period):
            for child in me.children():
                try:
                    self.peak = max(self.peak, child.memory_info().rss / 2**20)
                except psutil.Error:
                    pass

    def take_peak(self) -> float:
        """The peak since the last call."""
        peak, self.peak = self.peak, 0.0
        return peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True, slots=True)
class EpochResult:
    samples: int
    first_batch_s: float
    rate: float  # samples/s after the first batch
    peak_rss_mb: float  # the largest worker RSS seen during the epoch


def run_reader(
    ds: LeRobotWebDataset, batch_size: int, num_workers: int, epochs: int
) -> tuple[list[EpochResult], list[tuple[int, int]]]:
    """Iterate ``epochs`` epochs; return per-epoch results and epoch 0's (episode, frame) in batch order."""
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0)
    sampler = RssSampler()
    results, emitted = [], []
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            it = iter(loader)
            batch = next(it)
            first = time.perf_counter()
            n_first = n = len(batch["index"])
            if epoch == 0:
                emitted.extend(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))
            for batch in it:
                n += len(batch["index"])
                if epoch == 0:
                    emitted.extend(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))
            end = time.perf_counter()
            results.append(EpochResult(n, first - start, (n - n_first) / (end - first), sampler.take_peak()))
            logger.info(
                "epoch %d: %d samples, first batch %.3f s, %.0f samples/s, worker peak RSS %.0f MB",
                epoch,
                n,
                first - start,
                results[-1].rate,
                results[-1].peak_rss_mb,
            )
    finally:
        sampler.stop()
    return results, emitted


# ------------------------------------------------------------------------------------------ decode limit
def worker_requests(
    ds: LeRobotWebDataset, emitted: Sequence[tuple[int, int]], num_workers: int, offsets: Sequence[int]
) -> list[list[Request]]:
    """The decode requests of each worker, in its emission order: for each emitted sample, each camera's
    window (the same positions ``build_sample`` asks for). A frame's worker follows from the pure split."""
    store: LocalStore = ds._store  # type: ignore[assignment]
    lengths, ids = store.table["length"], store.table["episode_index"]
    plan = rank_plan(lengths, ids, seed=ds.seed, epoch=0, shuffle=ds.shuffle, world_size=1, rank=0)
    owner: dict[tuple[int, int], int] = {}
    for w in range(max(num_workers, 1)):
        for seg in worker_segments(plan.segments, num_workers=max(num_workers, 1), worker=w):
            owner.update({(seg.episode, f): w for f in range(seg.start, seg.stop)})
    length_of = {int(e): int(n) for e, n in zip(ids, lengths)}
    offs = np.asarray(offsets, dtype=np.int64)
    out: list[list[Request]] = [[] for _ in range(max(num_workers, 1))]
    for episode, frame in emitted:
        pos, _ = window_positions(frame, length_of[episode], offs)
        for key in ds.meta.video_keys:
            out[owner[(episode, frame)]].append(((episode, key), pos.tolist()))
    return out


class DecoderFactory:
    """Opens the reader's decoder kind on a clip of the dataset (container opened before the clock)."""

    def __init__(self, ds: LeRobotWebDataset) -> None:
        self.ds = ds
        store = ds._store
        self._row = {int(e): r for r, e in enumerate(store.table["episode_index"])}

    def __call__(self, key: tuple[int, str]) -> Any:
        episode, camera = key
        row = self._row[episode]
        store = self.ds._store
        length = int(store.table["length"][row])
        return make_decoder(
            self.ds.decoder, store.clip(row, camera), self.ds.meta.fps, length, ClipContext(episode, camera)
        )


def _limit_child(ds: LeRobotWebDataset, requests: list[Request], barrier: Any, queue: Any) -> None:
    torch.set_num_threads(1)
    seconds = decode_limit(requests, DecoderFactory(ds), before_start=barrier.wait)
    queue.put((time.perf_counter(), seconds))


def limit_parallel(ds: LeRobotWebDataset, per_worker: list[list[Request]]) -> float:
    """Wall seconds for W processes (started together, decoders open) to decode their workers' requests."""
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(len(per_worker) + 1), ctx.Queue()
    procs = [ctx.Process(target=_limit_child, args=(ds, reqs, barrier, queue)) for reqs in per_worker]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    ends = [queue.get()[0] for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise SystemExit(f"a decode-limit process failed with exit code {p.exitcode}")
    return max(ends) - start


# ------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-reader"))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--length", type=int, default=150, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--sizes", nargs="+", default=["96x128", "240x320"], help="HxW of the cameras")
    parser.add_argument("--window", type=int, nargs="+", default=[-2, -1, 0], help="camera frame offsets")
    parser.add_argument("--action-chunk", type=int, default=50, help="action frames 0..n-1 ahead")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=64, help="episode_pool_size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs iterated (RSS over epochs)")
    parser.add_argument("--uint8", action="store_true", help="return_uint8=True")
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--skip-limit", action="store_true", help="only run the reader")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = BenchData(args.episodes, args.length, args.fps, tuple(args.sizes))
    root = build_dataset(args.workdir, data)
    fps = args.fps
    delta = {camera_key(s): [o / fps for o in args.window] for s in args.sizes}
    delta["action"] = [i / fps for i in range(args.action_chunk)]
    ds = LeRobotWebDataset(
        root, delta_timestamps=delta, episode_pool_size=args.pool, return_uint8=args.uint8, decoder=args.decoder
    )
    logger.info(
        "dataset: %d episodes x %d frames, cameras %s, window %s, action chunk %d; batch %d, %d workers, pool %d%s",
        args.episodes,
        args.length,
        " ".join(args.sizes),
        args.window,
        args.action_chunk,
        args.batch_size,
        args.num_workers,
        args.pool,
        ", uint8" if args.uint8 else ", float32",
    )
    epochs, emitted = run_reader(ds, args.batch_size, args.num_workers, args.epochs)
    result: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    result["epochs"] = [asdict(e) for e in epochs]
    if not args.skip_limit:
        per_worker = worker_requests(ds, emitted, args.num_workers, args.window)
        factory = DecoderFactory(ds)
        one_core = sum(decode_limit(reqs, factory) for reqs in per_worker)
        parallel = limit_parallel(ds, per_worker)
        n = len(emitted)
        result["limit"] = {
            "samples": n,
            "frames": sum(len(idx) for reqs in per_worker for _, idx in reqs),
            "per_core_samples_s": n / one_core,
            "parallel_samples_s": n / parallel,
            "processes": len(per_worker),
        }
        reader_rate = epochs[0].rate
        result["ratio"] = reader_rate / result["limit"]["parallel_samples_s"]
        logger.info(
            "decode limit of epoch 0's %d samples (%d frames): %.0f samples/s per core, %.0f samples/s in %d "
            "processes (%.2fx)\nreader epoch 0: %.0f samples/s = %.0f %% of the limit",
            n,
            result["limit"]["frames"],
            n / one_core,
            n / parallel,
            len(per_worker),
            one_core / parallel,
            reader_rate,
            100 * result["ratio"],
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
