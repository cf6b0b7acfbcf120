"""Byte-budgeted pool (pure): the pool's bytes never exceed the budget, and every frame is emitted once."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.reader.order.pool import Admit, Emit, Evict, PoolOrder
from lerowds.reader.order.segments import Segment


def run(segs, sizes, budget, pool_size, shuffle, skip=0):
    order = PoolOrder(
        segs,
        pool_size=pool_size,
        seed=3,
        epoch=1,
        rank=0,
        worker=0,
        shuffle=shuffle,
        sizes=sizes,
        byte_budget=budget,
    )
    order.skip(skip)
    held: dict[int, int] = {}
    emits, peak = [], 0
    for ev in order.events():
        if isinstance(ev, Admit):
            held[ev.index] = sizes[ev.index]
            assert len(held) <= pool_size
            # over budget only when the pool holds a single oversized segment
            assert sum(held.values()) <= budget or len(held) == 1, (held, budget)
            peak = max(peak, sum(held.values()))
        elif isinstance(ev, Evict):
            del held[ev.index]
        elif isinstance(ev, Emit):
            emits.append((ev.episode, ev.frame))
    return emits, peak


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=15),
    size_scale=st.lists(st.integers(1, 50), min_size=15, max_size=15),
    budget=st.integers(1, 120),
    pool_size=st.integers(1, 8),
    shuffle=st.booleans(),
    cut=st.floats(0, 1),
)
def test_budget_respected_exactly_once_and_skip_exact(
    lengths, size_scale, budget, pool_size, shuffle, cut
) -> None:
    segs = [Segment(e, 0, n) for e, n in enumerate(lengths)]
    sizes = size_scale[: len(segs)]
    emits, _ = run(segs, sizes, budget, pool_size, shuffle)
    assert sorted(emits) == sorted((e, f) for e, n in enumerate(lengths) for f in range(n))
    k = int(cut * len(emits))
    tail, _ = run(segs, sizes, budget, pool_size, shuffle, skip=k)
    assert tail == emits[k:]


def test_budget_limits_the_pool_below_its_count() -> None:
    segs = [Segment(e, 0, 5) for e in range(10)]
    sizes = [40] * 10
    _, peak_budget = run(segs, sizes, 100, 8, True)
    _, peak_count = run(segs, sizes, 10**9, 8, True)
    assert peak_budget == 80  # two 40-byte episodes fit in 100 bytes, a third waits for an eviction
    assert peak_count == 8 * 40
