"""resume_plan against the model of the DataLoader's round-robin, and against a real torch DataLoader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from lerowds.errors import ConfigError, ResumeMismatchError
from lerowds.reader.resume.batches import ResumePlan, dataloader_batch_order, resume_plan, worker_batch_counts


def round_robin(streams: list[list[int]], batch_size: int, drop_last: bool) -> list[list[int]]:
    """What torch does with K workers: each batches its own stream; take one batch per live worker in turn."""
    batched = [[s[i : i + batch_size] for i in range(0, len(s), batch_size)] for s in streams]
    if drop_last:
        batched = [[b for b in bs if len(b) == batch_size] for bs in batched]
    out, turn = [], 0
    while any(batched):
        if batched[turn]:
            out.append(batched[turn].pop(0))
        turn = (turn + 1) % len(batched)
    return out


def resumed_streams(streams: list[list[int]], plan: ResumePlan) -> list[list[int]]:
    return [streams[src][skip:] for src, skip in (plan.for_worker(p) for p in range(len(streams)))]


@given(
    counts=st.lists(st.integers(0, 20), min_size=1, max_size=5),
    batch_size=st.integers(1, 5),
    drop_last=st.booleans(),
    data=st.data(),
)
def test_plan_continues_the_round_robin(counts, batch_size, drop_last, data) -> None:
    streams = [[1000 * w + i for i in range(c)] for w, c in enumerate(counts)]
    full = round_robin(streams, batch_size, drop_last)
    order = dataloader_batch_order(counts, batch_size=batch_size, drop_last=drop_last)
    assert [streams[w][r * batch_size : (r + 1) * batch_size] for w, r in order] == full
    n = data.draw(st.integers(0, len(full)))
    plan = resume_plan(counts, batch_size=batch_size, batches_consumed=n, drop_last=drop_last)
    assert plan.total_batches == len(full) and plan.epoch_complete == (n == len(full))
    if plan.epoch_complete:
        assert plan.sources == tuple(range(len(counts))) and set(plan.skips) == {0}
    else:
        assert round_robin(resumed_streams(streams, plan), batch_size, drop_last) == full[n:]
        assert all(
            skip % batch_size == 0 or skip == counts[src] for src, skip in zip(plan.sources, plan.skips)
        )


def test_plan_examples_and_errors() -> None:
    # num_workers=0: one stream, skip n * b.
    assert resume_plan([10], batch_size=3, batches_consumed=2) == ResumePlan((0,), (6,), 2, 4)
    # Worker 1 has 1 batch, workers 0 and 2 have 3: order 0 1 2 0 2 0 2; after 4 batches worker 2 is next.
    plan = resume_plan([6, 2, 6], batch_size=2, batches_consumed=4)
    assert (plan.sources, plan.skips) == ((2, 0, 1), (2, 4, 2))
    assert worker_batch_counts([7, 3], batch_size=2, drop_last=True) == [3, 1]
    with pytest.raises(ResumeMismatchError, match="batches_consumed=5 but this epoch has 4 batches"):
        resume_plan([10], batch_size=3, batches_consumed=5)
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        resume_plan([10], batch_size=0, batches_consumed=0)
    with pytest.raises(ConfigError, match="permutation"):
        ResumePlan((0, 0), (0, 0), 0, 1)


# ---- the real DataLoader ------------------------------------------------------------------------------


class _Streams(IterableDataset):
    """Worker w yields 1000*w + i for i < counts[w]; a plan in ``plan_path`` (read per epoch) rotates/skips."""

    def __init__(self, counts: list[int], plan_path: Path) -> None:
        self.counts = counts
        self.plan_path = plan_path

    def __iter__(self):
        info = get_worker_info()
        physical = 0 if info is None else info.id
        source, skip = physical, 0
        if self.plan_path.exists():
            plan = json.loads(self.plan_path.read_text())
            source, skip = plan["sources"][physical], plan["skips"][physical]
        return iter(range(1000 * source + skip, 1000 * source + self.counts[source]))


def _write_plan(path: Path, plan: ResumePlan | None) -> None:
    if plan is None or plan.epoch_complete:
        path.unlink(missing_ok=True)  # next epoch from scratch
    else:
        path.write_text(json.dumps({"sources": plan.sources, "skips": plan.skips}))


def _cut_points(order: list[tuple[int, int]], num_workers: int, sample: bool) -> list[int]:
    """All cuts, or (for fresh workers each time) the first, last and those around a worker running out."""
    total = len(order)
    if not sample or num_workers <= 1:
        return list(range(total + 1))
    last_of = {w: i for i, (w, _) in enumerate(order)}  # index of each worker's last batch
    around = {i + d for i in last_of.values() for d in (-1, 0, 1, 2)}
    return sorted({0, 1, total - 1, total} | {i for i in around if 0 <= i <= total})


CASES = [  # (num_workers, per-worker sample counts, batch_size, drop_last)
    (0, [7], 3, False),
    (0, [7], 3, True),
    (1, [7], 2, False),
    (2, [7, 3], 2, False),
    (2, [7, 3], 2, True),
    (2, [4, 4], 2, False),
    (3, [5, 0, 9], 2, False),
    (3, [7, 3, 11], 3, False),
    (3, [7, 3, 11], 3, True),
    (3, [1, 1, 1], 4, False),
]


@pytest.mark.filterwarnings("ignore:This DataLoader will create:UserWarning")  # 3 workers on a 2-CPU box
@pytest.mark.parametrize("persistent", [True, False], ids=["persistent", "fresh"])
@pytest.mark.parametrize(("num_workers", "counts", "batch_size", "drop_last"), CASES)
def test_resume_in_a_real_dataloader(
    tmp_path, num_workers, counts, batch_size, drop_last, persistent
) -> None:
    if num_workers == 0 and not persistent:
        pytest.skip("persistent_workers needs num_workers > 0; the num_workers=0 case runs once")
    plan_path = tmp_path / "plan.json"
    loader = DataLoader(
        _Streams(counts, plan_path),
        batch_size=batch_size,
        num_workers=num_workers,
        drop_last=drop_last,
        persistent_workers=persistent and num_workers > 0,
    )
    full = [b.tolist() for b in loader]
    streams = [[1000 * w + i for i in range(c)] for w, c in enumerate(counts)]
    assert full == round_robin(streams, batch_size, drop_last)  # the model of torch's order holds
    order = dataloader_batch_order(counts, batch_size=batch_size, drop_last=drop_last)
    assert len(order) == len(full)
    # A second epoch of the same loader starts again at worker 0, also after breaking off mid-epoch.
    for i, _ in enumerate(loader):
        if i == len(full) // 2:
            break
    assert [b.tolist() for b in loader] == full
    for n in _cut_points(order, num_workers, sample=not persistent):
        plan = resume_plan(counts, batch_size=batch_size, batches_consumed=n, drop_last=drop_last)
        _write_plan(plan_path, plan)
        resumed = [b.tolist() for b in loader]
        if plan.epoch_complete:
            assert resumed == full, "a complete epoch resumes as the next epoch from its start"
        else:
            assert full[:n] + resumed == full, f"cut after {n} batches, plan {plan}"
    _write_plan(plan_path, None)
