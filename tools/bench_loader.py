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
from bench_reader import DecoderFactory, textured_frame  # noqa: E402

from lerowds import LeRobotWebDataset  # noqa: E402
from lerowds.reader.decoder_cache import decode_limit  # noqa: E402
from lerowds.reader.loader import Loader  # noqa: E402
from lerowds.reader.order import rank_plan, worker_segments  # noqa: E402
from lerowds.reader.windows import window_positions  # noqa: E402

logger = logging.getLogger("bench_loader")
CAMERAS = ("observation.images.cam_0", "observation.images.cam_1")


def build_dataset(workdir: Path, episodes: int, length: int, fps: int, size: str) -> Path:
    """The converted bench set under ``workdir`` (written once, then reused while its parameters match)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing import v3writer
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec

    params = {"episodes": episodes, "length": length, "fps": fps, "size": size, "content": "textured"}
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
    )
    t = time.perf_counter()
    v3writer.encode_frame = textured_frame  # type: ignore[assignment]  # camera-like content, not flat bands
    v3writer.write_v3_dataset(workdir / "v3", spec)
    logger.info("wrote the LeRobot v3 bench set in %.0f s", time.perf_counter() - t)
    convert(ConvertOptions(repo_id=spec.repo_id, root=workdir / "v3", output=out, progress=False))
    stamp.write_text(json.dumps(params))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-loader"))
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--length", type=int, default=90, help="frames per episode")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="240x320", help="HxW of both cameras")
    parser.add_argument("--build-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("SVT_LOG", "1")
    args.workdir.mkdir(parents=True, exist_ok=True)
    root = build_dataset(args.workdir, args.episodes, args.length, args.fps, args.size)
    logger.info("bench set at %s", root)


if __name__ == "__main__":
    main()
