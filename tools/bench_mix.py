"""Benchmark the cost of weighted mixing: samples/s of ``mix(A, B)`` against reading ``A`` alone.

Not a test. Builds (once, cached under ``--workdir``) two converted datasets A and B of the same shape
(``--episodes`` x ``--length`` frames, one ``--size`` video camera), then alternates rounds of

* single: ``DataLoader(LeRobotWebDataset(A), batch_size=B, num_workers=W, persistent_workers=True)``
* mix:    the same DataLoader over ``lerowds.mix({"a": A, "b": B}, [0.5, 0.5])``: by default a mix epoch is
  ``len(A) + len(B)`` samples, so each source runs about one pass per mix epoch, as A does alone
  (``--samples-per-epoch`` overrides it).

Reports, over epochs (each after its first batch), the median and the best of samples/s and of CPU µs per
sample (DataLoader workers + main process) and the overheads ``1 - mix/single`` (throughput) and
``mix/single - 1`` (CPU). A control, ``mix({"a": A})``, runs the mixing machinery over A alone and reads
exactly A's samples: its gap to single is the noise floor. ``mix_stage_ns_per_sample`` is the CPU cost of
the mixing stage alone (draws, interleave, tag). On a shared machine wall time is noisy; CPU time is
steadier, and "best" (max rate, min CPU) filters interference; rounds alternate the order.
``--num-workers 0`` runs everything in one process.

    python tools/bench_mix.py --workdir /tmp/lerowds-bench-mix
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from cpu_clock import cpu_since, cpu_tree
from torch.utils.data import DataLoader

from lerowds import LeRobotWebDataset, mix
from lerowds.reader.order.mix_draws import SourceDraws, SourcePosition, interleave

logger = logging.getLogger("bench_mix")
CAMERA = "observation.images.front"


@dataclass(frozen=True, slots=True)
class BenchData:
    """What a cached dataset holds; a different value rebuilds it."""

    name: str
    episodes: int
    length: int
    size: int


def build_dataset(workdir: Path, data: BenchData) -> Path:
    """The converted dataset for ``data`` under ``workdir`` (written once, then reused)."""
    import shutil

    from lerowds.convert import ConvertOptions, convert
    from lerowds.testing.v3spec import CameraSpec, DatasetSpec
    from lerowds.testing.v3writer import write_v3_dataset

    root = workdir / data.name
    out, stamp = root / "converted", root / "bench_data.json"
    if stamp.exists() and json.loads(stamp.read_text()) == asdict(data):
        return out
    if root.exists():
        shutil.rmtree(root)
    spec = DatasetSpec(
        repo_id=f"lerowds/bench-mix-{data.name}",
        fps=15,
        episode_lengths=(data.length,) * data.episodes,
        episode_tasks=tuple((f"task {e % 3}",) for e in range(data.episodes)),
        cameras=(CameraSpec(CAMERA, data.size, data.size),),
    )
    t = time.perf_counter()
    write_v3_dataset(root / "v3", spec)
    convert(ConvertOptions(repo_id=spec.repo_id, root=root / "v3", output=out, progress=False))
    logger.info("built %s in %.0f s", data.name, time.perf_counter() - t)
    stamp.write_text(json.dumps(asdict(data)))
    return out


def epoch_rates(ds: object, *, batch_size: int, num_workers: int, epochs: int) -> list[tuple[float, float]]:
    """``(samples/s, CPU µs per sample)`` of each epoch after its first batch, one persistent DataLoader.

    CPU time (workers + main process) is far less sensitive than wall time to other load on the machine."""
    loader = DataLoader(
        ds, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    out = []
    for _ in range(epochs):
        it = iter(loader)
        next(it)
        start, cpu, samples = time.perf_counter(), cpu_tree(), 0
        for batch in it:
            samples += len(batch["index"])
        wall, cpu = time.perf_counter() - start, cpu_since(cpu)
        out.append((samples / wall, 1e6 * cpu / samples))
    return out


def stage_cost_ns(count: int = 500_000) -> float:
    """CPU ns per sample of the mixing stage alone (draws, interleave, ``source`` tag) over ready-made dicts."""
    items = [{"index": i} for i in range(count)]

    def open_pass(s: int, p: int, skip: int) -> Iterator[dict[str, int]]:
        return iter(items[skip:])

    def tagged(pairs: Iterator[tuple[int, dict[str, int]]]) -> Iterator[dict[str, int]]:
        for s, sample in pairs:
            sample["source"] = "ab"[s]  # type: ignore[assignment]
            yield sample

    start = time.process_time()
    draws = SourceDraws([0.5, 0.5], seed=0, epoch=0, rank=0, worker=0)
    for _ in tagged(interleave(draws.stream(count), open_pass, [SourcePosition(0, 0)] * 2)):
        pass
    mixed = time.process_time() - start
    start = time.process_time()
    for _ in iter(items):
        pass
    return 1e9 * (mixed - (time.process_time() - start)) / count


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-mix"))
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--length", type=int, default=60)
    p.add_argument("--size", type=int, default=64, help="camera height and width")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3, help="epochs per round (one DataLoader per round)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--samples-per-epoch", type=int, default=None, help="of the mix (default: its frames)")
    p.add_argument("--pool", type=int, default=8, help="episode_pool_size of every dataset")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    paths = [
        build_dataset(args.workdir, BenchData(name, args.episodes, args.length, args.size)) for name in "ab"
    ]

    pool = args.pool
    makers = {
        "single": lambda: LeRobotWebDataset(paths[0], episode_pool_size=pool),
        "mix": lambda: mix(
            {"a": paths[0], "b": paths[1]},
            [0.5, 0.5],
            samples_per_epoch=args.samples_per_epoch,
            episode_pool_size=pool,
        ),
        # control: the mixing machinery over A alone reads exactly single's samples; its gap is the noise floor
        "mix_of_one": lambda: mix({"a": paths[0]}, episode_pool_size=pool),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in makers}
    for r in range(args.rounds):
        order = list(makers) if r % 2 == 0 else list(makers)[::-1]
        for name in order:
            got = epoch_rates(
                makers[name](), batch_size=args.batch_size, num_workers=args.num_workers, epochs=args.epochs
            )
            runs[name] += got
            logger.info("round %d %-10s %s", r, name, "  ".join(f"{x:.0f}/s {c:.0f}us" for x, c in got))

    def summary(rate: dict[str, float], cpu: dict[str, float]) -> dict[str, object]:
        return {
            "samples_per_s": {k: round(v, 1) for k, v in rate.items()},
            "cpu_us_per_sample": {k: round(v, 1) for k, v in cpu.items()},
            "throughput_overhead": {k: round(1 - rate[k] / rate["single"], 4) for k in rate if k != "single"},
            "cpu_overhead": {k: round(cpu[k] / cpu["single"] - 1, 4) for k in cpu if k != "single"},
        }

    result = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "median": summary(
            {k: statistics.median(x for x, _ in v) for k, v in runs.items()},
            {k: statistics.median(c for _, c in v) for k, v in runs.items()},
        ),
        "best": summary(  # interference only ever slows a run down
            {k: max(x for x, _ in v) for k, v in runs.items()},
            {k: min(c for _, c in v) for k, v in runs.items()},
        ),
        "mix_stage_ns_per_sample": round(stage_cost_ns(), 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    logger.info("%s", json.dumps(result))
    return result


if __name__ == "__main__":
    main()
