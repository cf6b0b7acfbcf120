"""The bounded-fetch scheduler (``fetch.run_fetched``) on lists: jobs with the files they read, no network."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lerowds.convert.fetch import RESERVE, SourceFetcher, check_fits, ran, run_fetched
from lerowds.errors import ConfigError


class ListFetcher(SourceFetcher):
    """A SourceFetcher whose downloads and deletions are bookkeeping only; records the most bytes held."""

    def __init__(self, sizes: dict[str, int], limit: int, tmp: Path) -> None:
        super().__init__("org/name", "0" * 40, {r: (n, r) for r, n in sizes.items()}, limit + RESERVE, tmp)
        self.lock = threading.Lock()
        self.max_held = 0

    def fetch(self, rels: Iterable[str]) -> None:
        with self.lock:
            for rel in sorted(set(rels) - self.present):
                self.held[rel] = Path(rel)
                self.present.add(rel)
                self.fetched += 1
                self.max_held = max(self.max_held, self.held_bytes)

    def free(self, rels: Iterable[str]) -> None:
        with self.lock:
            for rel in set(rels) & self.present:
                del self.held[rel]
                self.present.discard(rel)


def _run(needs: Sequence[Sequence[str]], fetcher: ListFetcher, slots: int) -> list[int]:
    """Run the jobs in threads; each checks that its files are present when it starts and when it ends.
    Returns the order ``run_fetched`` submitted them in (the pool's threads may start queued jobs in another
    order: on Python 3.13 they do), after checking that each submitted job ran exactly once."""
    order: list[int] = []
    started: list[int] = []
    gate = threading.Semaphore(0)  # a job ends only once the next has been considered: jobs overlap

    def job(i: int) -> int:
        missing = [r for r in needs[i] if r not in fetcher.present]
        assert not missing, f"job {i} started without {missing}"
        started.append(i)
        gate.acquire(timeout=0.05)
        missing = [r for r in needs[i] if r not in fetcher.present]
        assert not missing, f"job {i}'s files {missing} were freed while it ran"
        return i

    with ThreadPoolExecutor(slots) as pool:

        def submit(i: int) -> Future[object]:
            order.append(i)
            gate.release()
            return pool.submit(job, i)  # type: ignore[return-value]

        run_fetched(needs, fetcher, submit, slots)
    assert sorted(started) == sorted(order), (started, order)
    return order


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 7), min_size=1, max_size=4), min_size=1, max_size=12),
    st.lists(st.integers(1, 50), min_size=8, max_size=8),
    st.integers(1, 3),
    st.integers(0, 60),
)
def test_every_job_runs_once_in_order_with_its_files_within_the_limit(
    jobs: list[list[int]], sizes: list[int], slots: int, extra: int
) -> None:
    needs = [sorted({f"f{k}" for k in job}) for job in jobs]
    size = {f"f{k}": sizes[k] for k in range(8)}
    limit = max(sum(size[r] for r in rels) for rels in needs) + extra
    fetcher = ListFetcher(size, limit, Path("/nonexistent"))
    order = _run(needs, fetcher, slots)
    assert order == list(range(len(needs)))
    assert fetcher.max_held <= limit
    assert fetcher.held == {}  # everything freed after its last use


def test_a_file_kept_for_later_is_freed_when_room_is_needed_and_fetched_again(tmp_path: Path) -> None:
    needs = [["a", "b"], ["c"], ["d"], ["a"]]  # "a" is read again by the last job
    fetcher = ListFetcher({"a": 10, "b": 10, "c": 15, "d": 10}, 25, tmp_path)
    assert _run(needs, fetcher, 1) == [0, 1, 2, 3]
    assert fetcher.fetched == 5 and fetcher.max_held <= 25  # "a" twice


def test_a_job_error_surfaces(tmp_path: Path) -> None:
    fetcher = ListFetcher({"a": 1}, 10, tmp_path)

    def boom(i: int) -> Future[object]:
        return ran(lambda: 1 / 0)

    with pytest.raises(ZeroDivisionError):
        run_fetched([["a"], ["a"]], fetcher, boom, 1)


def test_check_fits_names_the_file_or_the_shard(tmp_path: Path) -> None:
    fetcher = ListFetcher({"big.mp4": 30, "a": 10, "b": 10}, 25, tmp_path)
    with pytest.raises(ConfigError, match=r"big.mp4 alone is 30 bytes .*at least 4126 bytes"):
        check_fits(fetcher, [(0, ["a"])])
    fetcher = ListFetcher({"a": 20, "b": 20}, 25, tmp_path)
    with pytest.raises(ConfigError, match=r"shard 3 reads 2 source files of 40 bytes"):
        check_fits(fetcher, [(0, ["a"]), (3, ["a", "b"])])
    with pytest.raises(ConfigError, match="more than 4096 bytes"):
        SourceFetcher("o/n", "0" * 40, {}, RESERVE, tmp_path)
