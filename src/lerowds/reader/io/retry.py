"""Retrying a network call: a policy (exponential backoff with jitter, ``Retry-After``), the outcomes a call
can have, and per-process counters that make retries visible."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import urllib3
from urllib3.exceptions import InvalidHeader

from lerowds.checks import check_float, check_int
from lerowds.errors import RemoteError

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry a failing request."""

    attempts: int = 8  # tries in all, the first one included
    backoff_s: float = 0.5  # wait after the first failure; doubles per failure
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 120.0  # longest ``Retry-After`` honoured

    def __post_init__(self) -> None:
        check_int("retry attempts", self.attempts, 1)
        for name in ("backoff_s", "backoff_max_s", "retry_after_max_s"):
            check_float(f"retry {name}", getattr(self, name), 0)

    def delay(self, failures: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` failed attempts: backoff with "equal jitter", or Retry-After."""
        base = min(self.backoff_max_s, self.backoff_s * 2 ** (failures - 1))
        wait = base * (0.5 + 0.5 * rng.random())
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.retry_after_max_s))
        return wait


class Transient(Exception):
    """A failure worth retrying; ``retry_after`` is the server's ``Retry-After`` in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Permanent(Exception):
    """A failure that retrying cannot fix (404, 403, a server without Range support)."""


class Cancelled(Exception):
    """The caller gave up on the request (a new epoch, or the store closed)."""


class SinkError(Exception):
    """Writing downloaded bytes locally failed (disk full?): not a network fault, so never retried."""


def store(write: Callable[[int, memoryview], None], pos: int, data: memoryview) -> None:
    """Hand downloaded bytes to ``write``; a local failure (disk full?) is a ``SinkError``, never retried."""
    try:
        write(pos, data)
    except OSError as e:
        raise SinkError(f"cannot store downloaded bytes: {e}") from e


def check_download(verify: Callable[[], None] | None, counters: Counters) -> None:
    """The one re-download path of every source: all bytes arrived, and a ``ValueError`` from ``verify`` says
    they are wrong; counted, and made ``Transient`` so that the retry loop fetches the range again."""
    if verify is None:
        return
    try:
        verify()
    except ValueError as e:
        counters.add("verify_failures")
        raise Transient(f"corrupt download, fetching it again: {e}") from None


class Counters:
    """Thread-safe named counters of one process (requests, retries, bytes, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


def call_with_retries(
    op: Callable[[], T],
    *,
    policy: RetryPolicy,
    what: str,
    where: str,
    counters: Counters,
    rng: random.Random,
    cancel: threading.Event | None = None,
) -> T:
    """Run ``op`` until it succeeds; ``Transient`` failures are retried, anything else ends it at once."""
    last: Transient | None = None
    for attempt in range(1, policy.attempts + 1):
        if cancel is not None and cancel.is_set():
            raise Cancelled(what)
        try:
            return op()
        except Permanent as e:
            raise RemoteError(f"{what}: {where}: {e} (not retried)") from None
        except Transient as e:
            last = e
        if attempt == policy.attempts:
            break
        wait = policy.delay(attempt, rng, last.retry_after)
        counters.add("retries")
        logger.warning(
            "%s: %s: %s; retry %d of %d in %.2fs", what, where, last, attempt, policy.attempts - 1, wait
        )
        if cancel is not None:
            if cancel.wait(wait):
                raise Cancelled(what)
        else:
            time.sleep(wait)
    raise RemoteError(f"{what}: {where}: failed after {policy.attempts} attempts; last error: {last}")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date, as urllib3 parses it); None when
    absent or unreadable."""
    if not value:
        return None
    try:
        return float(urllib3.Retry().parse_retry_after(value))
    except InvalidHeader:
        return None
