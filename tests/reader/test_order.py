"""Order is pure math: split covers every frame once, the pool emits a permutation, skip = tail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from itertools import islice

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.errors import ConfigError
from lerowds.reader.order import draws as draws_module
from lerowds.reader.order import pool
from lerowds.reader.order.draws import UniformDraws
from lerowds.reader.order.pool import Admit, Emit, Evict, PoolOrder, pool_order
from lerowds.reader.order.ranks import (
    consumer_sample_count,
    episode_order,
    rank_frame_count,
    rank_plan,
    worker_segments,
)
from lerowds.reader.order.segments import Segment, SegmentArray

lengths_st = st.lists(st.integers(1, 12), min_size=1, max_size=12)
seeds_st = st.integers(0, 2**32)


def frames(segments: list[Segment]) -> list[tuple[int, int]]:
    return [(s.episode, f) for s in segments for f in range(s.start, s.stop)]


def sequence(lengths, ids, *, seed, epoch, shuffle) -> list[tuple[int, int]]:
    """The epoch's global frame sequence, built the slow obvious way."""
    perm = episode_order(len(lengths), seed=seed, epoch=epoch, shuffle=shuffle)
    return [(ids[i], f) for i in perm for f in range(lengths[i])]


def emits(events) -> list[tuple[int, int]]:
    return [(e.episode, e.frame) for e in events if isinstance(e, Emit)]


# ---- episode order ------------------------------------------------------------------------------------


def test_episode_order_is_pinned_and_depends_on_seed_and_epoch() -> None:
    # Golden values: a change here changes every user's order (PCG64 raw stream + stable argsort).
    assert episode_order(10, seed=0, epoch=0, shuffle=True).tolist() == [6, 3, 7, 2, 0, 5, 4, 9, 1, 8]
    assert episode_order(10, seed=0, epoch=1, shuffle=True).tolist() == [0, 7, 6, 1, 8, 3, 2, 9, 4, 5]
    assert episode_order(10, seed=0, epoch=0, shuffle=False).tolist() == list(range(10))
    by_seed = {tuple(episode_order(8, seed=s, epoch=0, shuffle=True)) for s in range(20)}
    by_epoch = {tuple(episode_order(8, seed=0, epoch=e, shuffle=True)) for e in range(20)}
    assert len(by_seed) > 1 and len(by_epoch) > 1
    assert episode_order(0, seed=1, epoch=2, shuffle=True).tolist() == []


@given(n=st.integers(0, 300), seed=seeds_st, epoch=st.integers(0, 1000))
def test_episode_order_is_a_permutation(n: int, seed: int, epoch: int) -> None:
    perm = episode_order(n, seed=seed, epoch=epoch, shuffle=True)
    assert sorted(perm.tolist()) == list(range(n))
    assert perm.tolist() == episode_order(n, seed=seed, epoch=epoch, shuffle=True).tolist()


def test_order_is_the_same_in_other_processes() -> None:
    code = (
        "from lerowds.reader.order import episode_order, pool_order, Segment, Emit\n"
        "p = episode_order(50, seed=7, epoch=3, shuffle=True).tolist()\n"
        "e = [(x.episode, x.frame) for x in pool_order([Segment(i, 0, 5) for i in range(9)], pool_size=3,"
        " seed=7, epoch=3, rank=1, worker=2, shuffle=True) if isinstance(x, Emit)]\n"
        "print(repr((p, e)))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(h)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for h in (1, 2)
    }
    assert len(outs) == 1
    segs = [Segment(i, 0, 5) for i in range(9)]
    here = emits(pool_order(segs, pool_size=3, seed=7, epoch=3, rank=1, worker=2, shuffle=True))
    assert outs.pop().strip() == repr((episode_order(50, seed=7, epoch=3, shuffle=True).tolist(), here))


# ---- rank and worker split ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=12),
    world=st.integers(1, 6),
    seed=seeds_st,
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
    remainder=st.sampled_from(["drop", "repeat"]),
)
def test_ranks_split_the_sequence(lengths, world, seed, epoch, shuffle, remainder) -> None:
    total = sum(lengths)
    ids = [3 * i + 1 for i in range(len(lengths))]  # a subset of the dataset's episode indices
    kw = {"seed": seed, "epoch": epoch, "shuffle": shuffle, "world_size": world, "remainder": remainder}
    if world > total:
        with pytest.raises(ConfigError, match=f"world_size={world}.*only {total} frames"):
            rank_plan(lengths, ids, rank=0, **kw)
        return
    plans = [rank_plan(lengths, ids, rank=r, **kw) for r in range(world)]
    per_rank = rank_frame_count(total, world_size=world, remainder=remainder)
    seq = sequence(lengths, ids, seed=seed, epoch=epoch, shuffle=shuffle)
    owned = [frames(list(p.segments)) for p in plans]
    assert all(p.num_frames == per_rank == len(o) for p, o in zip(plans, owned))
    everything = [f for o in owned for f in o]
    if remainder == "drop":
        assert plans[0].dropped == total % world and plans[0].repeated == 0
        assert everything == seq[: total - plans[0].dropped]  # disjoint, contiguous, tail dropped
    else:
        assert plans[0].repeated == world * per_rank - total <= world - 1 and plans[0].dropped == 0
        assert everything == seq + seq[: plans[0].repeated]  # all once, the first frames again
        assert all(len(set(o)) == len(o) for o in owned)
    for p in plans:  # segments are well-formed and inside their episode
        assert all(0 <= s.start < s.stop <= lengths[ids.index(s.episode)] for s in p.segments)


@settings(max_examples=200, deadline=None)
@given(lengths=lengths_st, world=st.integers(1, 4), workers=st.integers(1, 7), seed=seeds_st)
def test_workers_split_the_rank(lengths, world, workers, seed) -> None:
    total = sum(lengths)
    if world > total:
        return
    for rank in range(world):
        plan = rank_plan(lengths, seed=seed, epoch=1, shuffle=True, world_size=world, rank=rank)
        parts = [worker_segments(plan.segments, num_workers=workers, worker=w) for w in range(workers)]
        assert [f for p in parts for f in frames(p)] == frames(list(plan.segments))
        counts = [len(frames(p)) for p in parts]
        assert max(counts) - min(counts) <= 1
        assert counts == [
            consumer_sample_count(total, world_size=world, num_workers=workers, worker=w)
            for w in range(workers)
        ]


def test_worker_may_get_nothing_and_bad_config_names_values() -> None:
    plan = rank_plan([1, 1], seed=0, epoch=0, shuffle=False, world_size=1, rank=0)
    assert [len(worker_segments(plan.segments, num_workers=3, worker=w)) for w in range(3)] == [1, 1, 0]
    with pytest.raises(ConfigError, match="world_size=3 ranks but only 2 frames"):
        rank_plan([1, 1], seed=0, epoch=0, shuffle=False, world_size=3, rank=0)
    with pytest.raises(ConfigError, match="rank must be in"):
        rank_plan([1, 1], seed=0, epoch=0, shuffle=False, world_size=2, rank=2)
    with pytest.raises(ConfigError, match="remainder"):
        rank_plan([1, 1], seed=0, epoch=0, shuffle=False, world_size=1, rank=0, remainder="pad")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="start=3 stop=3"):
        Segment(0, 3, 3)
    with pytest.raises(ConfigError, match="seed must be an integer >= 0, got -1"):
        episode_order(3, seed=-1, epoch=0, shuffle=True)


def test_dropped_frames_change_with_the_epoch() -> None:
    lengths = [3, 5, 2, 7, 4]  # 21 frames, 4 ranks: one frame dropped, the end of that epoch's last episode
    last = set()
    for epoch in range(10):
        plans = [
            rank_plan(lengths, seed=1, epoch=epoch, shuffle=True, world_size=4, rank=r) for r in range(4)
        ]
        assert plans[0].dropped == 1
        missing = set(sequence(lengths, list(range(5)), seed=1, epoch=epoch, shuffle=True)) - {
            f for p in plans for f in frames(list(p.segments))
        }
        last |= missing
    assert len(last) > 1


# ---- pool order ---------------------------------------------------------------------------------------


def check_events(events, segments, pool_size, shuffle=True) -> list[tuple[int, int]]:
    """Replay the events; check pool bookkeeping; return the emitted (episode, frame)s.

    The pool is always inside a window of ``pool_size`` consecutive segments, admitted in list order;
    without shuffle it is refilled as soon as a segment drains."""
    pool: dict[int, set[int]] = {}
    admitted = []
    out = []
    for e in events:
        if isinstance(e, Admit):
            assert e.index not in pool and e.segment == segments[e.index]
            pool[e.index] = set(e.frames)
            admitted.append(e.index)
            assert len(pool) <= pool_size
        elif isinstance(e, Emit):
            assert e.episode == segments[e.index].episode
            assert max(pool) - min(pool) < pool_size and e.index in pool
            if not shuffle:
                evicted = len(admitted) - len(pool)
                assert len(pool) == min(pool_size, len(segments) - evicted)
            pool[e.index].remove(e.frame)
            out.append((e.episode, e.frame))
        else:
            assert isinstance(e, Evict) and pool.pop(e.index) == set()
    assert pool == {} and admitted == list(range(len(segments)))
    return out


segments_st = st.lists(
    st.tuples(st.integers(0, 5), st.integers(1, 9)).map(lambda t: Segment(7, t[0], t[0] + t[1])),
    min_size=0,
    max_size=10,
).map(lambda segs: [Segment(i, s.start, s.stop) for i, s in enumerate(segs)])


@settings(max_examples=300, deadline=None)
@given(segments=segments_st, pool_size=st.integers(1, 5), seed=seeds_st, shuffle=st.booleans())
def test_pool_emits_each_owned_frame_once(segments, pool_size, seed, shuffle) -> None:
    events = list(
        pool_order(segments, pool_size=pool_size, seed=seed, epoch=2, rank=1, worker=0, shuffle=shuffle)
    )
    out = check_events(events, segments, pool_size, shuffle)
    assert sorted(out) == sorted(frames(segments))
    if not shuffle:
        assert out == frames(segments)


@settings(max_examples=300, deadline=None)
@given(
    segments=segments_st, pool_size=st.integers(1, 5), seed=seeds_st, shuffle=st.booleans(), data=st.data()
)
def test_skip_is_the_tail_of_the_unskipped_stream(segments, pool_size, seed, shuffle, data) -> None:
    kw = {"pool_size": pool_size, "seed": seed, "epoch": 0, "rank": 2, "worker": 3, "shuffle": shuffle}
    full = list(pool_order(segments, **kw))
    total = sum(s.num_frames for s in segments)
    k = data.draw(st.integers(0, total))
    tail = list(pool_order(segments, skip=k, **kw))
    assert emits(tail) == emits(full)[k:]
    # The skipped stream starts with the pool the full stream holds right before its (k+1)-th emit.
    pool: dict[int, set[int]] = {}
    seen = 0
    for e in full:
        if isinstance(e, Emit):
            if seen == k:
                break
            seen += 1
            pool[e.index].remove(e.frame)
        elif isinstance(e, Admit):
            pool[e.index] = set(e.frames)
        else:
            del pool[e.index]
    head = [e for e in tail if isinstance(e, Admit)][: len(pool)]
    assert {e.index: set(e.frames) for e in head} == pool
    assert all(list(e.frames) == sorted(e.frames) for e in head)
    if k == 0:
        assert tail == full


def test_skip_past_the_end_and_bad_pool_size_raise() -> None:
    segs = [Segment(0, 0, 3)]
    with pytest.raises(ConfigError, match="cannot skip 4 emits: this consumer has 3 frames left"):
        pool_order(segs, pool_size=1, seed=0, epoch=0, rank=0, worker=0, shuffle=True, skip=4)
    with pytest.raises(ConfigError, match="pool_size must be an integer >= 1, got 0"):
        pool_order(segs, pool_size=0, seed=0, epoch=0, rank=0, worker=0, shuffle=True)


def test_pool_order_does_not_depend_on_chunk_size(monkeypatch) -> None:
    segs = [Segment(i, 0, 11) for i in range(40)]
    kw = {"pool_size": 4, "seed": 5, "epoch": 1, "rank": 0, "worker": 1, "shuffle": True}
    reference = emits(pool_order(segs, **kw))
    skipped = emits(pool_order(segs, skip=123, **kw))
    for frames_per_chunk in (1, 7, 1000):
        monkeypatch.setattr(pool, "_CHUNK_FRAMES", frames_per_chunk)
        assert emits(pool_order(segs, **kw)) == reference
        assert emits(pool_order(segs, skip=123, **kw)) == skipped == reference[123:]


def test_uniform_draws_are_one_stream_however_taken(monkeypatch) -> None:
    one_by_one = [UniformDraws(4, 2, 1, 0).next() for _ in range(1)]
    draws = UniformDraws(4, 2, 1, 0)
    singles = [draws.next() for _ in range(5000)]
    assert singles[:1] == one_by_one and all(0.0 <= u < 1.0 for u in singles)
    monkeypatch.setattr(draws_module, "_BLOCK", 3)  # the buffering, not the stream
    chunked, draws = [], UniformDraws(4, 2, 1, 0)
    while len(chunked) < 5000:
        chunked += draws.take(min(2, 5000 - len(chunked)))
    assert chunked == singles
    assert UniformDraws(4, 2, 1, 1).next() != singles[0]


def test_pool_order_is_pinned_and_depends_on_consumer() -> None:
    # Golden values of order version 2, the pool's order unchanged in version 3 (which changed run mode's only;
    # a change here changes every user's order: bump ORDER_VERSION).
    segs = [Segment(3, 0, 3), Segment(7, 2, 4)]
    kw = {"pool_size": 2, "seed": 0, "epoch": 0, "shuffle": True}
    assert emits(pool_order(segs, rank=0, worker=0, **kw)) == [(7, 2), (3, 2), (7, 3), (3, 0), (3, 1)]
    assert pool.ORDER_VERSION == 3
    segs = [Segment(i, 0, 4) for i in range(6)]
    orders = {
        tuple(emits(pool_order(segs, pool_size=3, seed=s, epoch=e, rank=r, worker=w, shuffle=True)))
        for s in range(3)
        for e in range(3)
        for r in range(2)
        for w in range(2)
    }
    assert len(orders) == 36  # every (seed, epoch, rank, worker) gives its own order here


def test_pool_spreads_each_segment_over_its_lifetime() -> None:
    # Deterministic over fixed seeds (not luck). Two 1-frame segments in a pool of 2: the whole share, a
    # uniform shuffle. Three in a pool of 2: segment 0 lives [0, 2), segment 1 [0, 3) (the last window
    # leaves one per unit), segment 2 [2, 4): segment 0 comes first with probability 1 - 1/3 = 2/3.
    def firsts(n: int) -> Counter:
        segs = [Segment(i, 0, 1) for i in range(n)]
        kw = {"pool_size": 2, "epoch": 0, "rank": 0, "worker": 0, "shuffle": True}
        return Counter(emits(pool_order(segs, seed=s, **kw))[0][0] for s in range(600))

    two, three = firsts(2), firsts(3)
    assert 250 < two[0] < 350
    assert 360 < three[0] < 440 and three[0] + three[1] == 600


def test_skip_far_into_a_large_consumer_equals_the_uninterrupted_run() -> None:
    lengths = [100 + (37 * i) % 600 for i in range(1000)]  # ~400,000 frames
    segs = SegmentArray(np.arange(1000), np.zeros(1000, np.int64), np.asarray(lengths))
    kw = {"pool_size": 128, "seed": 3, "epoch": 2, "rank": 1, "worker": 5, "shuffle": True}
    full = PoolOrder(segs, **kw)
    stream = np.concatenate([np.stack(c, axis=1) for c in full.chunks()])
    assert stream.shape == (sum(lengths), 2)
    assert np.unique(stream[:, 0] * 1000 + stream[:, 1]).size == sum(lengths)  # each frame once
    for k in (0, 1, 217_000, sum(lengths) - 300, sum(lengths) - 1):
        state = PoolOrder(segs, **kw)
        state.skip(k)
        assert state.emitted == k
        assert sum(len(state.remaining_frames(i)) for i in state.pool) <= sum(lengths) - k
        tail = list(islice(((e.index, e.frame) for e in state.events() if isinstance(e, Emit)), 2000))
        assert tail == [tuple(x) for x in stream[k : k + 2000].tolist()]
