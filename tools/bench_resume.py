"""Benchmark resuming mid-epoch: seconds from ``load_state_dict`` to the first resumed batch, and no video read.

Not a test. Two parts:

1. Scale: a tabular-only dataset (no cameras; written once, cached under ``--workdir``) of ``--episodes`` ×
   ``--length`` frames, resumed at ``--batch`` (default 100,000, batch size 32: 3.2 M samples skipped) with
   ``DataLoader(num_workers=W)``; the time from ``load_state_dict`` to the first batch, and, with
   ``--verify``, that this batch equals batch ``--batch`` of an uninterrupted run.
2. No video: the camera dataset of ``bench_reader.py`` (``--video-root``) resumed near the end of its epoch
   with ``num_workers=0``; decoders opened and frames decoded until the first resumed batch, against what
   that batch alone needs and what decoding the skipped samples would have cost.

    python tools/bench_resume.py --workdir /tmp/lerowds-bench-resume \
        --video-root /tmp/lerowds-bench-reader/textured/converted
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from typing_extensions import Self

from lerowds import LeRobotWebDataset
from lerowds.reader import pipeline as consumer_module

logger = logging.getLogger("bench_resume")


def build_tabular(workdir: Path, episodes: int, length: int, fps: int) -> Path:
    """A converted dataset with no camera, written once (the stamp records its shape)."""
    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing.v3spec import DatasetSpec
    from lerowds.testing.v3writer import write_v3_dataset

    shape = {"episodes": episodes, "length": length, "fps": fps}
    out, stamp = workdir / "converted", workdir / "bench_data.json"
    if stamp.exists() and json.loads(stamp.read_text()) == shape:
        return out
    for path in (workdir / "v3", out):
        if path.exists():
            shutil.rmtree(path)
    spec = DatasetSpec(
        repo_id="lerowds/bench-resume",
        fps=fps,
        episode_lengths=(length,) * episodes,
        episode_tasks=tuple((f"task {e % 5}",) for e in range(episodes)),
        data_file_frames=200_000,
        meta_file_episodes=1000,
    )
    t = time.perf_counter()
    write_v3_dataset(workdir / "v3", spec)
    logger.info("wrote %d episodes x %d frames in %.0f s", episodes, length, time.perf_counter() - t)
    t = time.perf_counter()
    convert(ConvertOptions(repo_id=spec.repo_id, root=workdir / "v3", output=out, progress=False))
    logger.info("converted in %.0f s", time.perf_counter() - t)
    stamp.write_text(json.dumps(shape))
    return out


def first_resumed_batch(
    root: Path, delta: dict[str, list[float]], batch: int, batch_size: int, num_workers: int
) -> tuple[float, float, dict[str, Any]]:
    """(seconds in load_state_dict, seconds from then to the first resumed batch, that batch)."""
    ds = LeRobotWebDataset(root, delta_timestamps=delta)
    state = ds.state_dict(batches_consumed=batch, batch_size=batch_size, epoch=0, num_workers=num_workers)
    t0 = time.perf_counter()
    ds.load_state_dict(state)
    t1 = time.perf_counter()
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    first = next(iter(loader))
    return t1 - t0, time.perf_counter() - t0, first


def nth_batch(
    root: Path, delta: dict[str, list[float]], batch: int, batch_size: int, num_workers: int
) -> Any:
    """Batch ``batch`` of an uninterrupted epoch (slow: iterates everything before it)."""
    ds = LeRobotWebDataset(root, delta_timestamps=delta)
    for i, b in enumerate(DataLoader(ds, batch_size=batch_size, num_workers=num_workers)):
        if i == batch:
            return b
    raise SystemExit(f"the epoch has fewer than {batch + 1} batches")


def same_batch(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


class DecoderCount:
    """Counts decoders the sample loop opens and frames they decode (PyAV's ``decoded`` counter)."""

    def __init__(self) -> None:
        self.decoders: list[Any] = []
        self._make = consumer_module.make_decoder

    def __enter__(self) -> Self:
        def counting(*args: Any, **kwargs: Any) -> Any:
            self.decoders.append(self._make(*args, **kwargs))
            return self.decoders[-1]

        consumer_module.make_decoder = counting  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        consumer_module.make_decoder = self._make  # type: ignore[assignment]

    @property
    def frames(self) -> int:
        return sum(getattr(d, "decoded", 0) for d in self.decoders)


def video_case(root: Path, batch_size: int, window: Sequence[int]) -> dict[str, Any]:
    """Resume the camera dataset at its second-to-last batch (num_workers=0) and count decoding."""
    probe = LeRobotWebDataset(root)
    fps, cams = probe.meta.fps, probe.meta.video_keys
    delta = {k: [o / fps for o in window] for k in cams}
    batches = len(probe) // batch_size
    resume_at = batches - 2
    with DecoderCount() as count:
        _, first_s, first = first_resumed_batch(root, delta, resume_at, batch_size, num_workers=0)
    windows = len(cams) * len(first["index"])
    out = {
        "samples": len(probe),
        "resume_at_batch": resume_at,
        "skipped_samples": resume_at * batch_size,
        "first_batch_s": first_s,
        "decoders_opened": len(count.decoders),
        "distinct_clips_in_batch": len({(int(e), k) for e in first["episode_index"] for k in cams}),
        "frames_decoded": count.frames,
        "frames_requested_by_batch": windows * len(window),
        "frames_a_replay_would_request": resume_at * batch_size * len(cams) * len(window),
    }
    logger.info("video case: %s", out)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-resume"))
    parser.add_argument("--episodes", type=int, default=3300)
    parser.add_argument("--length", type=int, default=1000)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=100_000, help="batches consumed before the resume")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--action-chunk", type=int, default=50)
    parser.add_argument("--verify", action="store_true", help="compare with an uninterrupted run (slow)")
    parser.add_argument("--video-root", type=Path, help="a converted camera dataset (bench_reader.py's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    args.workdir.mkdir(parents=True, exist_ok=True)
    root = build_tabular(args.workdir, args.episodes, args.length, args.fps)
    delta = {"action": [i / args.fps for i in range(args.action_chunk)]}
    frames = args.episodes * args.length
    if (args.batch + 1) * args.batch_size > frames:
        raise SystemExit(f"{frames} frames hold fewer than {args.batch + 1} batches of {args.batch_size}")
    load_s, first_s, first = first_resumed_batch(root, delta, args.batch, args.batch_size, args.num_workers)
    result: dict[str, Any] = {
        "frames": frames,
        "batch": args.batch,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "load_state_dict_s": load_s,
        "first_batch_s": first_s,
    }
    logger.info(
        "%d frames: resumed at batch %d (batch size %d, %d workers): load_state_dict %.3f s, first batch after "
        "%.2f s",
        frames,
        args.batch,
        args.batch_size,
        args.num_workers,
        load_s,
        first_s,
    )
    if args.verify:
        t = time.perf_counter()
        result["verified"] = same_batch(
            first, nth_batch(root, delta, args.batch, args.batch_size, args.num_workers)
        )
        result["uninterrupted_s"] = time.perf_counter() - t
        logger.info(
            "uninterrupted run reached batch %d in %.0f s; same batch: %s",
            args.batch,
            result["uninterrupted_s"],
            result["verified"],
        )
    if args.video_root is not None:
        result["video"] = video_case(args.video_root, args.batch_size, [-2, -1, 0])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
