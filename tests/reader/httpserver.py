"""A loopback HTTP server for remote-reading tests and benchmarks: serves a directory with ``Range``
support, optional latency and bandwidth cap, fault injection per path and request, a Hub emulation, and a
record of every ranged request (to check that no two workers fetch the same bytes at once)."""

from __future__ import annotations

import gzip
import itertools
import re
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import pytest
    from typing_extensions import Self

TLS_DIR = Path(__file__).resolve().parent / "tls"
TLS_CA = TLS_DIR / "ca.pem"  # the CA of the test server's certificate (for 127.0.0.1)
FAULTS = ("drop", "429", "503", "stall", "truncate", "corrupt", "404", "trickle", "gzip", "slow_headers")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_HUB = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.*)$")


@dataclass
class Fault:
    """Answer ``times`` requests for ``path`` (suffix match; ``start``: only ranges from that byte) with
    ``kind``; ``times=-1`` means every time."""

    kind: str
    path: str
    start: int | None = None
    times: int = 1
    retry_after: str = "1"
    stall_s: float = 1.0
    at: int | None = None  # "corrupt": the byte of the body to flip (default: the middle one)
    # "trickle": send the body ``trickle_bytes`` at a time, ``stall_s`` apart (a slow but live download)
    trickle_bytes: int = 64
    # "slow_headers": a status line, then header lines without end, one byte every ``stall_s``, until the
    # client hangs up (counted in ``LoopbackServer.hangups``) or the server stops; for a proxy ``CONNECT``
    # too (``path`` matched against its ``host:port``)

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"fault kind must be one of {FAULTS}, got {self.kind!r}")


@dataclass(frozen=True)
class HubRepo:
    """Emulate the Hub's ``/datasets/ORG/NAME/resolve/REV/path`` for one repo; big files redirect like LFS."""

    repo_id: str
    commit: str = "0123456789abcdef0123456789abcdef01234567"
    branches: tuple[str, ...] = ("main",)
    token: str | None = None  # if set, resolve requests need ``Authorization: Bearer <token>``


def use_hub(
    monkeypatch: pytest.MonkeyPatch, *, endpoint: str, offline: bool = False, cache: str | None = None
) -> None:
    """Point ``huggingface_hub`` (and so lerowds' ``hf://``) at ``endpoint``, online or offline, with its cache
    at ``cache``: its ``constants``, which it reads from ``HF_ENDPOINT`` etc. once, when first imported."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    if cache is not None:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it: the request target (absolute-form when sent to a proxy), the
    client's port (one per connection), and the credential headers."""

    target: str
    port: int
    authorization: str | None
    proxy_authorization: str | None


class LoopbackServer:
    """``with LoopbackServer(root) as srv: srv.url`` serves ``root`` on 127.0.0.1 until the block ends."""

    def __init__(
        self,
        root: Path,
        *,
        latency_s: float = 0.0,
        bandwidth: float | None = None,
        hub: HubRepo | None = None,
        tls: bool = False,
    ) -> None:
        self.root = Path(root)
        self.tls = tls  # serve https with tls/server.pem (its CA: TLS_CA)
        self.latency_s = latency_s
        self.bandwidth = bandwidth  # bytes/s per response
        self.hub = hub
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int | None]] = Counter()  # (path, range start) -> requests
        self.inflight: Counter[tuple[str, int | None]] = Counter()
        self.max_inflight: Counter[tuple[str, int | None]] = Counter()
        self.faults_served: Counter[str] = Counter()
        self.auth_seen: list[str | None] = []
        self.resolves: Counter[str] = Counter()  # Hub resolve requests per file
        self.redirects: dict[str, str] = {}  # path below /data/ -> Location to answer with (a 302)
        self.seen: list[Seen] = []  # every request, in arrival order
        self.hangups = 0  # "slow_headers" answers the client hung up on
        self.stopped = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Self:
        handler = type("Handler", (_Handler,), {"srv": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(TLS_DIR / "server.pem")
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def base(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    @property
    def url(self) -> str:
        return self.base + "/data"

    def add(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def take_fault(self, path: str, start: int | None) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.times != 0 and path.endswith(f.path) and (f.start is None or f.start == start):
                    if f.times > 0:
                        f.times -= 1
                    self.faults_served[f.kind] += 1
                    return f
        return None

    @contextmanager
    def track(self, key: tuple[str, int | None]) -> Iterator[None]:
        with self.lock:
            self.requests[key] += 1
            self.inflight[key] += 1
            self.max_inflight[key] = max(self.max_inflight[key], self.inflight[key])
        try:
            yield
        finally:
            with self.lock:
                self.inflight[key] -= 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    srv: LoopbackServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _plain(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _record(self) -> None:
        seen = Seen(
            self.path,
            self.client_address[1],
            self.headers.get("Authorization"),
            self.headers.get("Proxy-Authorization"),
        )
        with self.srv.lock:
            self.srv.seen.append(seen)

    def do_CONNECT(self) -> None:
        """A proxy tunnel (an https request through this server as its proxy): recorded, then refused."""
        self._record()
        fault = self.srv.take_fault(self.path, None)
        if fault is not None and fault.kind == "slow_headers":
            return self._slow_headers(fault)
        self._plain(502)
        return None

    def do_GET(self) -> None:
        srv = self.srv
        if srv.latency_s:
            time.sleep(srv.latency_s)
        path = unquote(urlsplit(self.path).path)
        self._record()
        extra: dict[str, str] = {}
        if path.startswith("/data/") and path[len("/data/") :] in srv.redirects:
            return self._plain(302, {"Location": srv.redirects[path[len("/data/") :]]})
        if path.startswith("/data/"):
            rel = path[len("/data/") :]
        elif path.startswith("/cdn/"):
            rel = path[len("/cdn/") :].split("/", 1)[1]
        elif srv.hub is not None and (m := _HUB.match(path)):
            repo, rev, rel = m.group(1), m.group(2), m.group(3)
            with srv.lock:
                srv.auth_seen.append(self.headers.get("Authorization"))
                srv.resolves[rel] += 1
            hub = srv.hub
            if repo != hub.repo_id or rev not in (*hub.branches, hub.commit):
                return self._plain(404, {"X-Error-Code": "RevisionNotFound"})
            if hub.token is not None and self.headers.get("Authorization") != f"Bearer {hub.token}":
                return self._plain(401)
            extra["X-Repo-Commit"] = hub.commit
            if rel.endswith(".tar"):  # like LFS: redirect to the "CDN" (the same loopback server)
                return self._plain(302, {**extra, "Location": f"/cdn/{hub.commit}/{rel}"})
        else:
            return self._plain(404)
        file = srv.root / rel
        if not file.is_file() or ".." in Path(rel).parts or Path(rel).is_absolute():
            return self._plain(404)
        data = file.read_bytes()
        start, end, status = 0, len(data) - 1, 200
        if rng := self.headers.get("Range"):
            m = _RANGE.match(rng)
            if m is None or int(m.group(1)) >= len(data):
                return self._plain(416, {"Content-Range": f"bytes */{len(data)}"})
            start, status = int(m.group(1)), 206
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
        key = (rel, start if status == 206 else None)
        fault = srv.take_fault(rel, key[1])
        if fault is not None and fault.kind == "slow_headers":
            return self._slow_headers(fault)
        if fault is not None and fault.kind == "stall":  # outlive the client's timeout, then hang up; the
            time.sleep(fault.stall_s)  # client gave up on it, so it is not counted as in flight
            self.close_connection = True
            return None
        with srv.track(key):
            self._answer(rel, data, start, end, status, extra, fault)

    def _answer(
        self,
        rel: str,
        data: bytes,
        start: int,
        end: int,
        status: int,
        extra: dict[str, str],
        fault: Fault | None,
    ) -> None:
        kind = fault.kind if fault else None
        if fault is not None and kind in ("429", "503", "404"):
            hdrs = {"Retry-After": fault.retry_after} if kind == "429" else {}
            return self._plain(int(kind), hdrs)
        body = bytearray(data[start : end + 1])
        if kind == "truncate":  # an honest but short range: the client must notice by length
            end = start + len(body) // 2 - 1
            body = body[: len(body) // 2]
        if fault is not None and kind == "corrupt":
            body[len(body) // 2 if fault.at is None else fault.at] ^= 0xFF
        if kind == "gzip":  # compressed although the client asked for identity (a misconfigured server)
            body = bytearray(gzip.compress(bytes(body)))
            extra = {**extra, "Content-Encoding": "gzip"}
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{len(data)}"')
        self.end_headers()
        if kind == "trickle":
            try:
                step = fault.trickle_bytes  # type: ignore[union-attr]
                for i in range(0, len(body), step):
                    self.wfile.write(bytes(body[i : i + step]))
                    self.wfile.flush()
                    time.sleep(fault.stall_s)  # type: ignore[union-attr]
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        if kind == "drop":  # promise the whole body, send half, hang up
            self._write(bytes(body[: len(body) // 2]))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(bytes(body))

    def _slow_headers(self, fault: Fault) -> None:
        """Never finish the header block: each byte comes before any read timeout, the headers never."""
        srv, self.close_connection = self.srv, True
        head = itertools.chain(b"HTTP/1.1 200 OK\r\n", itertools.cycle(b"X-Slow: 1\r\n"))
        try:
            for byte in head:
                if srv.stopped.wait(fault.stall_s):
                    return
                self.wfile.write(bytes((byte,)))
                self.wfile.flush()
        except OSError:  # a reset, a broken pipe, a TLS connection cut without close_notify
            with srv.lock:
                srv.hangups += 1

    def _write(self, body: bytes) -> None:
        bw, chunk = self.srv.bandwidth, 64 * 1024
        try:
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i : i + chunk])
                if bw:
                    time.sleep(min(chunk, len(body) - i) / bw)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
