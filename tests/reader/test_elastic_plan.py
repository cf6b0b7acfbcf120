"""Elastic resume as pure functions: an epoch cut under one topology and continued under others.

The old run is modelled as the DataLoader runs it (``dataloader_batch_order``: round-robin over each rank's
workers, ``batch_size`` samples per batch), on the fresh epoch's streams composed from ``order.py``'s
public functions. The samples its first ``n`` batches hold are "consumed"; the continuation must give every
other sample of the epoch once (modulo the remainder rule, checked sample for sample), equal counts on
every rank, and chain again after a second cut.
"""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.errors import ResumeMismatchError
from lerowds.reader.order.pool import Emit, pool_order
from lerowds.reader.order.ranks import consumer_sample_count, rank_plan, worker_segments
from lerowds.reader.resume.batches import dataloader_batch_order, worker_batch_counts
from lerowds.reader.resume.elastic import ElasticEpoch, Leg, Topology, share
from lerowds.reader.resume.state import ResumeState

Sample = tuple[int, int]  # (episode, frame)


def fresh_streams(lengths, *, seed, epoch, pool, world, workers, remainder) -> dict[tuple[int, int], list]:
    """Every consumer's emits in a fresh epoch (what LeRobotWebDataset yields), from order.py's public API."""
    out = {}
    for rank in range(world):
        plan = rank_plan(
            lengths, seed=seed, epoch=epoch, shuffle=True, world_size=world, rank=rank, remainder=remainder
        )
        for w in range(max(workers, 1)):
            segs = worker_segments(plan.segments, num_workers=max(workers, 1), worker=w)
            events = pool_order(
                segs, pool_size=pool, seed=seed, epoch=epoch, rank=rank, worker=w, shuffle=True
            )
            out[rank, w] = [(e.episode, e.frame) for e in events if isinstance(e, Emit)]
    return out


def run_batches(streams: dict[tuple[int, int], list], topo: Topology, batches: int):
    """The samples the trainer took in ``batches`` batches on every rank, and per stream how many."""
    taken, counts = [], {}
    for rank in range(topo.world_size):
        mine = [streams[rank, w] for w in range(topo.streams)]
        order = dataloader_batch_order(
            [len(s) for s in mine], batch_size=topo.batch_size, drop_last=topo.drop_last
        )
        for w in range(topo.streams):
            counts[rank, w] = 0
        for w, j in order[:batches]:
            batch = mine[w][j * topo.batch_size : (j + 1) * topo.batch_size]
            taken += batch
            counts[rank, w] += len(batch)
    return taken, counts


def cycled(seq: list, lo: int, hi: int) -> list:
    return [seq[i % len(seq)] for i in range(lo, hi)]


topologies = st.builds(
    Topology,
    world_size=st.integers(1, 5),
    num_workers=st.integers(0, 4),
    batch_size=st.integers(1, 6),
    drop_last=st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=10),
    topos=st.lists(topologies, min_size=2, max_size=3),
    cuts=st.lists(st.floats(0, 1), min_size=2, max_size=2),
    pool=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 3),
    remainder=st.sampled_from(["drop", "repeat"]),
    again=st.booleans(),
)
def test_every_leg_continues_the_epoch_exactly(
    lengths, topos, cuts, pool, seed, epoch, remainder, again
) -> None:
    if again and len(topos) == 3:
        topos[2] = topos[1]  # resumed on the same setup: the leg goes on (plain exact resume within it)
    total = sum(lengths)
    first = topos[0]
    if first.world_size > total:
        return  # refused by rank_plan (tested elsewhere)
    streams = fresh_streams(
        lengths,
        seed=seed,
        epoch=epoch,
        pool=pool,
        world=first.world_size,
        workers=first.num_workers,
        remainder=remainder,
    )
    whole_epoch = Counter(s for stream in streams.values() for s in stream)

    def first_counts(world: int, workers: int) -> list[int]:
        return [
            consumer_sample_count(total, world_size=world, num_workers=workers, worker=w, remainder=remainder)
            for w in range(workers)
        ]

    fresh = streams

    def open_first(rank: int, worker: int, skip: int):
        return iter(fresh[rank, worker][skip:])

    state: ResumeState | None = None  # what the trainer saves at each cut (the legs are kept by the state)
    batches = 0  # the trainer's counter: every batch of the epoch, across resumes
    seen: Counter = Counter()  # everything the trainer consumed so far, over all legs
    expected_extra: Counter = Counter()  # + repeated, - dropped, by the remainder rule
    ended = False
    base_of = {key: key for key in streams}  # stream -> the stream of the leg's first setup it continues
    for i, (topo, nxt) in enumerate(itertools.pairwise(topos)):
        per_rank = sum(len(streams[0, w]) for w in range(topo.streams))
        assert all(
            sum(len(streams[r, w]) for w in range(topo.streams)) == per_rank for r in range(topo.world_size)
        )  # equal samples per rank in every leg
        counts = [len(streams[0, w]) for w in range(topo.streams)]
        total_batches = sum(worker_batch_counts(counts, batch_size=topo.batch_size, drop_last=topo.drop_last))
        assert all(
            sum(
                worker_batch_counts(
                    [len(streams[r, w]) for w in range(topo.streams)],
                    batch_size=topo.batch_size,
                    drop_last=topo.drop_last,
                )
            )
            == total_batches
            for r in range(topo.world_size)
        )  # equal batches per rank: no DDP hang
        n = int(cuts[i % len(cuts)] * total_batches)
        taken, took = run_batches(streams, topo, n)
        seen += Counter(taken)
        batches += n
        where = {"world_size": topo.world_size, "num_workers": topo.num_workers}
        kept = (
            ()
            if state is None
            else state.legs_for_save(
                epoch=epoch,
                batch_size=topo.batch_size,
                drop_last=topo.drop_last,
                batches_consumed=batches,
                **where,
            )
        )
        state = ResumeState(epoch, batches, topo.batch_size, topo.drop_last, config=where, legs=kept)
        legs = state.all_legs()
        elastic = ElasticEpoch(
            first_counts, legs, world_size=nxt.world_size, num_workers=nxt.num_workers, remainder=remainder
        )
        # the canonical order of what is left: rank-major, then worker (of the leg's first setup, which a
        # resume on the same setup continues), each stream's rest in its order
        rest = [s for key in sorted(streams, key=base_of.__getitem__) for s in streams[key][took[key] :]]
        if n == total_batches:  # the leg finished the epoch (drop_last tails included): nothing continues
            assert elastic.complete
            expected_extra.subtract(Counter(rest))
            ended = True
            break
        assert elastic.current.remaining == len(rest)
        new = {
            (r, w): list(elastic.stream(r, w, open_first))
            for r in range(nxt.world_size)
            for w in range(nxt.streams)
        }
        if (nxt.world_size, nxt.streams) == topo.split:  # continued streams: each the rest of one old stream
            olds = {key: streams[key][took[key] :] for key in streams}
            assert sorted(map(tuple, new.values())) == sorted(map(tuple, olds.values()))
            if nxt.key == topo.key:  # the same leg goes on: keep the order of its first streams
                base_of = {
                    (r, p): min(base_of[r, w] for w in range(topo.streams) if olds[r, w] == got)
                    for (r, p), got in new.items()
                }
            else:
                base_of = {key: key for key in new}
        else:  # the cut: rank shares, then worker shares, of the canonical sequence
            each = len(rest) // nxt.world_size if remainder == "drop" else -(-len(rest) // nxt.world_size)
            for (r, w), got in new.items():
                lo, hi = share(each, nxt.streams, w)
                assert got == cycled(rest, r * each + lo, r * each + hi), (r, w)
            excess = nxt.world_size * each - len(rest)
            dropped = rest[len(rest) + min(excess, 0) :] if excess < 0 else []
            assert elastic.current.dropped == len(dropped) and elastic.current.repeated == max(excess, 0)
            expected_extra.update(Counter(cycled(rest, 0, max(excess, 0))))
            expected_extra.subtract(Counter(dropped))
            base_of = {key: key for key in new}
        assert list(elastic.current.counts) == [len(new[0, w]) for w in range(nxt.streams)]
        assert all(
            [len(new[r, w]) for w in range(nxt.streams)] == list(elastic.current.counts)
            for r in range(nxt.world_size)
        )
        streams = new
    if not ended:
        rest = [s for stream in streams.values() for s in stream]
        seen += Counter(rest)  # the last leg runs to the end of the epoch
    want = whole_epoch.copy()
    want.update(expected_extra)  # Counter.update adds negative counts too
    assert +want == seen and all(v >= 0 for v in want.values())


def test_legs_round_trip_through_the_state_dict() -> None:
    state = ResumeState(
        epoch=2,
        batches_consumed=30,
        batch_size=5,
        config={"world_size": 3, "num_workers": 0},
        legs=(Leg(Topology(2, 4, 8, True), 12), Leg(Topology(4, 2, 3), 7)),
    )
    back = ResumeState.from_dict(state.to_dict())
    assert back == state
    assert back.all_legs()[-1] == Leg(Topology(3, 0, 5, False), 11)
    saved = back.legs_for_save(
        epoch=2, world_size=1, num_workers=1, batch_size=5, drop_last=False, batches_consumed=40
    )
    assert saved == back.all_legs()  # another topology: the loaded counters close a leg
    same = back.legs_for_save(
        epoch=2, world_size=3, num_workers=1, batch_size=5, drop_last=False, batches_consumed=40
    )
    assert same == back.legs  # 0 and 1 workers are the same stream: the same leg goes on
    assert (
        back.legs_for_save(
            epoch=3, world_size=1, num_workers=1, batch_size=5, drop_last=False, batches_consumed=4
        )
        == ()
    )


def test_a_leg_that_consumed_more_than_it_had_is_refused() -> None:
    def counts(world: int, workers: int) -> list[int]:
        return [10] * workers

    with pytest.raises(
        ResumeMismatchError, match=r"batches_consumed=11 but this epoch has 10 batches in leg"
    ):
        ElasticEpoch(counts, [Leg(Topology(2, 2, 2), 11)], world_size=3, num_workers=1, remainder="drop")


def test_a_slice_is_closed_as_soon_as_it_ends() -> None:
    """The old streams share one store: each must be closed at its slice's end, not at garbage collection."""
    closed = []

    def gen(key):
        try:
            yield from range(100)
        finally:
            closed.append(key)

    def open_first(rank: int, worker: int, skip: int):
        it = gen((rank, worker))
        for _ in range(skip):
            next(it)
        return it

    elastic = ElasticEpoch(
        lambda w, k: [20] * k, [Leg(Topology(2, 2, 4), 3)], world_size=1, num_workers=1, remainder="drop"
    )
    it = elastic.stream(0, 0, open_first)
    assert list(it) and closed == [(0, 0), (0, 1), (1, 0), (1, 1)]
