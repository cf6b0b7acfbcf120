"""The vectorized order equals plain reference implementations: the split equals the per-episode loops it
replaced, the pool equals the documented order-version-2 scheme written out frame by frame, and a resume
from any point equals the tail of the uninterrupted stream."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.reader.order.pool import Emit, PoolOrder
from lerowds.reader.order.ranks import episode_order, rank_frame_count, rank_plan, worker_segments
from lerowds.reader.order.segments import Segment, SegmentArray

# ---- the split: the Python loops the vectorized code replaced (lerowds before order version 2) ----------


def _loop_cut(ids, lens, ends, lo, hi):
    if hi <= lo:
        return []
    first = int(np.searchsorted(ends, lo, side="right"))
    last = int(np.searchsorted(ends, hi, side="left"))
    out = []
    for i in range(first, last + 1):
        begin = int(ends[i] - lens[i])
        start, stop = max(lo, begin) - begin, min(hi, int(ends[i])) - begin
        if start < stop:
            out.append(Segment(int(ids[i]), start, stop))
    return out


def loop_rank_plan(lengths, ids, *, seed, epoch, shuffle, world_size, rank, remainder):
    lens, ids = np.asarray(lengths, np.int64), np.asarray(ids, np.int64)
    total = int(lens.sum())
    per_rank = rank_frame_count(total, world_size=world_size, remainder=remainder)
    order = episode_order(lens.size, seed=seed, epoch=epoch, shuffle=shuffle)
    o_ids, o_lens = ids[order], lens[order]
    ends = np.cumsum(o_lens)
    lo, hi = rank * per_rank, (rank + 1) * per_rank
    segments = _loop_cut(o_ids, o_lens, ends, lo, min(hi, total))
    segments += _loop_cut(o_ids, o_lens, ends, max(lo, total) - total, hi - total)
    return segments


def loop_worker_segments(rank_segments, *, num_workers, worker):
    total = sum(s.num_frames for s in rank_segments)
    q, r = divmod(total, num_workers)
    lo = worker * q + min(worker, r)
    hi = lo + q + (worker < r)
    out, begin = [], 0
    for seg in rank_segments:
        end = begin + seg.num_frames
        start, stop = max(lo, begin), min(hi, end)
        if start < stop:
            out.append(Segment(seg.episode, seg.start + start - begin, seg.start + stop - begin))
        begin = end
    return out


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=60),
    world=st.integers(1, 9),
    workers=st.integers(1, 6),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 4),
    shuffle=st.booleans(),
    remainder=st.sampled_from(["drop", "repeat"]),
    stride=st.integers(1, 5),
)
def test_vectorized_split_equals_the_per_episode_loops(
    lengths, world, workers, seed, epoch, shuffle, remainder, stride
) -> None:
    if world > sum(lengths):
        return
    ids = [stride * i + 2 for i in range(len(lengths))]
    kw = {"seed": seed, "epoch": epoch, "shuffle": shuffle, "world_size": world, "remainder": remainder}
    for rank in range(world):
        plan = rank_plan(lengths, ids, rank=rank, **kw)
        want = loop_rank_plan(lengths, ids, rank=rank, **kw)
        assert isinstance(plan.segments, SegmentArray) and list(plan.segments) == want
        for w in range(workers):
            got = worker_segments(plan.segments, num_workers=workers, worker=w)
            assert list(got) == loop_worker_segments(want, num_workers=workers, worker=w)
            assert got == worker_segments(want, num_workers=workers, worker=w)  # lists of Segment too


# ---- the pool: order version 2 written out frame by frame --------------------------------------------

_M64 = (1 << 64) - 1


def _mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def spec_stream(segments, *, pool_size, seed, epoch, rank, worker, sizes=None, budget=None):
    """The emits of order version 2 as the pool module's docstring defines them, in plain Python."""
    m = len(segments)
    lo = []
    for j in range(m):
        first = max(0, j - pool_size + 1)
        while budget is not None and first < j and sum(sizes[first : j + 1]) > budget:
            first += 1
        lo.append(first)
    h = max(j for j in range(m) if lo[j] == 0)
    admit = [0 if j <= h else j for j in range(m)]
    evict = [next((j for j in range(m) if lo[j] > i), m + i - lo[-1]) for i in range(m)]
    if h == m - 1:  # the whole share in one window
        evict = [m] * m
    base = int(
        np.random.SeedSequence([seed, epoch, rank, worker, 0x4C52504B]).generate_state(1, np.uint64)[0]
    )
    keyed, c = [], 0
    for i, s in enumerate(segments):
        for f in range(s.start, s.stop):
            r = _mix64((base + (c + 1) * 0x9E3779B97F4A7C15) & _M64) >> 32
            keyed.append(((admit[i] << 32) + (evict[i] - admit[i]) * r, i, f))
            c += 1
    return [(segments[i].episode, f) for _, i, f in sorted(keyed)]


segments_st = st.lists(st.tuples(st.integers(0, 4), st.integers(1, 30)), min_size=1, max_size=40).map(
    lambda ts: [Segment(3 * i + 1, a, a + n) for i, (a, n) in enumerate(ts)]
)


def emits(events) -> list[tuple[int, int]]:
    return [(e.episode, e.frame) for e in events if isinstance(e, Emit)]


@settings(max_examples=150, deadline=None)
@given(
    segments=segments_st,
    pool_size=st.integers(1, 12),
    seed=st.integers(0, 2**40),
    consumer=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    budget=st.one_of(st.none(), st.integers(1, 200)),
    data=st.data(),
)
def test_pool_is_the_documented_scheme_and_resumes_anywhere(
    segments, pool_size, seed, consumer, budget, data
) -> None:
    epoch, rank, worker = consumer
    sizes = data.draw(st.lists(st.integers(1, 60), min_size=len(segments), max_size=len(segments)))
    kw = {"pool_size": pool_size, "seed": seed, "epoch": epoch, "rank": rank, "worker": worker}
    want = spec_stream(segments, sizes=sizes, budget=budget, **kw)
    budget_kw = {"sizes": sizes, "byte_budget": budget} if budget is not None else {}
    full = PoolOrder(segments, shuffle=True, **kw, **budget_kw)
    assert emits(full.events()) == want
    for k in data.draw(st.lists(st.integers(0, len(want)), min_size=1, max_size=4)):
        state = PoolOrder(segments, shuffle=True, **kw, **budget_kw)
        state.skip(k)
        assert emits(state.events()) == want[k:]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=200),
    pool_size=st.sampled_from([1, 2, 7, 64, 1024]),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_skip_then_events_equals_the_tail_with_the_same_pool(lengths, pool_size, seed, data) -> None:
    segs = SegmentArray(np.arange(len(lengths)), np.zeros(len(lengths), np.int64), np.asarray(lengths))
    kw = {"pool_size": pool_size, "seed": seed, "epoch": 1, "rank": 0, "worker": 2, "shuffle": True}
    full_state = PoolOrder(segs, **kw)
    full = list(full_state.events())
    full_emits = emits(full)
    k = data.draw(st.integers(0, len(full_emits)))
    pool: dict[int, set[int]] = {}
    seen = 0
    for e in full:  # the pool right before the (k+1)-th emit of the uninterrupted stream
        if isinstance(e, Emit):
            if seen == k:
                break
            seen += 1
            pool[e.index].remove(e.frame)
        elif hasattr(e, "frames"):
            pool[e.index] = set(e.frames)
        else:
            del pool[e.index]
    state = PoolOrder(segs, **kw)
    state.skip(k)
    assert set(state.pool) == set(pool)
    assert all(set(state.remaining_frames(i)) == pool[i] for i in pool)
    assert max(state.pool, default=0) - min(state.pool, default=0) < pool_size  # one window
    assert emits(state.events()) == full_emits[k:]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 5000), seed=st.integers(0, 2**32), epoch=st.integers(0, 9))
def test_episode_order_is_the_stable_argsort_of_the_documented_keys(n, seed, epoch) -> None:
    keys = np.random.PCG64(np.random.SeedSequence([seed, epoch, 0x4C524550])).random_raw(n)
    want = np.argsort(keys, kind="stable")
    assert episode_order(n, seed=seed, epoch=epoch, shuffle=True).tolist() == want.tolist()
