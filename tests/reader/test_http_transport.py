"""The HTTP transport's edges (``reader/io/transport.py`` under ``reader/io/http.py``): a forked process gets
its own connections, proxies come from the environment, redirects are followed and bounded, credentials
stay with their origin, ranged reads stream and resume where they stopped. All on a loopback server."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
from pathlib import Path

import pytest
from httpserver import TLS_CA, Fault, LoopbackServer

from lerowds.errors import RemoteError
from lerowds.reader.io.http import HttpClient, HttpOptions
from lerowds.reader.io.retry import Counters, RetryPolicy
from lerowds.reader.io.transport import MAX_REDIRECTS

SIZE = 300_000


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(7).randbytes(SIZE)
    (tmp_path / "blob.bin").write_bytes(data)
    return tmp_path, data


@pytest.fixture(autouse=True)
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without proxies, whatever the machine has; the proxy tests set their own."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def _client(attempts: int = 4, headers: object = None) -> HttpClient:
    retry = RetryPolicy(attempts=attempts, backoff_s=0.01, backoff_max_s=0.05)
    options = HttpOptions(connect_timeout_s=5, read_timeout_s=5, retry=retry, chunk_bytes=8192)
    return HttpClient(options, headers=headers)  # type: ignore[arg-type]


def _range(client: HttpClient, url: str, start: int, size: int, writes: list[int] | None = None) -> bytes:
    buf = bytearray(size)

    def write(pos: int, data: memoryview) -> None:
        buf[pos : pos + len(data)] = data
        if writes is not None:
            writes.append(len(data))

    client.get_range(url, start, size, write, what="t", counters=Counters())
    return bytes(buf)


def _child_read(client: HttpClient, url: str, out: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        out.put(_range(client, url, 5000, 20_000))
    except Exception as e:  # noqa: BLE001  # the parent asserts on it
        out.put(repr(e))


def test_forked_process_reads_on_its_own_connections(blob: tuple[Path, bytes]) -> None:
    """A DataLoader worker forks after the client has a kept-alive connection: the child must open its own
    (sharing the parent's socket would interleave two processes' bytes on one stream), and the parent's
    connection stays usable."""
    root, data = blob
    with LoopbackServer(root) as srv:
        client, url = _client(), f"{srv.url}/blob.bin"
        assert _range(client, url, 0, 10_000) == data[:10_000]
        parent_port = srv.seen[-1].port
        ctx = mp.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_child_read, args=(client, url, out))
        child.start()
        got = out.get(timeout=30)
        child.join(30)
        assert got == data[5000:25_000], got if isinstance(got, str) else "wrong bytes"
        assert child.exitcode == 0
        child_port = srv.seen[-1].port
        assert _range(client, url, 100, 1000) == data[100:1100]
        assert [s.port for s in srv.seen] == [parent_port, child_port, parent_port]  # kept alive
    assert child_port != parent_port


def test_pickled_client_opens_its_own_connections(blob: tuple[Path, bytes]) -> None:
    """A spawned worker gets the client pickled: it carries options only and connects on first use."""
    import pickle

    root, data = blob
    with LoopbackServer(root) as srv:
        client, url = _client(), f"{srv.url}/blob.bin"
        _range(client, url, 0, 10)
        copy = pickle.loads(pickle.dumps(client))
        assert _range(copy, url, 10, 100) == data[10:110]
        assert srv.seen[0].port != srv.seen[1].port


def test_http_proxy_from_the_environment(blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """``HTTP_PROXY`` (with credentials) routes the request through the proxy in absolute form; the
    loopback server answers as the proxy, so a host that does not resolve is reached only through it."""
    root, data = blob
    with LoopbackServer(root) as srv:
        proxy = srv.base.replace("http://", "http://us%40er:p%3Ass@")
        monkeypatch.setenv("HTTP_PROXY", proxy)
        url = "http://dataset.invalid/data/blob.bin"
        assert _range(_client(), url, 1000, 5000) == data[1000:6000]
        seen = srv.seen[-1]
    assert seen.target == url
    assert seen.proxy_authorization == "Basic dXNAZXI6cDpzcw=="  # base64("us@er:p:ss")


def test_https_proxy_tunnel_from_the_environment(
    blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``HTTPS_PROXY``: an https URL goes through a CONNECT tunnel that carries the proxy's credentials (the
    loopback server records the CONNECT, then refuses it, which is a retryable failure)."""
    root, _ = blob
    with LoopbackServer(root) as srv:
        monkeypatch.setenv("HTTPS_PROXY", srv.base.replace("http://", "http://u:p@"))
        with pytest.raises(
            RemoteError, match="failed after 1 attempts.*cannot connect through the proxy.*502"
        ):
            _range(_client(attempts=1), "https://dataset.invalid/data/blob.bin", 0, 10)
        assert [(s.target, s.proxy_authorization) for s in srv.seen] == [
            ("dataset.invalid:443", "Basic dTpw")  # base64("u:p")
        ]


def test_no_proxy_bypasses_the_proxy(blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        monkeypatch.setenv("HTTP_PROXY", srv.base)
        monkeypatch.setenv("NO_PROXY", "dataset.invalid")
        with pytest.raises(RemoteError, match="cannot connect"):
            _range(_client(attempts=1), "http://dataset.invalid/data/blob.bin", 0, 10)
        assert srv.seen == []  # not through the proxy


def test_redirect_is_followed_and_its_target_reused(blob: tuple[Path, bytes]) -> None:
    root, data = blob
    with LoopbackServer(root) as srv:
        srv.redirects["a.bin"] = "/data/b.bin"
        srv.redirects["b.bin"] = f"{srv.url}/blob.bin"  # relative, then absolute
        client = _client()
        assert _range(client, f"{srv.url}/a.bin", 0, 100) == data[:100]
        assert _range(client, f"{srv.url}/a.bin", 100, 100) == data[100:200]
        targets = [s.target for s in srv.seen]
    assert targets == ["/data/a.bin", "/data/b.bin", "/data/blob.bin", "/data/blob.bin"]


def test_redirect_loop_is_permanent(blob: tuple[Path, bytes]) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        srv.redirects["a.bin"] = "/data/b.bin"
        srv.redirects["b.bin"] = "/data/a.bin"
        with pytest.raises(RemoteError, match=rf"more than {MAX_REDIRECTS} redirects \(not retried\)"):
            _range(_client(), f"{srv.url}/a.bin", 0, 10)
        assert len(srv.seen) == MAX_REDIRECTS + 1


def test_credentials_stay_with_their_origin(blob: tuple[Path, bytes], tmp_path: Path) -> None:
    """A redirect to another origin (a CDN) does not carry the token; one within the origin does."""
    root, data = blob
    with LoopbackServer(root) as hub, LoopbackServer(root) as cdn:
        hub.redirects["a.bin"] = "/data/b.bin"
        hub.redirects["b.bin"] = f"{cdn.url}/blob.bin"
        client = _client(headers=_token)
        assert _range(client, f"{hub.url}/a.bin", 0, 100) == data[:100]
        assert [s.authorization for s in hub.seen] == ["Bearer secret", "Bearer secret"]
        assert [s.authorization for s in cdn.seen] == [None]


def _token() -> dict[str, str]:
    return {"Authorization": "Bearer secret"}


def test_range_streams_in_chunks(blob: tuple[Path, bytes]) -> None:
    """The body goes to the writer as it arrives, at most ``chunk_bytes`` at a time, never buffered whole."""
    root, data = blob
    writes: list[int] = []
    with LoopbackServer(root) as srv:
        assert _range(_client(), f"{srv.url}/blob.bin", 0, SIZE, writes) == data
    assert sum(writes) == SIZE and max(writes) <= 8192 and len(writes) >= SIZE // 8192


def test_dropped_range_resumes_where_it_stopped(blob: tuple[Path, bytes]) -> None:
    """The server hangs up half way: the next request asks for the rest only, on a new connection."""
    root, data = blob
    with LoopbackServer(root) as srv:
        srv.add(Fault("drop", "blob.bin", start=1000))
        assert _range(_client(), f"{srv.url}/blob.bin", 1000, 250_000) == data[1000:251_000]
        assert srv.requests == {("blob.bin", 1000): 1, ("blob.bin", 1000 + 125_000): 1}
        assert srv.seen[0].port != srv.seen[1].port


def test_changed_file_is_fetched_from_the_start(blob: tuple[Path, bytes], caplog: object) -> None:
    """The file changes on the server (its ETag with it) between a drop and the resume: the bytes so far
    are from the old file, so the range is fetched again from its start."""
    root, data = blob
    with LoopbackServer(root) as srv:
        srv.add(Fault("drop", "blob.bin", start=0))
        buf, changed = bytearray(100_000), []

        def write(pos: int, chunk: memoryview) -> None:
            buf[pos : pos + len(chunk)] = chunk
            if not changed:  # while the first response streams: append, so the range's bytes stay the same
                with open(root / "blob.bin", "ab") as f:
                    f.write(b"more")
                changed.append(os.path.getsize(root / "blob.bin"))

        _client().get_range(f"{srv.url}/blob.bin", 0, 100_000, write, what="t", counters=Counters())
        assert bytes(buf) == data[:100_000]
        assert srv.requests == {("blob.bin", 0): 2, ("blob.bin", 50_000): 1}
    assert 'the file changed on the server (ETag "300000" -> "300004")' in caplog.text  # type: ignore[attr-defined]


def test_https_trusts_ssl_cert_file(blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    """TLS through urllib3 with lerowds' trust store: a server whose CA is unknown is a permanent failure
    that says what to set; with ``SSL_CERT_FILE`` naming that CA the same read succeeds."""
    root, data = blob
    with LoopbackServer(root, tls=True) as srv:
        url = f"{srv.url}/blob.bin"
        assert url.startswith("https://127.0.0.1:")
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(
            RemoteError, match=r"TLS certificate not trusted .*set SSL_CERT_FILE.*not retried"
        ):
            _range(_client(), url, 0, 10)
        monkeypatch.setenv("SSL_CERT_FILE", str(TLS_CA))
        assert _range(_client(), url, 1000, 50_000) == data[1000:51_000]
        assert srv.requests == {("blob.bin", 1000): 1}
