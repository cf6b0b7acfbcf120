"""A deadline on every request's response headers, for urllib3's connection pools.

The read timeout bounds each silence only: a server (or proxy) that sends its status line and headers one
byte at a time, each before the read timeout, would hold ``http.client``'s header parsing, and the thread
in it, forever. Each connection here arms a timer when a request starts (connecting, TLS and a proxy's
``CONNECT`` included, for a new connection) and disarms it once the response headers are parsed; if it
fires first it shuts the socket down, so the blocked read returns at once, and the request fails with
``HeaderTimeout`` (a urllib3 ``TimeoutError``: the connection is discarded, never reused) whatever
``http.client`` made of the cut-off bytes. The body is then bounded by ``RateGuard`` (``http.py``).
"""

from __future__ import annotations

import functools
import socket
import threading
from typing import Any

import urllib3
import urllib3.connection
import urllib3.connectionpool

__all__ = ["HeaderTimeout", "pool_classes"]


class HeaderTimeout(urllib3.exceptions.TimeoutError):
    """No complete response headers within the deadline (the socket was shut down)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"no response headers arrived within {timeout_s:g}s of sending the request "
            "(LEROWDS_HEADER_TIMEOUT, RemoteOptions.header_timeout_s)"
        )


def _shutdown(sock: object) -> None:
    """Shut ``sock`` down for reading and writing: a read blocked on it in another thread returns."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)  # TLS in TLS: its socket
    if isinstance(raw, socket.socket):
        try:  # the plain socket's shutdown, also for an SSLSocket (whose own would drop its SSL object)
            socket.socket.shutdown(raw, socket.SHUT_RDWR)
        except OSError:  # already closed
            pass


class _HeaderDeadline:
    """Mixin for urllib3's ``HTTPConnection`` / ``HTTPSConnection``; ``header_timeout_s`` set by a subclass."""

    header_timeout_s: float
    sock: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline_lock = threading.Lock()
        self._deadline_timer: threading.Timer | None = None
        self._deadline_gen = 0  # a timer of an earlier request must not fire on this one
        self._deadline_fired = False

    def _arm(self) -> None:
        with self._deadline_lock:
            if self._deadline_timer is not None:  # armed by connect() or request() of this request
                return
            self._deadline_gen += 1
            self._deadline_fired = False
            timer = threading.Timer(self.header_timeout_s, self._expire, (self._deadline_gen,))
            timer.name, timer.daemon = "lerowds-header-deadline", True
            self._deadline_timer = timer
        timer.start()

    def _disarm(self) -> bool:
        """Stop the timer; True if it had fired (the socket is shut down: the response is not to be used)."""
        with self._deadline_lock:
            timer, self._deadline_timer = self._deadline_timer, None
            self._deadline_gen += 1
            fired = self._deadline_fired
        if timer is not None:
            timer.cancel()
        return fired

    def _expire(self, gen: int) -> None:
        with self._deadline_lock:
            if gen != self._deadline_gen:  # disarmed meanwhile: the headers arrived in time
                return
            self._deadline_fired = True
            sock = self.sock
        if sock is not None:  # None while a new connection's TCP connect runs (its own timeout bounds it)
            _shutdown(sock)

    def _guarded(self, call: Any, *args: Any, disarm: bool, **kwargs: Any) -> Any:
        """``call`` under this request's deadline (armed by the first of connect, request, getresponse);
        ``disarm``: the response headers are in, stop the timer."""
        self._arm()
        try:
            if self._deadline_fired:  # fired while nothing could be shut down (a TCP connect in progress)
                raise HeaderTimeout(self.header_timeout_s)
            result = call(*args, **kwargs)
        except BaseException:
            if self._disarm():
                raise HeaderTimeout(self.header_timeout_s) from None
            raise
        if self._disarm() if disarm else self._deadline_fired:  # whole or cut off by the shutdown: unused
            self._disarm()
            raise HeaderTimeout(self.header_timeout_s)
        return result

    def connect(self) -> None:
        self._guarded(super().connect, disarm=False)  # type: ignore[misc]

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._guarded(super().request, *args, disarm=False, **kwargs)  # type: ignore[misc]

    def getresponse(self) -> Any:
        return self._guarded(super().getresponse, disarm=True)  # type: ignore[misc]

    def close(self) -> None:
        self._disarm()
        super().close()  # type: ignore[misc]


@functools.lru_cache(maxsize=16)
def pool_classes(header_timeout_s: float) -> dict[str, type[urllib3.HTTPConnectionPool]]:
    """``PoolManager.pool_classes_by_scheme`` whose connections have a ``header_timeout_s`` deadline
    (also under a ``ProxyManager``: plain requests through the proxy and ``CONNECT`` tunnels)."""
    attrs = {"header_timeout_s": header_timeout_s}
    http = type("DeadlineHTTPConnection", (_HeaderDeadline, urllib3.connection.HTTPConnection), attrs)
    https = type("DeadlineHTTPSConnection", (_HeaderDeadline, urllib3.connection.HTTPSConnection), attrs)
    return {
        "http": type("DeadlineHTTPConnectionPool", (urllib3.HTTPConnectionPool,), {"ConnectionCls": http}),
        "https": type(
            "DeadlineHTTPSConnectionPool", (urllib3.HTTPSConnectionPool,), {"ConnectionCls": https}
        ),
    }
