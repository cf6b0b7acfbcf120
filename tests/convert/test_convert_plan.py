"""The pure parts of planning: sizes, episode selections, shard plans, task splits."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.convert.plan import (
    EpisodeCost,
    estimate_episode_bytes,
    parse_episodes,
    parse_size,
    plan_shards,
    task_shards,
)
from lerowds.convert.source import load_local
from lerowds.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("512MB", 512 * 10**6),
        ("64KiB", 65536),
        ("1.5GB", 1_500_000_000),
        ("1000", 1000),
        ("2 gib", 2 * 2**30),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MB", "12 parsecs", "-1MB", "0", "1e3"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="size"):
        parse_size(text)


def test_parse_episodes() -> None:
    have = range(200)
    assert parse_episodes("0:100,150", have) == (*range(100), 150)
    assert parse_episodes(" 5 , 3:5, 4", have) == (3, 4, 5)
    assert parse_episodes("198:", have) == (198, 199)
    assert parse_episodes(":2", have) == (0, 1)
    assert parse_episodes(None, [3, 1, 2]) == (1, 2, 3)
    for spec, match in [
        ("0:10,abc", "bad item 'abc'"),
        ("5:3", "bad item '5:3'"),
        ("1,,2", "empty item"),
        ("-1", "bad item '-1'"),
        ("1:2:3", "bad item '1:2:3'"),
        ("195:205", r"names episode\(s\) 200..204 .* 200 episodes: 0..199"),
        ("3:3", "selects no episode"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_episodes(spec, have)


costs_strategy = st.lists(st.integers(1, 5000), min_size=1, max_size=60).map(
    lambda sizes: [EpisodeCost(i, 1 + s % 7, s) for i, s in enumerate(sizes)]
)


@settings(max_examples=200, deadline=None)
@given(costs=costs_strategy, shard_size=st.integers(1, 20_000))
def test_plan_keeps_episodes_whole_in_order_and_near_the_size(
    costs: list[EpisodeCost], shard_size: int
) -> None:
    plan = plan_shards(costs, shard_size)
    assert [s.shard for s in plan] == list(range(len(plan)))
    assert [e for s in plan for e in s.episodes] == [c.episode_index for c in costs]  # each once, in order
    size = {c.episode_index: c.nbytes for c in costs}
    for s in plan:
        assert s.estimated_bytes == sum(size[e] for e in s.episodes)
        assert s.estimated_bytes <= shard_size or len(s.episodes) == 1  # only a lone big episode overflows
    for a, b in itertools.pairwise(plan):
        assert a.estimated_bytes + size[b.episodes[0]] > shard_size  # greedy: no shard closed too early
    assert plan_shards(list(reversed(costs)), shard_size) == plan  # a pure function of the costs


@given(n=st.integers(1, 40), num_tasks=st.integers(1, 9))
def test_task_split_covers_every_shard_once(n: int, num_tasks: int) -> None:
    plan = plan_shards([EpisodeCost(i, 1, 10) for i in range(n)], 10)
    parts = [task_shards(plan, num_tasks, t) for t in range(num_tasks)]
    assert sorted(s.shard for p in parts for s in p) == list(range(n))
    assert all(s.shard % num_tasks == t for t, p in enumerate(parts) for s in p)
    with pytest.raises(ConfigError, match="--task-index"):
        task_shards(plan, num_tasks, num_tasks)


def test_estimates_share_files_by_rows_and_duration(small_root: Path) -> None:
    source = load_local(small_root, "x")
    costs = estimate_episode_bytes(source, [e.episode_index for e in source.episodes])
    total_files = sum(
        f.stat().st_size for d in ("data", "videos") for f in (small_root / d).rglob("*") if f.is_file()
    )
    assert sum(c.nbytes for c in costs) == pytest.approx(total_files + 12 * (4 * 512 + 1024), abs=12)
    assert [c.length for c in costs] == [e.length for e in source.episodes]
