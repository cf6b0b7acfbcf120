"""The connections under ``HttpClient``: urllib3 pool managers (keep-alive, proxies, TLS, redirects).

One ``Transport`` per client; its pool managers belong to the process that made them and are made anew
after a fork (a DataLoader worker) or an unpickle, never shared: a forked copy of a socket or of a pool's
lock is not ours. Every request has a deadline for its response headers (``deadline.py``). urllib3
retries nothing here (``lerowds.reader.io.retry`` is the only retry policy);
it follows up to ``MAX_REDIRECTS`` redirects, drops credentials when one leaves the origin, and refuses
one to anything but an http(s) URL.
"""

from __future__ import annotations

import os
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from types import TracebackType
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
import urllib3.connectionpool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    ProxyError,
    ResponseError,
    SSLError,
)

from lerowds.reader.io.deadline import HeaderTimeout, pool_classes
from lerowds.reader.io.retry import Permanent, Transient

__all__ = ["MAX_REDIRECTS", "Transport"]

MAX_REDIRECTS = 5
_POOL_SIZE = 32  # kept-alive connections per host: at least the threads that download at once
_PROXY_PORT = 8080  # a proxy URL without a port (``HTTPS_PROXY=proxy.corp``), as urllib does


class _Redirects(urllib3.Retry):
    """urllib3's redirect following, refusing (``Permanent``, naming both URLs) a redirect to anything but
    an http(s) URL with a host (``file://``, ``ftp://``, ...) before it is followed: a misconfigured or
    hostile server, which retrying cannot fix. Redirects to another host are followed, as
    ``huggingface_hub`` follows the Hub's to its CDN; urllib3 drops ``Authorization`` and ``Cookie`` then."""

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: urllib3.BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: urllib3.connectionpool.ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> urllib3.Retry:
        location = response.get_redirect_location() if response is not None else None
        if response is not None and location:
            target = urljoin(url or "", location)
            p = urlsplit(target)
            if p.scheme.lower() not in ("http", "https") or not p.hostname:
                response.drain_conn()
                raise Permanent(f"{url} redirected to {target}, which is not an http(s) URL: refused")
        return super().increment(
            method, url, response=response, error=error, _pool=_pool, _stacktrace=_stacktrace
        )


def _no_retries() -> urllib3.Retry:
    """Follow redirects, retry nothing: every failure goes to lerowds' own ``RetryPolicy``."""
    return _Redirects(
        total=None,
        connect=0,
        read=0,
        status=0,
        other=0,
        redirect=MAX_REDIRECTS,
        raise_on_redirect=True,
        raise_on_status=False,
        respect_retry_after_header=False,
    )


def _ssl_context() -> ssl.SSLContext:
    """Trust ``SSL_CERT_FILE`` or ``REQUESTS_CA_BUNDLE``, else certifi's bundle, else the system's."""
    cafile = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    if not cafile:
        try:
            import certifi

            cafile = certifi.where()
        except ImportError:
            cafile = None
    return ssl.create_default_context(cafile=cafile)


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from the environment (``HTTP(S)_PROXY``, ``NO_PROXY``), as urllib reads it."""
    p = urlsplit(url)
    proxy = urllib.request.getproxies().get(p.scheme)
    if not proxy or urllib.request.proxy_bypass(p.hostname or ""):
        return None
    return proxy


def _proxy_manager(proxy: str, **kw: object) -> urllib3.ProxyManager:
    """A manager that sends everything through ``proxy`` (CONNECT tunnels for https), with its credentials."""
    pp = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    headers = None
    if pp.username:
        cred = f"{unquote(pp.username)}:{unquote(pp.password or '')}"
        headers = urllib3.make_headers(proxy_basic_auth=cred)
    host = f"[{pp.hostname}]" if ":" in (pp.hostname or "") else pp.hostname
    url = f"{pp.scheme}://{host}:{pp.port or _PROXY_PORT}"
    return urllib3.ProxyManager(url, proxy_headers=headers, **kw)  # type: ignore[arg-type]


def _cert_error(e: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate failure under urllib3's ``SSLError`` (it wraps the ``ssl`` error), if that is one."""
    for _ in range(4):
        if e is None or isinstance(e, ssl.SSLCertVerificationError):
            return e
        inner = e.args[0] if isinstance(e, SSLError) and e.args else None
        e = inner if isinstance(inner, BaseException) else e.__cause__ or e.__context__
    return None


def _failure(reason: BaseException) -> Permanent | Transient:
    """What a failed urllib3 request means to the retry policy, in words a user can act on."""
    if isinstance(reason, HeaderTimeout):
        return Transient(str(reason))
    if isinstance(reason, ResponseError):
        return Permanent(f"more than {MAX_REDIRECTS} redirects")
    cert = _cert_error(reason)
    if cert is not None:
        return Permanent(f"TLS certificate not trusted ({cert}); set SSL_CERT_FILE to your CA bundle")
    if isinstance(reason, ProxyError):
        inner = reason.original_error
        if isinstance(inner, HeaderTimeout):
            return Transient(f"through the proxy: {inner}")
        return Transient(f"cannot connect through the proxy: {type(inner).__name__}: {inner}")
    if isinstance(reason, ConnectTimeoutError):  # refused, unresolvable, or no answer in time
        return Transient(f"cannot connect: {type(reason).__name__}: {reason}")
    return Transient(f"{type(reason).__name__}: {reason}")


class Transport:
    """GET requests over kept-alive connections of this process; responses are streamed, never decoded."""

    def __init__(
        self, connect_timeout_s: float, read_timeout_s: float, header_timeout_s: float = 120.0
    ) -> None:
        self.timeouts = (connect_timeout_s, read_timeout_s, header_timeout_s)
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._pid = -1
        self._lock = threading.Lock()
        self._managers: dict[tuple[str | None, bool], urllib3.PoolManager] = {}  # (proxy, https) ->
        self._proxies: dict[tuple[str, str, int | None], str | None] = {}  # origin -> its proxy

    def __getstate__(self) -> dict[str, object]:
        return {"timeouts": self.timeouts}

    def __setstate__(self, state: dict[str, tuple[float, float, float]]) -> None:
        self.__init__(*state["timeouts"])  # type: ignore[misc]

    def _manager(self, url: str) -> urllib3.PoolManager:
        """This process's pool manager for ``url``: direct or one per proxy; for https, with the CA bundle
        (loading it costs ~20 ms, so plain http never does)."""
        p = urlsplit(url)
        origin = (p.scheme, p.hostname or "", p.port)
        with self._lock:
            if self._pid != os.getpid():  # forked (or new): the parent's managers are not ours
                self._pid, self._managers, self._proxies = os.getpid(), {}, {}
            if origin not in self._proxies:  # the environment is read once per origin (it costs ~0.3 ms)
                self._proxies[origin] = proxy_for(url)
            key = (self._proxies[origin], p.scheme == "https")
            manager = self._managers.get(key)
            if manager is None:
                proxy, tls = key
                kw: dict[str, object] = {"maxsize": _POOL_SIZE, "block": False}
                if tls:
                    kw["ssl_context"] = _ssl_context()
                manager = _proxy_manager(proxy, **kw) if proxy else urllib3.PoolManager(**kw)  # type: ignore[arg-type]
                manager.pool_classes_by_scheme = pool_classes(self.timeouts[2])  # type: ignore[assignment]
                self._managers[key] = manager
        return manager

    def open(self, url: str, headers: Mapping[str, str]) -> urllib3.BaseHTTPResponse:
        """GET ``url`` following redirects; the body is left unread (``release`` gives the connection back).

        Raises ``Transient`` (connection failures, timeouts) or ``Permanent`` (not http(s), TLS trust, a
        redirect loop); any status comes back as a response.
        """
        p = urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise Permanent(f"not an http(s) URL: {url}")
        try:
            return self._manager(url).urlopen(
                "GET",
                url,
                headers=dict(headers),
                retries=_no_retries(),
                redirect=True,
                timeout=self.timeout,
                preload_content=False,
                decode_content=False,
                enforce_content_length=True,
            )
        except MaxRetryError as e:
            raise _failure(e.reason if e.reason is not None else e) from None
        except HeaderTimeout as e:
            raise Transient(str(e)) from None
        except (HTTPError, OSError) as e:
            raise Transient(f"{type(e).__name__}: {e}") from None

    @staticmethod
    def final_url(resp: urllib3.BaseHTTPResponse, url: str) -> str:
        """Where ``resp`` came from after urllib3 followed redirects from ``url`` (``url`` if none)."""
        history = resp.retries.history if resp.retries is not None else ()
        if not history or not history[-1].redirect_location:
            return url
        last = history[-1]
        return urljoin(last.url or url, last.redirect_location)

    @staticmethod
    def release(resp: urllib3.BaseHTTPResponse, complete: bool) -> None:
        """Give the connection back: kept alive if the body was read to its end, else closed."""
        if not complete:
            resp.close()
        resp.release_conn()
