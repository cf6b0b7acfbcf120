"""Prefetch-on-admit: one consumer's background downloads of the episodes it will admit, in that order.

A planner thread walks the plan (the consumer's admission order), at most ``lookahead`` episodes ahead of
the one the consumer last asked for and within the consumer's share of the cache limit, and claims each
episode in the machine-wide cache: a finished file (maybe another worker's download) is pinned at once;
otherwise room is reserved and a download thread fetches it. The planner waits while another process
downloads the same episode, and gives up with an error after ``wait_timeout_s``, or at once when the
consumer's own pool cannot fit in its share.
Threads start in the process that iterates; nothing here is pickled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lerowds.checks import check_float, check_int
from lerowds.errors import ConfigError, RemoteError
from lerowds.reader.io.cache import Busy, EpisodeCache, Pin, Reservation
from lerowds.reader.io.integrity import Span
from lerowds.reader.io.retry import Cancelled, Counters

logger = logging.getLogger(__name__)

Fetch = Callable[[Span, Reservation, threading.Event], None]  # download and verify into the reservation


@dataclass(frozen=True, slots=True, kw_only=True)
class PrefetchOptions:
    """How far and how wide each consumer downloads ahead."""

    threads: int = 4  # concurrent downloads per consumer
    lookahead: int = 32  # episodes claimed ahead of the one the consumer admits
    wait_timeout_s: float = 600.0  # longest wait for one episode (room in the cache, another's download)
    poll_s: float = 0.05

    def __post_init__(self) -> None:
        check_int("prefetch threads", self.threads, 1)
        check_int("prefetch lookahead", self.lookahead, 0)
        check_float("wait_timeout_s", self.wait_timeout_s, above=0)
        check_float("poll_s", self.poll_s, above=0)


def quota_message(quota: int, shares: int, held: int, span: Span) -> str:
    return (
        f"cache_limit is too small: {quota * shares} bytes shared by {shares} consumer(s) on this machine "
        f"give each {quota}; this consumer's pool already holds {held} bytes and {span.describe()} needs "
        f"{span.size} more: raise cache_limit, or lower episode_pool_size (or pool_byte_budget) or "
        "num_workers"
    )


def claim_blocking(
    cache: EpisodeCache,
    span: Span,
    *,
    cancel: threading.Event,
    options: PrefetchOptions,
    counters: Counters,
) -> Pin | Reservation | None:
    """Pin ``span``'s episode or reserve room to fetch it, waiting while another process downloads it or
    the machine's cache is full (other jobs, stale files); None if cancelled."""
    deadline = time.monotonic() + options.wait_timeout_s
    waited = False
    while not cancel.is_set():
        claim = cache.claim(span.episode, span.size)
        if isinstance(claim, (Pin, Reservation)):
            return claim
        if not waited:
            waited = True
            counters.add("waits")
            logger.debug("%s: waiting (%s)", span.describe(), claim)
        if time.monotonic() > deadline:
            if isinstance(claim, Busy):
                why = f"another process's download of it ({claim.path}) to finish"
            else:
                why = (
                    f"room in the cache {cache.root} ({claim.used} of {claim.limit} bytes in use); is "
                    "another job using the same cache_dir? Give each job its own, or raise cache_limit"
                )
            raise RemoteError(f"{span.describe()}: waited {options.wait_timeout_s:g}s for {why}")
        cancel.wait(options.poll_s)
    return None


class _Slot:
    __slots__ = ("error", "event", "pin")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.pin: Pin | None = None
        self.error: BaseException | None = None


class Prefetcher:
    """Downloads of one plan, ahead of the consumer. ``take(row)`` hands over each episode's pin in order."""

    def __init__(
        self,
        spans: Sequence[Span],
        *,
        cache: EpisodeCache,
        fetch: Fetch,
        options: PrefetchOptions,
        counters: Counters,
        held_bytes: Callable[[], int],
        quota: int,
        shares: int = 1,
        on_done: Callable[[], None] = lambda: None,
    ) -> None:
        self._spans = tuple(spans)
        self._cache, self._fetch, self._options = cache, fetch, options
        self._counters, self._held_bytes, self._on_done = counters, held_bytes, on_done
        self._quota, self._shares = quota, shares
        self._slots = [_Slot() for _ in self._spans]
        self._positions: dict[int, deque[int]] = {}
        for pos, span in enumerate(self._spans):
            self._positions.setdefault(span.row, deque()).append(pos)
        self._cond = threading.Condition()
        self._wanted = -1  # the furthest position the consumer asked for
        self._waiting = -1  # the position the consumer is blocked on, or -1
        self._inflight: dict[int, Reservation] = {}
        self._cancel = threading.Event()
        self._failure: BaseException | None = None  # the first episode that failed for good
        self._jobs: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._free = threading.Semaphore(options.threads)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._plan, name="lerowds-prefetch", daemon=True)]
        self._threads += [
            threading.Thread(target=self._download, name=f"lerowds-download-{i}", daemon=True)
            for i in range(min(self._options.threads, len(self._spans)))
        ]
        for t in self._threads:
            t.start()

    # -------------------------------------------------------------------------------------- consumer side
    def take(self, row: int) -> Pin | None:
        """Block until the next planned use of ``row`` has arrived; None if ``row`` is not (or no longer)
        planned, so the caller fetches it itself."""
        with self._cond:
            q = self._positions.get(row)
            if not q:
                return None
            pos = q.popleft()
            self._wanted = max(self._wanted, pos)
            self._waiting = pos
            self._cond.notify_all()
        slot = self._slots[pos]
        t0 = time.monotonic()
        if not slot.event.is_set():  # the consumer stalls: prefetch did not stay ahead
            self._counters.add("stalls")
        try:
            # The deadline is fixed when the wait starts: a download in flight does not extend it (a server
            # that trickles bytes just under the read timeout would otherwise hold the consumer forever).
            if not slot.event.wait(self._options.wait_timeout_s):
                with self._cond:
                    state = "is still downloading" if pos in self._inflight else "has not started downloading"
                raise RemoteError(
                    f"{self._spans[pos].describe()}: not downloaded after {self._options.wait_timeout_s:g}s "
                    f"(LEROWDS_WAIT_TIMEOUT); it {state}: the server is too slow or the cache is full "
                    "(raise LEROWDS_WAIT_TIMEOUT, RemoteOptions.wait_timeout_s, for very large episodes)"
                )
        finally:
            with self._cond:
                self._waiting = -1
            self._counters.add("stall_ms", int((time.monotonic() - t0) * 1000))
        with self._cond:
            if slot.error is not None:
                raise slot.error
            pin, slot.pin = slot.pin, None
            if pin is None and self._failure is not None:  # cancelled because a later episode failed
                raise self._failure
        return pin  # None when cancelled

    def pinned_bytes(self) -> int:
        """Bytes this plan holds in the cache that the consumer has not taken yet (arrived or in flight)."""
        with self._cond:
            arrived = sum(s.pin.size for s in self._slots if s.pin is not None)
            return arrived + sum(r.size for r in self._inflight.values())

    # -------------------------------------------------------------------------------------- threads
    def notify(self) -> None:
        """The consumer released an episode: a planner waiting for quota may go on."""
        with self._cond:
            self._cond.notify_all()

    def _wait_quota(self, pos: int, span: Span) -> bool:
        """Wait until this consumer's share of the cache has room for ``span``; False if cancelled.

        The limit is split evenly between the machine's consumers, so one consumer's lookahead can never
        take the room another needs for its pool. Waiting cannot help when the consumer is blocked on
        ``pos`` itself (its pool cannot shrink), so that is an error at once.
        """
        while not self._cancel.is_set():
            held = self._held_bytes()
            if held + self.pinned_bytes() + span.size <= self._quota:
                return True
            with self._cond:
                if self._waiting == pos:
                    raise ConfigError(quota_message(self._quota, self._shares, held, span))
                self._cond.wait(self._options.poll_s)
        return False

    def _plan(self) -> None:
        pos = 0
        try:
            for pos, span in enumerate(self._spans):
                with self._cond:
                    while not self._cancel.is_set() and pos > self._wanted + self._options.lookahead:
                        self._cond.wait(0.5)
                while not self._free.acquire(timeout=0.25):
                    if self._cancel.is_set():
                        return
                if not self._wait_quota(pos, span):
                    self._free.release()
                    return
                claim = None
                try:
                    claim = claim_blocking(
                        self._cache,
                        span,
                        cancel=self._cancel,
                        options=self._options,
                        counters=self._counters,
                    )
                finally:
                    if not isinstance(claim, Reservation):
                        self._free.release()
                if claim is None:
                    return
                if isinstance(claim, Pin):
                    self._counters.add("reused")
                    self._arrive(pos, claim)
                else:
                    with self._cond:
                        self._inflight[pos] = claim
                    self._jobs.put(pos)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, who raises it
            self._fail(pos, e)
        finally:
            for _ in self._threads[1:]:
                self._jobs.put(None)

    def _download(self) -> None:
        while (pos := self._jobs.get()) is not None:
            with self._cond:
                res = self._inflight[pos]
            try:
                self._fetch(self._spans[pos], res, self._cancel)
                pin = self._cache.commit(res)
            except Cancelled:
                self._cache.abort(res)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer, who raises it
                self._cache.abort(res)
                self._fail(pos, e)
            else:
                self._counters.add("downloaded")
                self._arrive(pos, pin)
            finally:
                with self._cond:
                    self._inflight.pop(pos, None)
                self._free.release()
                self._on_done()

    def _arrive(self, pos: int, pin: Pin) -> None:
        with self._cond:
            slot = self._slots[pos]
            if not self._cancel.is_set():
                slot.pin = pin
                slot.event.set()
                return
            slot.event.set()
        self._cache.unpin(pin)

    def _fail(self, pos: int, error: BaseException) -> None:
        """Episode ``pos`` failed for good: every download is cancelled, and the consumer raises ``error``
        at once, also while it waits for an earlier episode whose download the failure cancelled (it
        would otherwise wait for a slot nobody signals, then blame that healthy episode)."""
        self._cancel.set()
        with self._cond:
            if self._failure is None:
                self._failure = error
            self._slots[pos].error = error
            for slot in self._slots:
                slot.event.set()
            self._cond.notify_all()

    def stop(self, join_s: float = 1.0) -> None:
        """Cancel the plan and unpin what the consumer has not taken (a new epoch, or close)."""
        self._cancel.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + join_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            pins = [s.pin for s in self._slots if s.pin is not None]
            for s in self._slots:
                s.pin = None
                s.event.set()
            stuck = list(self._inflight.values())
        for pin in pins:
            self._cache.unpin(pin)
        for res in stuck:  # a download still winding down (a loaded machine, a blocked read): its partial
            Path(res.path).unlink(missing_ok=True)  # file goes now; the thread closes its descriptor
