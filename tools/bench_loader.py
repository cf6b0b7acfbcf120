"""Benchmark ``lerowds.Loader`` (threads) and the DataLoader path against the decode limit of the same run.

Not a test. Builds (once, cached under ``--workdir``) a converted dataset shaped like issue 12's bench set:
two 240×320 AV1 cameras encoded as LeRobot v3 does (libsvtav1, g=2, camera-like texture from
``bench_reader.textured_frame``), window t-2..t on each camera, a 10-step action chunk. Then, in one run:

1. the decode limit: exactly the frames one epoch asks for (every sample's windows on both cameras, in each
   consumer's order), decoded from open decoders in N threads started together (``decode_limit``);
2. ``Loader(ds, batch_size, num_threads=N)`` for N in ``--threads``: samples/s delivered to a loop that
   receives float32 cameras (the loader converts them), after the first batch; time to first batch;
   the loader's batch buffer bytes;
3. ``DataLoader(ds_uint8, batch_size, num_workers=2, persistent_workers=True, prefetch_factor=4)`` with
   cameras as uint8 converted to float32/255 in the loop (as lerobot-train does), and with float32 cameras.

Each configuration runs ``--rounds`` times interleaved; the machine is shared and noisy, so compare the
ratios of one run, not absolute numbers across runs.

    python tools/bench_loader.py [--episodes 40 --length 90 --rounds 2 --threads 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_reader import textured_frame, worker_requests
from cpu_clock import cpu_since, cpu_tree

from lerowds import LeRobotWebDataset, Loader
from lerowds.reader.decode.base import ClipContext
from lerowds.reader.decode.cache import decode_limit, make_decoder

logger = logging.getLogger("bench_loader")
CAMERAS = ("observation.images.cam_0", "observation.images.cam_1")


def build_dataset(workdir: Path, episodes: int, length: int, fps: int, size: str, gop: int = 2) -> Path:
    """The converted bench set under ``workdir``, keyframes every ``gop`` frames as written (written once, then
    reused while its parameters match; ``tools/bench_runs.py`` builds its GOP sets with it too)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing import v3writer
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec

    params = {
        "episodes": episodes,
        "length": length,
        "fps": fps,
        "size": size,
        "content": "textured",
        "gop": gop,
    }
    out, stamp = workdir / "converted", workdir / "bench_loader.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params:
        return out
    import shutil

    for path in (workdir / "v3", out):
        shutil.rmtree(path, ignore_errors=True)
    stamp.unlink(missing_ok=True)
    h, w = (int(v) for v in size.split("x"))
    spec = DatasetSpec(
        repo_id="lerowds/bench-loader",
        fps=fps,
        episode_lengths=(length,) * episodes,
        episode_tasks=tuple((f"task {e % 3}",) for e in range(episodes)),
        cameras=tuple(CameraSpec(key, h, w) for key in CAMERAS),
        gop=gop,
    )
    t = time.perf_counter()
    v3writer.encode_frame = textured_frame  # type: ignore[assignment]  # camera-like content, not flat bands
    v3writer.write_v3_dataset(workdir / "v3", spec)
    logger.info("wrote the LeRobot v3 bench set in %.0f s", time.perf_counter() - t)
    convert(ConvertOptions(repo_id=spec.repo_id, root=workdir / "v3", output=out, progress=False))
    stamp.write_text(json.dumps(params))
    return out


class _Decoders:
    """Opens the reader's decoder (channels first, as the consumer does) on a clip of the dataset."""

    def __init__(self, ds: LeRobotWebDataset) -> None:
        self.ds = ds
        self._row = {int(e): r for r, e in enumerate(ds._store.table["episode_index"])}

    def __call__(self, key: tuple[int, str]) -> Any:
        episode, camera = key
        row, store = self._row[episode], self.ds._store
        length = int(store.table["length"][row])
        clip = store.clip(row, camera)
        return make_decoder(
            self.ds.decoder, clip, self.ds.meta.fps, length, ClipContext(episode, camera), channels_first=True
        )


def limit_threads(ds: LeRobotWebDataset, per_thread: list[list[Any]]) -> tuple[float, float]:
    """(wall, CPU) seconds for N threads, started together with their decoders open, to decode their
    requests."""
    barrier = threading.Barrier(len(per_thread) + 1)
    ends: list[float] = []
    errors: list[BaseException] = []

    def run(requests: list[Any]) -> None:
        try:
            decode_limit(requests, _Decoders(ds), before_start=barrier.wait)
            ends.append(time.perf_counter())
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(reqs,)) for reqs in per_thread]
    for t in threads:
        t.start()
    barrier.wait()
    start, cpu = time.perf_counter(), cpu_tree()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return max(ends) - start, cpu_since(cpu)


def _emitted(batch: dict[str, Any]) -> list[tuple[int, int]]:
    return list(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist()))


def timed(
    batches: Any, samples: int, cameras: Sequence[str], convert: bool, uint8: bool = False
) -> dict[str, Any]:
    """Iterate until ``samples`` samples: first-batch time, then samples/s; cameras float32 in the loop."""
    t0 = time.perf_counter()
    it = iter(batches)
    batch = next(it)
    first = time.perf_counter()
    emitted, n = _emitted(batch), 0
    cpu0 = cpu_tree()
    for batch in it:
        if convert:
            batch = {k: (v.float().div_(255) if k in cameras else v) for k, v in batch.items()}
        assert batch[cameras[0]].dtype == (torch.uint8 if uint8 else torch.float32)
        n += len(batch["index"])
        emitted += _emitted(batch)
        if len(emitted) >= samples:
            break
    end = time.perf_counter()
    cpu = cpu_since(cpu0)
    del it, batch
    return {"first_s": first - t0, "rate": n / (end - first), "emitted": emitted, "cpu_ms": 1e3 * cpu / n}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-loader"))
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--length", type=int, default=90, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of both cameras")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--samples", type=int, default=1500, help="samples timed per run (after the first batch)"
    )
    parser.add_argument("--rounds", type=int, default=2, help="repeat every configuration, interleaved")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = build_dataset(args.workdir, args.episodes, args.length, args.fps, args.size)
    logger.info("bench set at %s", root)
    if args.build_only:
        return
    torch.set_num_threads(1)  # a training process's decode threads should not fight torch's intra-op pool
    window = [-2, -1, 0]
    delta: dict[str, list[float]] = {k: [o / args.fps for o in window] for k in CAMERAS}
    delta["action"] = [i / args.fps for i in range(10)]

    def dataset(uint8: bool = False) -> LeRobotWebDataset:
        return LeRobotWebDataset(root, delta_timestamps=delta, return_uint8=uint8)

    bs, rows = args.batch_size, []

    def record(rnd: int, what: str, n: int, r: dict[str, Any], buffer_mb: float) -> None:
        """A run's row, with the decode limit of exactly its frames in ``n`` threads measured right after."""
        ds = dataset()
        limit_s, limit_cpu = limit_threads(ds, worker_requests(ds, r["emitted"], n, window))
        limit = len(r["emitted"]) / limit_s
        row = {"round": rnd, "what": what, "rate": r["rate"], "limit": limit, "ratio": r["rate"] / limit}
        row |= {"first_s": r["first_s"], "cpu_ms": r["cpu_ms"], "buffer_mb": buffer_mb}
        row["limit_cpu_ms"] = 1e3 * limit_cpu / len(r["emitted"])
        row["cpu_ratio"] = row["limit_cpu_ms"] / r["cpu_ms"]
        rows.append(row)
        logger.info("%s", {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})

    for rnd in range(args.rounds):
        for n in args.threads:
            loader = Loader(dataset(), bs, num_threads=n)
            r = timed(loader, args.samples, CAMERAS, convert=False)
            buffers = loader.buffer_bytes()
            loader.close()
            record(rnd, f"Loader, {n} thread(s)", n, r, buffers / 1e6)
        loader = Loader(dataset(uint8=True), bs, num_threads=2)  # cameras stay uint8 (device= converts there)
        r = timed(loader, args.samples, CAMERAS, convert=False, uint8=True)
        buffers = loader.buffer_bytes()
        loader.close()
        record(
            rnd, "Loader, 2 threads, uint8 cameras (with device= converted on the GPU)", 2, r, buffers / 1e6
        )
        for uint8 in (True, False):
            dl = DataLoader(
                dataset(uint8), batch_size=bs, num_workers=2, persistent_workers=True, prefetch_factor=4
            )
            r = timed(dl, args.samples, CAMERAS, convert=uint8)
            del dl
            kind = "uint8 cameras converted in the loop" if uint8 else "float32 cameras"
            record(rnd, f"DataLoader, 2 workers, {kind}", 2, r, float("nan"))
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def markdown(rows: list[dict[str, Any]]) -> str:
    """One line per configuration: median over rounds of samples/s and of the ratio to its round's limit."""
    head = ["configuration", "samples/s", "decode limit (same frames, same threads)", "÷ limit (wall)"]
    head += ["÷ limit (CPU)", "first batch", "batch buffers"]
    lines = [head, ["---"] * len(head)]
    for what in dict.fromkeys(r["what"] for r in rows):
        rs = [r for r in rows if r["what"] == what]
        med = {
            k: float(np.median([r[k] for r in rs]))
            for k in ("rate", "limit", "ratio", "cpu_ratio", "first_s", "buffer_mb")
        }
        lines.append(
            [
                what,
                f"{med['rate']:.0f}",
                f"{med['limit']:.0f}",
                f"{100 * med['ratio']:.0f} %",
                f"{100 * med['cpu_ratio']:.0f} %",
                f"{med['first_s']:.2f} s",
                "" if np.isnan(med["buffer_mb"]) else f"{med['buffer_mb']:.0f} MB",
            ]
        )
    dl = [r for r in rows if r["what"].startswith("DataLoader") and "uint8" in r["what"]]
    two = [r for r in rows if r["what"] == "Loader, 2 thread(s)"]
    if dl and two:
        per_round = [t["rate"] / d["rate"] for t, d in zip(two, dl)]
        lines.append(
            [
                "Loader 2 threads ÷ DataLoader (uint8)",
                " / ".join(f"{x:.2f}x" for x in per_round),
                "",
                "",
                "",
                "",
                "",
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


if __name__ == "__main__":
    main()
