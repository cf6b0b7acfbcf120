"""Benchmark elastic resume at DROID scale on integers only: planning, and each new consumer's replay.

Not a test. An epoch of ``--episodes`` episodes (lengths uniform in ``[--min-length, --max-length]``,
DROID: 92,233 episodes, ~27 M frames) saved mid-epoch under ``--old`` (ranks x workers x batch size) and
resumed under each ``--new`` topology. Measured:

* plan: ``ElasticEpoch`` plus every new consumer's slices (which old streams, which samples): integers.
* replay: for sampled new consumers, the work before each of its slices can emit — the old consumer's
  rank plan, worker segments and ``PoolOrder.skip`` to the slice's start (what the dataset does, without
  the episode I/O), summed over the consumer's slices; and, as the reference, the same for a plain
  (same-topology) resume of one old consumer.

    python tools/bench_elastic.py --old 8x8x32 --new 4x6x64 16x8x16 --consumed 0.5
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.ranks import consumer_sample_count, rank_plan, worker_segments
from lerowds.reader.resume.batches import worker_batch_counts
from lerowds.reader.resume.elastic import ElasticEpoch, Leg, Topology

logger = logging.getLogger("bench_elastic")


def name(t: Topology) -> str:
    return f"{t.world_size} ranks x {t.num_workers} workers x batch {t.batch_size}"


def topology(text: str) -> Topology:
    world, workers, batch = (int(x) for x in text.split("x"))
    return Topology(world, workers, batch)


class Epoch:
    """The fresh epoch's consumers on integers: building one and skipping into it, as the dataset does."""

    def __init__(self, lengths: np.ndarray, *, seed: int, pool: int, remainder: str = "drop") -> None:
        self.lengths, self.seed, self.pool, self.remainder = lengths, seed, pool, remainder
        self.total = int(lengths.sum())

    def counts(self, world: int, workers: int) -> list[int]:
        return [
            consumer_sample_count(
                self.total, world_size=world, num_workers=workers, worker=w, remainder=self.remainder
            )
            for w in range(workers)
        ]

    def replay(self, topo: Topology, rank: int, worker: int, skip: int) -> float:
        """Seconds to rebuild consumer ``(rank, worker)``'s pool order and skip its first ``skip`` emits."""
        t = time.perf_counter()
        plan = rank_plan(
            self.lengths,
            seed=self.seed,
            epoch=0,
            shuffle=True,
            world_size=topo.world_size,
            rank=rank,
            remainder=self.remainder,
        )
        segs = worker_segments(plan.segments, num_workers=topo.streams, worker=worker)
        order = PoolOrder(
            segs, pool_size=self.pool, seed=self.seed, epoch=0, rank=rank, worker=worker, shuffle=True
        )
        order.skip(skip)
        return time.perf_counter() - t


def bench(epoch: Epoch, old: Topology, consumed: float, new: Topology, sample: int) -> dict[str, object]:
    counts = epoch.counts(*old.split)
    total_batches = sum(worker_batch_counts(counts, batch_size=old.batch_size))
    n = int(consumed * total_batches)
    t = time.perf_counter()
    elastic = ElasticEpoch(
        epoch.counts, [Leg(old, n)], world_size=new.world_size, num_workers=new.num_workers, remainder="drop"
    )
    slices = {(r, w): elastic.current.slices(r, w) for r in range(new.world_size) for w in range(new.streams)}
    plan_s = time.perf_counter() - t
    picks = sorted(slices)[:: max(1, len(slices) // sample)][:sample]
    replays = []
    for key in picks:
        times = [epoch.replay(old, s.rank, s.worker, s.start) for s in slices[key]]
        replays.append(
            {"consumer": key, "old_streams": len(times), "first_s": times[0], "replay_s": sum(times)}
        )
        logger.info(
            "  new consumer %s: %d old stream(s); replay before its first sample %.2f s, all %.2f s "
            "(each old stream is replayed when the consumer reaches it)",
            key,
            len(times),
            times[0],
            sum(times),
        )
    return {
        "new": name(new),
        "batches_consumed": n,
        "remaining": elastic.current.remaining,
        "per_rank": sum(elastic.current.counts),
        "dropped": elastic.current.dropped,
        "plan_s": round(plan_s, 4),
        "replays": replays,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=92_233)
    parser.add_argument("--min-length", type=int, default=100)
    parser.add_argument("--max-length", type=int, default=486)
    parser.add_argument("--pool", type=int, default=64)
    parser.add_argument("--old", type=topology, default=topology("8x8x32"), help="RANKSxWORKERSxBATCH")
    parser.add_argument("--new", type=topology, nargs="+", default=[topology("4x6x64"), topology("16x8x16")])
    parser.add_argument("--consumed", type=float, default=0.5, help="fraction of the old epoch's batches")
    parser.add_argument("--sample", type=int, default=3, help="new consumers whose replay is timed")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    lengths = np.random.default_rng(0).integers(args.min_length, args.max_length + 1, args.episodes)
    epoch = Epoch(lengths, seed=0, pool=args.pool)
    logger.info(
        "%d episodes, %d frames; saved under %s after %.0f%% of the epoch",
        args.episodes,
        epoch.total,
        name(args.old),
        100 * args.consumed,
    )
    counts = epoch.counts(*args.old.split)
    n = int(args.consumed * sum(worker_batch_counts(counts, batch_size=args.old.batch_size)))
    reference = epoch.replay(args.old, 0, 0, n // args.old.streams * args.old.batch_size)
    logger.info("plain resume of one old consumer (same topology): %.2f s", reference)
    result: dict[str, object] = {
        "frames": epoch.total,
        "old": name(args.old),
        "plain_resume_s": reference,
        "runs": [],
    }
    for new in args.new:
        logger.info("resumed under %s:", name(new))
        run = bench(epoch, args.old, args.consumed, new, args.sample)
        logger.info(
            "  plan (every consumer's slices) %.4f s; %d samples left, %d per rank, %d dropped",
            run["plan_s"],
            run["remaining"],
            run["per_rank"],
            run["dropped"],
        )
        result["runs"].append(run)  # type: ignore[union-attr]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
