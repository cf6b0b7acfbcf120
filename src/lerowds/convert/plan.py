"""The shard plan: which episodes go into which shard, from metadata and file sizes only.

Pure functions of integers (plus one ``stat`` per source file in ``estimate_episode_bytes``), so every task of a
multi-machine conversion computes the same plan.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lerowds.checks import check_int
from lerowds.convert.source import SourceDataset
from lerowds.errors import ConfigError
from lerowds.format import TAR_BLOCK, parse_size  # noqa: F401 - re-exported for the CLI

DEFAULT_SHARD_SIZE = 512 * 10**6
EPISODE_OVERHEAD = 4 * TAR_BLOCK + 1024  # tar headers and padding, the json member


def parse_episodes(spec: str | None, available: Sequence[int]) -> tuple[int, ...]:
    """The sorted episode indices named by ``spec`` (``0:100,150``; ``a:b`` is half-open; None = all)."""
    have = sorted(set(available))
    if spec is None:
        return tuple(have)
    have_set = set(have)
    wanted: set[int] = set()
    tokens = [t.strip() for t in spec.split(",")]
    for token in tokens:
        if not token:
            raise ConfigError(f"--episodes {spec!r}: empty item (a stray comma?)")
        try:
            if ":" in token:
                lo_s, hi_s = token.split(":")
                lo = int(lo_s) if lo_s.strip() else 0
                hi = int(hi_s) if hi_s.strip() else (have[-1] + 1 if have else 0)
                if lo < 0 or hi < lo:
                    raise ValueError
                span = range(lo, hi)
            else:
                span = range(int(token), int(token) + 1)
                if span.start < 0:
                    raise ValueError
        except ValueError:
            raise ConfigError(
                f"--episodes {spec!r}: bad item {token!r}: expected an episode index or a range a:b (a <= b)"
            ) from None
        unknown = [e for e in span if e not in have_set]
        if unknown:
            raise ConfigError(
                f"--episodes {spec!r}: item {token!r} names episode(s) {_short(unknown)} that the dataset does "
                f"not have (it has {len(have)} episodes: {_short(have)})"
            )
        wanted.update(span)
    if not wanted:
        raise ConfigError(f"--episodes {spec!r} selects no episode")
    return tuple(sorted(wanted))


def _short(values: Sequence[int]) -> str:
    if not values:
        return "none"
    if list(values) == list(range(values[0], values[-1] + 1)) and len(values) > 2:
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values[:8])) + (", ..." if len(values) > 8 else "")


@dataclass(frozen=True, slots=True)
class PlannedShard:
    """One shard of the plan: its number, its episodes (ascending) and its estimated size."""

    shard: int
    episodes: tuple[int, ...]
    num_frames: int
    estimated_bytes: int

    def __post_init__(self) -> None:
        if self.shard < 0 or not self.episodes:
            raise ValueError(
                f"a planned shard needs a number >= 0 and episodes, got {self.shard}, {self.episodes}"
            )
        if list(self.episodes) != sorted(set(self.episodes)):
            raise ValueError(f"shard {self.shard}: episodes must be strictly increasing, got {self.episodes}")

    def to_json(self) -> dict[str, object]:
        return {
            "shard": self.shard,
            "episodes": list(self.episodes),
            "num_frames": self.num_frames,
            "estimated_bytes": self.estimated_bytes,
        }


@dataclass(frozen=True, slots=True)
class EpisodeCost:
    """What the planner knows about an episode: its index, frame count and estimated bytes in a shard."""

    episode_index: int
    length: int
    nbytes: int


def estimate_episode_bytes(source: SourceDataset, episodes: Sequence[int]) -> list[EpisodeCost]:
    """Each episode's share of its data file (by rows) and of its video files (by duration), plus tar overhead."""
    rows: dict[str, int] = defaultdict(int)
    seconds: dict[str, float] = defaultdict(float)
    for ep in source.episodes:  # shares are computed over every episode of a file, selected or not
        rows[ep.data_path] += ep.length
        for _, ref in ep.videos:
            seconds[ref.path] += ref.to_timestamp - ref.from_timestamp
    sizes: dict[str, int] = {}

    def size(rel: str) -> int:
        if rel not in sizes:
            sizes[rel] = source.file_size(rel)
        return sizes[rel]

    costs = []
    for i in episodes:
        ep = source.episode(i)
        est = size(ep.data_path) * ep.length / rows[ep.data_path]
        for _, ref in ep.videos:
            est += size(ref.path) * (ref.to_timestamp - ref.from_timestamp) / seconds[ref.path]
        costs.append(EpisodeCost(i, ep.length, round(est) + EPISODE_OVERHEAD))
    return costs


def plan_shards(costs: Sequence[EpisodeCost], shard_size: int) -> tuple[PlannedShard, ...]:
    """Greedy, in episode order: a shard closes before the episode that would take it past ``shard_size``.

    An episode is never split; an episode larger than ``shard_size`` gets a shard of its own.
    """
    check_int("shard_size (bytes)", shard_size, 1)
    shards: list[PlannedShard] = []
    current: list[EpisodeCost] = []
    current_bytes = 0

    def close() -> None:
        shards.append(
            PlannedShard(
                shard=len(shards),
                episodes=tuple(c.episode_index for c in current),
                num_frames=sum(c.length for c in current),
                estimated_bytes=sum(c.nbytes for c in current),
            )
        )
        current.clear()

    for cost in sorted(costs, key=lambda c: c.episode_index):
        if current and current_bytes + cost.nbytes > shard_size:
            close()
            current_bytes = 0
        current.append(cost)
        current_bytes += cost.nbytes
    if current:
        close()
    return tuple(shards)


def task_shards(plan: Sequence[PlannedShard], num_tasks: int, task_index: int) -> tuple[PlannedShard, ...]:
    """The shards task ``task_index`` of ``num_tasks`` converts: those with ``shard % num_tasks == task_index``."""
    check_int("--num-tasks", num_tasks, 1)
    check_int("--task-index", task_index, 0, num_tasks - 1)
    return tuple(s for s in plan if s.shard % num_tasks == task_index)


def plan_from_json(items: Sequence[Mapping[str, object]]) -> tuple[PlannedShard, ...]:
    return tuple(
        PlannedShard(
            shard=int(d["shard"]),  # type: ignore[arg-type]
            episodes=tuple(int(e) for e in d["episodes"]),  # type: ignore[union-attr]
            num_frames=int(d["num_frames"]),  # type: ignore[arg-type]
            estimated_bytes=int(d["estimated_bytes"]),  # type: ignore[arg-type]
        )
        for d in items
    )
