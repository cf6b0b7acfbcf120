"""Benchmark ``LeRobotWebDataset`` in a DataLoader against the decode limit of exactly the frames it emitted.

Not a test. Builds (once, cached under ``--workdir``) a converted dataset with two AV1 cameras encoded the
way LeRobot v3 does (libsvtav1, g=2, crf=30; ``--content textured``: camera-like frames, or ``framecode``:
the test writer's flat bands), then in one run:

1. iterates ``DataLoader(LeRobotWebDataset(..., delta_timestamps=...), batch_size=B, num_workers=W,
   persistent_workers=True)`` for ``--epochs`` epochs: samples/s over each epoch after its first batch,
   time to first batch from the DataLoader iterator's creation, CPU time per sample (workers + main),
   peak RSS / RssAnon of the worker processes;
2. decodes the frames epoch 0 emitted (same episode, camera and frame-index requests, in each worker's
   order; recovered from the batches' ``episode_index``/``frame_index``) with ``decode_limit`` from open
   decoders, in one process (per core) and split like the workers over W processes started together;
3. (``--in-process N``) the reader alone in this process for N samples, no DataLoader, against decoding
   exactly their frames: what the reader adds to decoding, without the DataLoader's collate and transport.

ratio (wall) = reader samples/s ÷ limit samples/s in W processes. ratio (CPU) = limit CPU ms/sample ÷
reader CPU ms/sample: on a shared machine other processes steal wall time but hardly CPU time.

    python tools/bench_reader.py --workdir /tmp/lerowds-bench-reader [--uint8]
"""

from __future__ import annotations

import argparse
import itertools
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
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lerowds import LeRobotWebDataset
from lerowds.reader.decode.base import ClipContext
from lerowds.reader.decode.cache import decode_limit, make_decoder
from lerowds.reader.io.store import LocalStore
from lerowds.reader.order.ranks import rank_plan, worker_segments
from lerowds.reader.sample.windows import window_positions

logger = logging.getLogger("bench_reader")

Request = tuple[tuple[int, str], list[int]]  # ((episode, camera key), frame indices)


@dataclass(frozen=True, slots=True)
class BenchData:
    """What the cached dataset holds; a different value rebuilds it."""

    episodes: int
    length: int
    fps: int
    sizes: tuple[str, ...]
    content: str  # "textured" (camera-like, ~KB per frame) or "framecode" (the test writer's flat bands)


def camera_key(size: str) -> str:
    return f"observation.images.cam_{size}"


def textured_frame(episode_index: int, frame_index: int, height: int, width: int, cam: int = 0) -> np.ndarray:
    """A camera-like frame: moving gradient, light noise, a bright square (as ``bench_decode.py`` encodes);
    deterministic in its arguments. Flat frame-code bands compress to ~100 bytes and decode unrealistically
    fast, which would understate every per-sample cost that is not decoding."""
    rng = np.random.default_rng([episode_index, frame_index, cam])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    i = frame_index + 7 * episode_index + 13 * cam
    base = 128 + 80 * np.sin((xx + 3 * i) / 17.0) * np.cos((yy - 2 * i) / 23.0)
    img = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 4, (height, width, 3)).astype(np.float32)
    y0, x0 = (5 * i) % max(height - 16, 1), (7 * i) % max(width - 16, 1)
    img[y0 : y0 + 16, x0 : x0 + 16] = (250, 40, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def build_dataset(workdir: Path, data: BenchData) -> Path:
    """The converted dataset for ``data`` under ``workdir`` (written once, then reused)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing import v3writer
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec

    workdir = workdir / data.content
    workdir.mkdir(parents=True, exist_ok=True)
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
    if data.content == "textured":  # the writer draws every frame (clips and image stats) with this name
        v3writer.encode_frame = textured_frame  # type: ignore[assignment]
    v3writer.write_v3_dataset(workdir / "v3", spec)
    logger.info("wrote the LeRobot v3 dataset in %.0f s", time.perf_counter() - t)
    t = time.perf_counter()
    convert(ConvertOptions(repo_id=spec.repo_id, root=workdir / "v3", output=out, progress=False))
    logger.info("converted it in %.1f s", time.perf_counter() - t)
    stamp.write_text(json.dumps(asdict(data) | {"sizes": list(data.sizes)}))
    return out


# ------------------------------------------------------------------------------------------ reader run
def _status_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, RssAnon) of a process in MB, from /proc (RssAnon leaves out shared-memory batches in flight)."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "RssAnon:")):
                name, value = line.split(":", 1)
                fields[name] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("RssAnon", 0.0)


class WorkerWatch:
    """Memory and CPU of this process's children (the DataLoader workers): peaks sampled every ``period`` s."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.peak_rss = self.peak_anon = 0.0
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for rss, anon in self.memory().values():
                self.peak_rss, self.peak_anon = max(self.peak_rss, rss), max(self.peak_anon, anon)

    def memory(self) -> dict[int, tuple[float, float]]:
        out = {}
        for child in self._me.children():
            try:
                out[child.pid] = _status_mb(child.pid)
            except OSError:
                pass
        return out

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by this process and its live children."""
        return sum(self.cpu_split())

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds used so far by this process and its live children. System time is
        mostly the kernel's page faults on the shared memory that the DataLoader moves batches in."""
        user, system = self._me.cpu_times()[:2]
        for child in self._me.children():
            try:
                u, s = child.cpu_times()[:2]
            except psutil.Error:
                continue
            user, system = user + u, system + s
        return user, system

    def take_peaks(self) -> tuple[float, float]:
        """(RSS, RssAnon) peaks since the last call, MB."""
        peaks = self.peak_rss, self.peak_anon
        self.peak_rss = self.peak_anon = 0.0
        return peaks

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True, slots=True)
class EpochResult:
    samples: int
    first_batch_s: float  # from the DataLoader iterator's creation (epoch 0: includes starting the workers)
    rate: float  # samples/s after the first batch
    cpu_ms: float  # CPU ms per sample after the first batch: workers + main process
    sys_ms: float  # the kernel's part of cpu_ms
    peak_rss_mb: float  # the largest worker VmRSS seen during the epoch (includes batches in shared memory)
    peak_anon_mb: float  # the largest worker RssAnon seen during the epoch
    end_anon_mb: float  # the largest worker RssAnon right after the epoch


def run_reader(
    ds: LeRobotWebDataset, batch_size: int, num_workers: int, epochs: int
) -> tuple[list[EpochResult], list[tuple[int, int]]]:
    """Iterate ``epochs`` epochs; return per-epoch results and epoch 0's (episode, frame) in batch order."""
    loader = DataLoader(
        ds, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    watch = WorkerWatch()
    results, emitted = [], []
    logger.info(
        "main process before the DataLoader: RssAnon %.0f MB (workers start as its copies)",
        _status_mb(os.getpid())[1],
    )
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            it = iter(loader)
            batch = next(it)
            first, (user0, sys0) = time.perf_counter(), watch.cpu_split()
            n_first = n = len(batch["index"])
            if epoch == 0:
                emitted.extend(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))
            for batch in it:
                n += len(batch["index"])
                if epoch == 0:
                    emitted.extend(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))
            end, (user1, sys1) = time.perf_counter(), watch.cpu_split()
            del batch
            time.sleep(3 * watch.period)
            peak_rss, peak_anon = watch.take_peaks()
            end_anon = max((anon for _, anon in watch.memory().values()), default=0.0)
            r = EpochResult(
                n,
                first - start,
                (n - n_first) / (end - first),
                1e3 * (user1 + sys1 - user0 - sys0) / (n - n_first),
                1e3 * (sys1 - sys0) / (n - n_first),
                peak_rss,
                peak_anon,
                end_anon,
            )
            results.append(r)
            logger.info(
                "epoch %d: %d samples, first batch %.3f s, %.0f samples/s, %.2f CPU ms/sample (%.2f in the "
                "kernel), worker peak RSS %.0f MB (RssAnon %.0f MB, %.0f MB after the epoch)",
                epoch,
                n,
                r.first_batch_s,
                r.rate,
                r.cpu_ms,
                r.sys_ms,
                r.peak_rss_mb,
                r.peak_anon_mb,
                r.end_anon_mb,
            )
    finally:
        watch.stop()
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


@dataclass(frozen=True, slots=True)
class LimitResult:
    wall_s: float
    cpu_s: float  # CPU seconds of the decoding process(es) while decoding


def limit_one_process(ds: LeRobotWebDataset, per_worker: list[list[Request]]) -> LimitResult:
    """All workers' requests decoded one after the other in this process (one core)."""
    wall = cpu = 0.0
    marks: list[float] = []
    for requests in per_worker:
        wall += decode_limit(
            requests, DecoderFactory(ds), before_start=lambda: marks.append(time.process_time())
        )
        cpu += time.process_time() - marks[-1]
    return LimitResult(wall, cpu)


def _limit_child(ds: LeRobotWebDataset, requests: list[Request], barrier: Any, queue: Any) -> None:
    torch.set_num_threads(1)
    marks: list[float] = []

    def start() -> None:
        barrier.wait()
        marks.append(time.process_time())

    try:
        seconds = decode_limit(requests, DecoderFactory(ds), before_start=start)
        queue.put((time.perf_counter(), seconds, time.process_time() - marks[0]))
    except BaseException:
        barrier.abort()
        queue.put(None)
        raise


def limit_parallel(ds: LeRobotWebDataset, per_worker: list[list[Request]]) -> LimitResult:
    """W processes, one per DataLoader worker, started together with their decoders open: wall seconds until
    the last one is done, and their CPU seconds."""
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(len(per_worker) + 1), ctx.Queue()
    procs = [ctx.Process(target=_limit_child, args=(ds, reqs, barrier, queue)) for reqs in per_worker]
    for p in procs:
        p.start()
    barrier.wait()
    start = time.perf_counter()
    done = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    if any(d is None for d in done) or any(p.exitcode for p in procs):
        raise SystemExit(f"a decode-limit process failed (exit codes {[p.exitcode for p in procs]})")
    logger.debug("decode-limit processes: %s", [(round(d[1], 2), round(d[2], 2)) for d in done])
    return LimitResult(max(d[0] for d in done) - start, sum(d[2] for d in done))


def reader_in_process(ds: LeRobotWebDataset, count: int, offsets: Sequence[int]) -> dict[str, float]:
    """CPU ms/sample of the reader alone (no DataLoader: no collate, no shared memory, no IPC) over its first
    ``count`` samples in this process, and of decoding exactly their frames (``decode_limit``)."""
    torch.set_num_threads(1)  # as in a DataLoader worker
    emitted = []
    start = time.process_time()
    for sample in itertools.islice(iter(ds), count):
        emitted.append((int(sample["episode_index"]), int(sample["frame_index"])))
    reader = time.process_time() - start
    one = limit_one_process(ds, worker_requests(ds, emitted, 1, offsets))
    out = {"samples": len(emitted), "reader_cpu_ms": 1e3 * reader / len(emitted)}
    out["limit_cpu_ms"] = 1e3 * one.cpu_s / len(emitted)
    out["ratio"] = out["limit_cpu_ms"] / out["reader_cpu_ms"]
    logger.info(
        "reader in this process (no DataLoader), first %d samples: %.2f CPU ms/sample; decoding their frames: "
        "%.2f CPU ms/sample (%.0f %%)",
        len(emitted),
        out["reader_cpu_ms"],
        out["limit_cpu_ms"],
        100 * out["ratio"],
    )
    return out


class _Copies(IterableDataset):
    """Fresh copies of one sample, ``count`` in all over the workers: a dataset that does no work."""

    def __init__(self, sample: dict[str, Any], count: int) -> None:
        self.sample, self.count = sample, count

    def __iter__(self) -> Any:
        info = get_worker_info()
        n = self.count // (1 if info is None else info.num_workers)
        for _ in range(n):
            yield {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in self.sample.items()}


def transport_cost(sample: dict[str, Any], batch_size: int, num_workers: int, count: int) -> dict[str, float]:
    """What the DataLoader itself costs per sample of this shape (collate into shared memory, hand-over
    to the main process, release): samples/s and CPU ms/sample of a dataset that only copies a sample.
    CPU comes from getrusage once the workers have exited (their start included)."""
    loader = DataLoader(_Copies(sample, count), batch_size=batch_size, num_workers=num_workers)
    before = _rusage()
    it = iter(loader)
    n = len(next(it)["index"])
    start = time.perf_counter()
    for batch in it:
        n += len(batch["index"])
    wall = time.perf_counter() - start
    del it, batch
    user, system = (a - b for a, b in zip(_rusage(), before))
    out = {
        "samples_s": (n - batch_size) / wall,
        "cpu_ms": 1e3 * (user + system) / n,
        "sys_ms": 1e3 * system / n,
    }
    logger.info(
        "DataLoader transport alone (a dataset yielding copies of one sample): %.0f samples/s, %.2f CPU ms/sample "
        "(%.2f in the kernel)",
        out["samples_s"],
        out["cpu_ms"],
        out["sys_ms"],
    )
    return out


def _rusage() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and its exited children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime


# ------------------------------------------------------------------------------------------ CRC check cost
def compare_crc(make: Any, batch_size: int, num_workers: int, rounds: int) -> dict[str, dict[str, float]]:
    """Whole epochs (first batch included: an episode is checked when it is admitted) read with
    ``verify_crc`` on and off, alternating the order each round; medians of samples/s and CPU ms/sample
    (this process and its workers, which exit and are reaped after each epoch)."""
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for r in range(rounds):
        for flag in (True, False) if r % 2 == 0 else (False, True):
            loader = DataLoader(make(flag), batch_size=batch_size, num_workers=num_workers)
            (u0, s0), t0, n = _rusage(), time.perf_counter(), 0
            for batch in loader:
                n += len(batch["index"])
            wall, (u1, s1) = time.perf_counter() - t0, _rusage()
            runs[flag].append((n / wall, 1e3 * (u1 + s1 - u0 - s0) / n))
            logger.info("verify_crc=%s: %.0f samples/s, %.2f CPU ms/sample", flag, *runs[flag][-1])
    store = LocalStore(make(True).source)  # the check alone, page cache warm: all episodes' bytes
    rows = range(len(store.table))
    t0 = time.perf_counter()
    for row in rows:
        store._admit(row, store._shard_path(row))  # its CRC-32 and member headers
    check_s = time.perf_counter() - t0
    nbytes = int(np.sum(store.table["size"]))
    frames = int(np.sum(store.table["length"]))
    out = {
        str(flag).lower(): {
            "samples_s": float(np.median([x[0] for x in v])),
            "cpu_ms_per_sample": float(np.median([x[1] for x in v])),
        }
        for flag, v in runs.items()
    }
    out["check_alone"] = {"mb_s": nbytes / check_s / 1e6, "ms_per_frame": 1e3 * check_s / frames}
    on, off = out["true"], out["false"]
    logger.info(
        "verify_crc on vs off, medians of %d rounds: %.0f vs %.0f samples/s (%.1f %%), %.3f vs %.3f CPU ms/sample "
        "(+%.3f); the check alone: %.0f MB/s, %.4f ms per frame of the dataset",
        rounds,
        on["samples_s"],
        off["samples_s"],
        100 * (on["samples_s"] / off["samples_s"] - 1),
        on["cpu_ms_per_sample"],
        off["cpu_ms_per_sample"],
        on["cpu_ms_per_sample"] - off["cpu_ms_per_sample"],
        out["check_alone"]["mb_s"],
        out["check_alone"]["ms_per_frame"],
    )
    return out


# ------------------------------------------------------------------------------------------ main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-reader"))
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--length", type=int, default=150, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--sizes", nargs="+", default=["96x128", "240x320"], help="HxW of the cameras")
    parser.add_argument("--content", choices=["textured", "framecode"], default="textured")
    parser.add_argument("--window", type=int, nargs="+", default=[-2, -1, 0], help="camera frame offsets")
    parser.add_argument("--action-chunk", type=int, default=50, help="action frames 0..n-1 ahead")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--pool", type=int, default=64, help="episode_pool_size")
    parser.add_argument("--epochs", type=int, default=3, help="epochs iterated (RSS over epochs)")
    parser.add_argument("--uint8", action="store_true", help="return_uint8=True")
    parser.add_argument("--decoder", default="auto")
    parser.add_argument("--skip-limit", action="store_true", help="only run the reader")
    parser.add_argument(
        "--in-process", type=int, default=3000, help="samples of the no-DataLoader breakdown (0: skip)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--compare-crc",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="only compare whole epochs with verify_crc on and off, ROUNDS times each, alternating",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")

    args.workdir.mkdir(parents=True, exist_ok=True)
    data = BenchData(args.episodes, args.length, args.fps, tuple(args.sizes), args.content)
    root = build_dataset(args.workdir, data)
    fps = args.fps
    delta = {camera_key(s): [o / fps for o in args.window] for s in args.sizes}
    delta["action"] = [i / fps for i in range(args.action_chunk)]

    def make(verify_crc: bool = True) -> LeRobotWebDataset:
        return LeRobotWebDataset(
            root,
            delta_timestamps=delta,
            episode_pool_size=args.pool,
            return_uint8=args.uint8,
            decoder=args.decoder,
            verify_crc=verify_crc,
        )

    if args.compare_crc:
        result = compare_crc(make, args.batch_size, args.num_workers, args.compare_crc)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    ds = make()
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
        one = limit_one_process(ds, per_worker)
        par = limit_parallel(ds, per_worker)
        n = len(emitted)
        result["limit"] = {
            "samples": n,
            "frames": sum(len(idx) for reqs in per_worker for _, idx in reqs),
            "per_core_samples_s": n / one.wall_s,
            "processes": len(per_worker),
            "parallel_samples_s": n / par.wall_s,
            "cpu_ms_per_sample": 1e3 * par.cpu_s / n,
        }
        e0 = epochs[0]
        result["ratio"] = e0.rate / result["limit"]["parallel_samples_s"]
        result["cpu_ratio"] = result["limit"]["cpu_ms_per_sample"] / e0.cpu_ms
        logger.info(
            "decode limit of epoch 0's %d samples (%d frames): %.0f samples/s on one core, %.0f samples/s in %d "
            "processes (%.2fx), %.2f CPU ms/sample",
            n,
            result["limit"]["frames"],
            n / one.wall_s,
            n / par.wall_s,
            len(per_worker),
            one.wall_s / par.wall_s,
            result["limit"]["cpu_ms_per_sample"],
        )
    if args.in_process and not args.skip_limit:
        result["in_process"] = reader_in_process(ds, args.in_process, args.window)
        if args.num_workers > 0:
            one_sample = next(iter(ds))
            result["transport"] = transport_cost(one_sample, args.batch_size, args.num_workers, 6000)
            # a reader costing nothing could go no faster than the DataLoader moves such samples
            result["transport"]["ratio_bound"] = (
                result["transport"]["samples_s"] / result["limit"]["parallel_samples_s"]
            )
    print(markdown(result, epochs))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def markdown(result: dict[str, Any], epochs: list[EpochResult]) -> str:
    """The README table row of one run (with its header)."""
    a, limit = result["args"], result.get("limit")
    e0, last = epochs[0], epochs[-1]
    later = min((e.first_batch_s for e in epochs[1:]), default=float("nan"))
    head = [
        "content",
        "output",
        "reader samples/s",
        "first batch (epoch 1 / later)",
        "reader CPU ms/sample (kernel)",
    ]
    row = [
        a["content"],
        "uint8" if a["uint8"] == "True" else "float32",
        f"{e0.rate:,.0f}",
        f"{e0.first_batch_s:.2f} s / {later:.2f} s",
        f"{e0.cpu_ms:.2f} ({e0.sys_ms:.2f})",
    ]
    if limit:
        head += [f"decode limit samples/s (1 core / {limit['processes']} proc)", "limit CPU ms/sample"]
        head += ["ratio (wall)", "ratio (CPU)"]
        row += [f"{limit['per_core_samples_s']:,.0f} / {limit['parallel_samples_s']:,.0f}"]
        row += [f"{limit['cpu_ms_per_sample']:.2f}", f"{100 * result['ratio']:.0f} %"]
        row += [f"{100 * result['cpu_ratio']:.0f} %"]
    if "in_process" in result:
        head.append("reader alone, no DataLoader (CPU)")
        row.append(f"{100 * result['in_process']['ratio']:.0f} %")
    if "transport" in result:
        head.append("DataLoader alone, no-work dataset: samples/s (÷ limit)")
        t = result["transport"]
        row.append(f"{t['samples_s']:,.0f} ({100 * t['ratio_bound']:.0f} %)")
    head.append(f"worker RssAnon (VmRSS) peak, epoch 1 → {len(epochs)}")
    row.append(
        f"{e0.peak_anon_mb:.0f} → {last.peak_anon_mb:.0f} MB ({e0.peak_rss_mb:.0f} → {last.peak_rss_mb:.0f})"
    )
    lines = [head, ["---"] * len(head), row]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


if __name__ == "__main__":
    main()
