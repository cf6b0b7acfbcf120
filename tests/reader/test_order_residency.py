"""What a consumer holds (``order.events.Residency``): the real consumer and ``lerowds plan`` count it the same way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.reader.extras.dryrun_memory import consumer_peak, peak_refcounted
from lerowds.reader.order.events import Emit, Load, Release, Residency, residency
from lerowds.reader.order.lifetimes import window_bounds
from lerowds.reader.order.pool import PoolOrder
from lerowds.reader.order.segments import Segment


def test_an_episode_stays_resident_while_any_of_its_segments_is_in_the_pool() -> None:
    held = Residency()
    assert held.admit(5) and not held.admit(5) and held.admit(7)  # 5 twice (remainder="repeat")
    assert len(held) == 2 and 5 in held
    assert not held.evict(5) and 5 in held
    assert held.evict(5) and 5 not in held and len(held) == 1
    with pytest.raises(ValueError, match="episode 5 left the pool but none of its segments is in it"):
        held.evict(5)


def _resident_stream(segments, pool_size, seed, sizes):
    """Replay a consumer's real event stream; the resident bytes after every event, and the emits."""
    order = PoolOrder(segments, pool_size=pool_size, seed=seed, epoch=0, rank=0, worker=0, shuffle=True)
    resident: set[int] = set()
    held_bytes, peak, emits = 0, 0, []
    for ev in residency(order.events()):
        if isinstance(ev, Load):
            assert ev.episode not in resident
            resident.add(ev.episode)
            held_bytes += sizes[ev.episode]
        elif isinstance(ev, Release):
            resident.remove(ev.episode)
            held_bytes -= sizes[ev.episode]
        else:
            assert isinstance(ev, Emit) and ev.episode in resident  # rows are loaded before any emit
            emits.append((ev.episode, ev.frame))
        peak = max(peak, held_bytes)
    assert not resident
    return peak, emits


@settings(max_examples=40, deadline=None)
@given(
    episodes=st.lists(st.integers(0, 5), min_size=1, max_size=14),
    pool_size=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_the_dry_run_bounds_what_the_consumer_holds(episodes, pool_size, seed) -> None:
    """Episodes may repeat in a share (as with remainder="repeat"); each is held and counted once."""
    starts = {}
    segments = []
    for e in episodes:  # consecutive, disjoint frame ranges of each episode
        a = starts.get(e, 0)
        segments.append(Segment(e, a, a + 3))
        starts[e] = a + 3
    sizes = np.asarray([100 + 10 * e for e in range(6)], dtype=np.int64)
    real, emits = _resident_stream(segments, pool_size, seed, sizes)
    assert sorted(emits) == sorted((s.episode, f) for s in segments for f in range(s.start, s.stop))
    rows = np.asarray(episodes, dtype=np.int64)
    plan = consumer_peak(
        rows,
        pool_size=pool_size,
        shuffle=True,
        tabular_sizes=sizes,
        span_sizes=sizes,
        byte_budget=None,
        episode_decoder_bytes=0,
        num_cameras=0,
    )
    assert real <= plan.tabular
    if pool_size >= len(segments):  # the whole share in the pool: both hold every distinct episode at once
        assert real == plan.tabular == int(sizes[np.unique(rows)].sum())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    pool_size=st.integers(1, 8),
    budget=st.one_of(st.none(), st.integers(1, 2000)),
    shuffle=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_without_repeats_the_window_sums_equal_the_refcount(n, pool_size, budget, shuffle, seed) -> None:
    """The numpy path (each episode once in the share) gives what walking the windows through Residency does."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 500, 60)
    rows = rng.permutation(60)[:n]
    kw = {"tabular_sizes": sizes, "span_sizes": sizes, "byte_budget": budget, "num_cameras": 2}
    fast = consumer_peak(rows, pool_size=pool_size, shuffle=shuffle, episode_decoder_bytes=7, **kw)
    lo, hi = window_bounds(n, pool_size=pool_size, sizes=sizes[rows], byte_budget=budget, shuffle=shuffle)
    assert fast == peak_refcounted(rows, lo, hi, sizes[rows], 7, True)
