"""Benchmark ``lerowds train`` on ``lerowds.Loader`` (``--lerowds.loader=threads``) vs torch's DataLoader
(``--lerowds.loader=dataloader``): steps/s and CPU seconds per step of the whole training, in one run.

Not a test; needs lerobot (CI's lerobot environment has it). Converts the shared fixture (once, under
``--workdir``), then trains the tiny ACT of tests/lerobot (CPU) ``--steps`` steps per run with each loader,
``--rounds`` times interleaved (threads, dataloader, threads, ...), same seed, same consumer count
(``--consumers`` threads or worker processes). Steps/s counts from the end of step ``--consumers``
(the start-up, each consumer's first batch, is left out: worker processes start slower than threads); CPU counts this process and its live children (the
DataLoader's workers), sampled at the last step. The machine is shared and noisy: compare the ratios of
one run, not absolute numbers across runs.

    python tools/bench_train.py [--steps 40 --rounds 3 --batch-size 8 --consumers 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lerobot"))
from cpu_clock import cpu_since, cpu_tree
from lerobot_env import REPO_ID, SMALL, TINY_ACT_FLAGS

logger = logging.getLogger("bench_train")


def one_run(source: Path, out: Path, loader: str, args: argparse.Namespace) -> dict[str, Any]:
    from lerowds.train import run

    marks: list[tuple[float, dict[int, float]]] = []

    def record(_step: Any) -> None:
        marks.append((time.perf_counter(), cpu_tree()))

    argv = [
        *TINY_ACT_FLAGS,
        f"--lerowds.source={source}",
        f"--lerowds.loader={loader}",
        f"--lerowds.num_threads={args.consumers}",
        f"--num_workers={args.consumers}",
        f"--batch_size={args.batch_size}",
        f"--steps={args.steps}",
        "--save_checkpoint=false",
        "--log_freq=0",
        "--seed=7",
        f"--output_dir={out}",
    ]
    shutil.rmtree(out, ignore_errors=True)  # lerobot refuses an existing output_dir
    run(argv, on_step=record)
    skip = args.consumers  # until every consumer (thread or worker process) has delivered its first batch
    (t0, c0), (t1, c1) = marks[skip - 1], marks[-1]
    n = len(marks) - skip
    return {"loader": loader, "steps_per_s": n / (t1 - t0), "cpu_s_per_step": cpu_since(c0, c1) / n}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/lerowds-bench-train"))
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    source = args.workdir / "converted"
    if not (source / "index.json").exists():
        from lerowds.convert import ConvertOptions, convert

        # the shared fixture as the tests convert it (tests/conftest.py's small_converted)
        convert(
            ConvertOptions(repo_id=REPO_ID, root=SMALL, output=source, progress=False, shard_size=64 * 1024)
        )
    rows = []
    for r in range(args.rounds):
        for loader in ("threads", "dataloader"):
            row = one_run(source, args.workdir / f"run-{r}-{loader}", loader, args) | {"round": r}
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = {}
    for loader in ("threads", "dataloader"):
        mine = [r for r in rows if r["loader"] == loader]
        summary[loader] = {
            k: statistics.median(r[k] for r in mine) for k in ("steps_per_s", "cpu_s_per_step")
        }
    ratio = [
        a["steps_per_s"] / b["steps_per_s"]
        for a, b in zip(rows[0::2], rows[1::2], strict=True)  # each round's threads / dataloader
    ]
    summary["threads_over_dataloader_steps_per_s"] = {"per_round": ratio, "median": statistics.median(ratio)}
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
