"""A small ranged HTTP(S) client for remote datasets: timeouts on every call, retries, ranged resume.

Retries use exponential backoff with jitter on connection errors, timeouts, HTTP 408/429 and 5xx, and honour
``Retry-After``. A body shorter than asked (a dropped connection, a truncated range) is resumed from where it
stopped; a body that fails verification is fetched again; a file whose ETag changes is fetched from the
start. Connections, proxies, TLS and redirects are urllib3's (``transport.py``), per process, never pickled.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

import urllib3

from lerowds.checks import check_float, check_int
from lerowds.reader.io.retry import (
    Cancelled,
    Counters,
    Permanent,
    RetryPolicy,
    Transient,
    call_with_retries,
    check_download,
    parse_retry_after,
    store,
)
from lerowds.reader.io.transport import Transport

__all__ = ["Cancelled", "Counters", "HttpClient", "HttpOptions", "Permanent", "RetryPolicy", "Transient"]

T = TypeVar("T")
Writer = Callable[[int, memoryview], None]  # (position inside the range, bytes)
_BODY_ERRORS = (OSError, urllib3.exceptions.HTTPError)  # a body cut short: reset, timeout, incomplete read


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOptions:
    """Timeouts and retries of every network call."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0  # longest silence while waiting for headers or body bytes
    header_timeout_s: float = 120.0  # longest wait from a request's start to its last header byte
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    redirect_ttl_s: float = 300.0  # reuse a redirect target (e.g. a signed CDN URL) this long
    chunk_bytes: int = 1 << 20
    # a body that arrives slower than this (bytes/s, averaged over ``rate_window_s``) is cut and retried
    # (resumed where it stopped); 0 turns the check off
    min_rate_bps: float = 1024.0
    rate_window_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("connect_timeout_s", "read_timeout_s", "header_timeout_s", "rate_window_s"):
            check_float(name, getattr(self, name), above=0)
        check_float("min_rate_bps (0: no minimum)", self.min_rate_bps, 0)
        check_int("chunk_bytes", self.chunk_bytes, 1)


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port


def redirect_headers(headers: Mapping[str, str], source: str, target: str) -> dict[str, str]:
    """Headers to send to a redirect target: credentials never leave the origin that was asked."""
    if _origin(source) == _origin(target):
        return dict(headers)
    return {k: v for k, v in headers.items() if k.lower() not in ("authorization", "cookie")}


def _status_text(resp: urllib3.BaseHTTPResponse) -> str:
    return f"HTTP {resp.status} {resp.reason or ''}".rstrip()


class RateGuard:
    """Cut a body that arrives slower than ``min_rate`` bytes/s, averaged over each ``window_s`` of it.

    The read timeout bounds silence only: a server that sends a byte just before each timeout would hold a
    download (and the consumer waiting for it) forever. Checked as bytes arrive; ``min_rate`` 0 is off.
    """

    __slots__ = ("_bytes", "_clock", "_start", "min_rate", "window_s")

    def __init__(self, min_rate: float, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_rate, self.window_s, self._clock = min_rate, window_s, clock
        self._start, self._bytes = clock(), 0

    def add(self, n: int) -> None:
        """``n`` more bytes arrived; raises ``Transient`` naming the rate if the window was too slow."""
        if self.min_rate <= 0:
            return
        self._bytes += n
        elapsed = self._clock() - self._start
        if elapsed < self.window_s:
            return
        rate = self._bytes / elapsed
        if rate < self.min_rate:
            raise Transient(
                f"too slow: {rate:.0f} bytes/s over {elapsed:.1f}s, under the minimum of "
                f"{self.min_rate:g} bytes/s (LEROWDS_MIN_RATE, RemoteOptions.min_rate_bps)"
            )
        self._start, self._bytes = self._clock(), 0


# ----------------------------------------------------------------------------------------------- client
class HttpClient:
    """GET whole files and byte ranges. Picklable: connections and caches are rebuilt in each process."""

    def __init__(self, options: HttpOptions, headers: Callable[[], Mapping[str, str]] | None = None) -> None:
        self.options = options
        self._headers_fn = headers  # a module-level function, so that tokens are never pickled
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._pid = os.getpid()
        opts = self.options
        self._transport = Transport(opts.connect_timeout_s, opts.read_timeout_s, opts.header_timeout_s)
        self._lock = threading.Lock()
        self._redirects: dict[str, tuple[str, float]] = {}
        self._base_headers: dict[str, str] | None = None
        self.rng = random.Random(f"lerowds-http-{self._pid}")  # backoff jitter only: never sample order

    def __getstate__(self) -> dict[str, object]:
        return {"options": self.options, "_headers_fn": self._headers_fn}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # forked: the parent's connections, locks and caches are not ours
            self._init_runtime()

    def headers(self) -> dict[str, str]:
        if self._base_headers is None:
            base = {"user-agent": "lerowds", "accept-encoding": "identity"}
            extra = self._headers_fn() if self._headers_fn is not None else {}
            base.update({k.lower(): v for k, v in extra.items()})
            self._base_headers = base
        return dict(self._base_headers)

    def _open(self, url: str, headers: Mapping[str, str]) -> tuple[urllib3.BaseHTTPResponse, bool]:
        """GET ``url``, following redirects: (response, whether it came from a cached redirect target).

        The final target of a redirect (e.g. a signed CDN URL) is reused for ``redirect_ttl_s``.
        """
        now = time.monotonic()
        with self._lock:
            hit = self._redirects.get(url)
        target, cached = (hit[0], True) if hit is not None and hit[1] > now else (url, False)
        try:
            resp = self._transport.open(target, redirect_headers(headers, url, target))
        except Transient:
            if cached:  # the next attempt resolves the URL again
                with self._lock:
                    self._redirects.pop(url, None)
            raise
        final = Transport.final_url(resp, target)
        if final != url and not cached:
            with self._lock:
                self._redirects[url] = (final, now + self.options.redirect_ttl_s)
        return resp, cached

    def _check(self, url: str, resp: urllib3.BaseHTTPResponse, cached: bool) -> None:
        """Raise ``Transient`` or ``Permanent`` unless the response is a 200 or 206 of the stored bytes."""
        if resp.status in (200, 206):
            encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
            if encoding == "identity":
                return
            Transport.release(resp, False)
            raise Permanent(
                f"the server sent Content-Encoding: {encoding} although lerowds asked for identity (byte "
                "ranges of the stored file): serve the dataset's files uncompressed (turn off compression "
                "for them on the server or CDN)"
            )
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        status = _status_text(resp)
        Transport.release(resp, False)
        if cached and resp.status in (401, 403, 404, 410):
            with self._lock:
                self._redirects.pop(url, None)
            raise Transient(f"{status} from a cached redirect target (expired?); resolving {url} again")
        if resp.status in (408, 429) or 500 <= resp.status <= 599:
            raise Transient(status, retry_after)
        hint = {
            401: ": authentication needed (for the Hub: set HF_TOKEN or run `hf auth login`)",
            403: ": access denied (for the Hub: check your token and that you accepted the dataset's terms)",
            404: ": not found (check the URL, revision and subfolder)",
            416: ": the file is shorter than the index says (a partial upload?)",
        }.get(resp.status, "")
        raise Permanent(status + hint)

    # -------------------------------------------------------------------------------------- requests
    def _retrying(
        self,
        attempt: Callable[[], T],
        what: str,
        url: str,
        counters: Counters,
        cancel: threading.Event | None,
    ) -> T:
        policy = self.options.retry
        return call_with_retries(
            attempt, policy=policy, what=what, where=url, counters=counters, rng=self.rng, cancel=cancel
        )

    def get(
        self, url: str, *, what: str, counters: Counters, cancel: threading.Event | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """The whole body of ``url`` and the response headers (lower-case names)."""
        self._check_process()

        def attempt() -> tuple[bytes, dict[str, str]]:
            counters.add("requests")
            resp, cached = self._open(url, self.headers())
            self._check(url, resp, cached)
            body, guard, complete = bytearray(), self._guard(), False
            try:
                while data := resp.read1(self.options.chunk_bytes):
                    body += data
                    counters.add("bytes", len(data))
                    guard.add(len(data))
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("download cancelled")
                left = resp.length_remaining  # type: ignore[attr-defined]
                if left:  # the connection ended before Content-Length said
                    raise Transient(f"short body: {len(body)} bytes, {left} missing")
                complete = True
            except _BODY_ERRORS as e:
                raise Transient(f"body cut short: {type(e).__name__}: {e}") from None
            finally:
                Transport.release(resp, complete)
            return bytes(body), {k.lower(): v for k, v in resp.headers.items()}

        return self._retrying(attempt, what, url, counters, cancel)

    def get_range(
        self,
        url: str,
        start: int,
        size: int,
        write: Writer,
        *,
        what: str,
        counters: Counters,
        cancel: threading.Event | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        """Stream bytes ``[start, start + size)`` of ``url`` into ``write``, resuming short bodies.

        ``verify`` runs once all bytes arrived; a ``ValueError`` from it discards them and fetches again.
        """
        self._check_process()
        if start < 0 or size < 1:
            raise ValueError(f"byte range needs start >= 0 and size >= 1, got start={start} size={size}")
        state: dict[str, object] = {"got": 0, "etag": None}
        end = start + size - 1

        def attempt() -> None:
            got = int(state["got"])  # type: ignore[call-overload]
            counters.add("requests")
            headers = self.headers()
            headers["range"] = f"bytes={start + got}-{end}"
            resp, cached = self._open(url, headers)
            self._check(url, resp, cached)
            complete = False
            try:
                want = self._range_length(resp, start + got, end, size)
                etag = resp.headers.get("ETag")
                if state["etag"] is not None and etag is not None and etag != state["etag"]:
                    old, state["got"], state["etag"] = state["etag"], 0, None  # next: the new file, anew
                    raise Transient(f"the file changed on the server (ETag {old} -> {etag})")
                state["etag"] = etag or state["etag"]
                complete = self._read_into(resp, got, want, write, state, counters, cancel)
            except _BODY_ERRORS as e:
                raise Transient(f"body cut short: {type(e).__name__}: {e}") from None
            finally:
                Transport.release(resp, complete)
            got = int(state["got"])  # type: ignore[call-overload]
            if got < size:
                raise Transient(f"short body: {got} of {size} bytes so far, resuming")
            try:
                check_download(verify, counters)
            except Transient:
                state["got"], state["etag"] = 0, None  # the next attempt fetches the whole range
                raise

        self._retrying(attempt, what, url, counters, cancel)

    @staticmethod
    def _range_length(resp: urllib3.BaseHTTPResponse, first: int, last: int, size: int) -> int:
        """Bytes the response carries from ``first`` on (at most ``last - first + 1``)."""
        if resp.status == 200:
            if first == 0 and resp.headers.get("Content-Length") == str(size):
                return size
            raise Permanent(f"the server ignored the Range header (HTTP 200 for bytes {first}-{last})")
        crange = resp.headers.get("Content-Range") or ""
        try:
            unit, _, rest = crange.partition(" ")
            a, b = (int(x) for x in rest.split("/")[0].split("-"))
        except ValueError:
            raise Transient(f"HTTP 206 with unreadable Content-Range {crange!r}") from None
        if unit != "bytes" or a != first or b < a:
            raise Transient(f"asked bytes {first}-{last}, the server sent {crange!r}")
        return min(b, last) - a + 1

    def _read_into(
        self,
        resp: urllib3.BaseHTTPResponse,
        got: int,
        want: int,
        write: Writer,
        state: dict[str, object],
        counters: Counters,
        cancel: threading.Event | None,
    ) -> bool:
        """Read up to ``want`` bytes into ``write`` at ``got``; True if the body was read to its end.

        One socket read per step (``read1``, not ``read``, which blocks until its ``amt`` is full), so that
        a cancel is seen while a slow body trickles in, not only when a whole chunk arrived. Streamed into
        ``write`` chunk by chunk: the range is never held in memory whole.
        """
        left, guard = want, self._guard()
        while left > 0:
            if cancel is not None and cancel.is_set():
                raise Cancelled("download cancelled")
            data = resp.read1(min(self.options.chunk_bytes, left))
            n = len(data)
            if not n:
                return False
            store(write, got, memoryview(data))
            got += n
            left -= n
            state["got"] = got
            counters.add("bytes", n)
            guard.add(n)  # after the bytes are kept: the retry resumes after them
        return resp.length_remaining == 0  # type: ignore[attr-defined]

    def _guard(self) -> RateGuard:
        return RateGuard(self.options.min_rate_bps, self.options.rate_window_s)
