"""Remote reading against servers and indexes that misbehave (issue 21): a server that dribbles bytes, shard
names that try to leave the dataset, a compressed response, a redirect to ``file://``. Each is an error
that names what went wrong, never a hang and never a request outside the dataset."""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import time
from pathlib import Path

import pytest
from conftest import video_converted
from httpserver import TLS_CA, Fault, HubRepo, LoopbackServer, use_hub

from lerowds.errors import ConfigError, FormatError, RemoteError
from lerowds.format import INDEX_FILE, DatasetIndex, read_local_index
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.io.http import HttpClient, HttpOptions, RateGuard, Transient
from lerowds.reader.io.hub import HubPath
from lerowds.reader.io.options import RemoteOptions
from lerowds.reader.io.retry import Counters, RetryPolicy
from lerowds.reader.io.sources import FsspecSource, HttpSource

LENGTHS = [40, 30, 50, 20]
FAST = {
    "LEROWDS_CONNECT_TIMEOUT": "5",
    "LEROWDS_READ_TIMEOUT": "1",
    "LEROWDS_RETRIES": "2",
    "LEROWDS_BACKOFF": "0.01",
    "LEROWDS_BACKOFF_MAX": "0.05",
    "LEROWDS_WAIT_TIMEOUT": "60",
}
HOSTILE = (
    "../../../victim/private/resolve/main/shards/shard-000000.tar",
    "/etc/hostname",
    "shards/%2e%2e/%2e%2e/%2E%2E/victim/shard-000000.tar",
    "shards/..%2f..%2fvictim.tar",
    "shards//shard-000000.tar",
    "shards/./shard-000000.tar",
    "shards\\..\\..\\victim.tar",
)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes of 20..50 frames, one 32x32 camera, in one shard."""
    return video_converted(tmp_path_factory.mktemp("hostile"), "lerowds/hostile", LENGTHS)


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)


def _first_span(root: Path) -> tuple[str, int, int]:
    index, table = read_local_index(root)
    return index.shards[int(table["shard"][0])].name, int(table["offset"][0]), int(table["size"][0])


# ----------------------------------------------------------------------------------------------- slow server
def test_rate_guard_cuts_a_slow_body_and_names_the_rate() -> None:
    now = [0.0]
    guard = RateGuard(1000.0, 2.0, clock=lambda: now[0])
    for _ in range(3):  # 3 windows of 2 s at 1,500 bytes/s pass
        now[0] += 2.0
        guard.add(3000)
    now[0] += 2.5
    with pytest.raises(Transient, match=r"too slow: 400 bytes/s over 2\.5s, under the minimum of 1000"):
        guard.add(1000)
    off = RateGuard(0.0, 1.0, clock=lambda: now[0])
    now[0] += 100
    off.add(1)  # 0 turns the check off
    with pytest.raises(ConfigError, match="min_rate_bps"):
        HttpOptions(min_rate_bps=-1)
    opts = RemoteOptions.from_env({"LEROWDS_MIN_RATE": "5000", "LEROWDS_RATE_WINDOW": "3"})
    assert (opts.http.min_rate_bps, opts.http.rate_window_s) == (5000, 3)
    assert (HttpOptions().min_rate_bps, HttpOptions().rate_window_s) == (1024.0, 30.0)


@pytest.mark.timeout(60)
def test_dribbling_server_fails_on_the_minimum_rate(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One byte every 50 ms (20 bytes/s, never silent as long as the read timeout): each attempt is cut
    after the rate window, resumed, cut again, then the read fails naming episode, URL and rate (the first
    of the concurrent downloads to fail: any episode of the shard)."""
    monkeypatch.setenv("LEROWDS_MIN_RATE", "1000")
    monkeypatch.setenv("LEROWDS_RATE_WINDOW", "0.5")
    shard, _, _ = _first_span(converted)
    with LoopbackServer(converted) as srv:
        srv.add(Fault("trickle", shard, times=-1, stall_s=0.05, trickle_bytes=1))
        ds = LeRobotWebDataset(srv.url, episode_pool_size=2, shuffle=False, cache_dir=tmp_path)
        pattern = (
            rf"episode \d \({shard} bytes \d+-\d+\): {srv.url}/{shard}: failed after 2 "
            r"attempts; last error: too slow: \d+ bytes/s over [\d.]+s, under the minimum of 1000 bytes/s"
        )
        with pytest.raises(RemoteError, match=pattern):
            next(iter(ds))
        ds._store.close()
        assert srv.faults_served["trickle"] >= 2


@pytest.mark.timeout(60)
def test_dribbling_server_fails_within_the_documented_wait(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same server under the default minimum rate (its first check is 30 s in): the consumer's wait for
    the episode is bounded by ``LEROWDS_WAIT_TIMEOUT`` from when it starts, download in flight or not."""
    monkeypatch.setenv("LEROWDS_WAIT_TIMEOUT", "1")
    shard, _, _ = _first_span(converted)
    with LoopbackServer(converted) as srv:
        srv.add(Fault("trickle", shard, times=-1, stall_s=0.05, trickle_bytes=1))
        ds = LeRobotWebDataset(srv.url, episode_pool_size=2, shuffle=False, cache_dir=tmp_path)
        with pytest.raises(
            RemoteError, match=rf"episode 0 \({shard} .*not downloaded after 1s \(LEROWDS_WAIT_TIMEOUT\)"
        ):
            next(iter(ds))
        ds._store.close()


def _all_hung_up(srv: LoopbackServer) -> bool:
    """Whether the client hung up on every "slow_headers" answer (closed its socket, not left a thread in a
    read): the server notices at its next byte, so this waits, boundedly, for that."""
    for _ in range(200):
        if srv.hangups == srv.faults_served["slow_headers"]:
            return True
        time.sleep(0.05)
    return False


def test_header_timeout_setting() -> None:
    assert HttpOptions().header_timeout_s == RemoteOptions().header_timeout_s == 120.0
    assert RemoteOptions.from_env({"LEROWDS_HEADER_TIMEOUT": "7.5"}).http.header_timeout_s == 7.5
    for bad in ("0", "-1"):
        with pytest.raises(ConfigError, match=r"LEROWDS_HEADER_TIMEOUT=.*header_timeout_s must be .*> 0"):
            RemoteOptions.from_env({"LEROWDS_HEADER_TIMEOUT": bad})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "deadline"), [(INDEX_FILE, "0.5"), ("episodes.parquet", "1")])
def test_dribbled_headers_fail_the_open(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch, name: str, deadline: str
) -> None:
    """A server that sends its status line and headers one byte at a time, each well inside the read
    timeout, and never ends them: opening the dataset fails on the header deadline, retried, naming the URL.
    (The deadline is shortest where no well-served request is held to it, as for index.json here.)"""
    monkeypatch.setenv("LEROWDS_HEADER_TIMEOUT", deadline)
    with LoopbackServer(converted) as srv:
        srv.add(Fault("slow_headers", name, times=-1, stall_s=0.1))
        pattern = (
            rf"{re.escape(srv.url)}/{re.escape(name)}: failed after 2 attempts; last error: "
            rf"no response headers arrived within {deadline}s of sending the request \(LEROWDS_HEADER_TIMEOUT"
        )
        with pytest.raises(RemoteError, match=pattern):
            LeRobotWebDataset(srv.url, cache_dir=tmp_path)
        assert srv.faults_served["slow_headers"] == 2
        assert _all_hung_up(srv)


@pytest.mark.timeout(60)
def test_dribbled_headers_fail_the_episode_download(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same server for the shard only: the download fails on the header deadline, long before the
    consumer's wait (60 s here), naming episode, URL and cause; no download thread is left in a read."""
    monkeypatch.setenv("LEROWDS_HEADER_TIMEOUT", "1")
    shard, _, _ = _first_span(converted)
    with LoopbackServer(converted) as srv:
        srv.add(Fault("slow_headers", shard, times=-1, stall_s=0.1))
        ds = LeRobotWebDataset(srv.url, episode_pool_size=2, shuffle=False, cache_dir=tmp_path)
        pattern = (
            rf"episode \d \({shard} bytes \d+-\d+\): {srv.url}/{shard}: failed after 2 attempts; "
            r"last error: no response headers arrived within 1s"
        )
        with pytest.raises(RemoteError, match=pattern):
            next(iter(ds))
        ds._store.close()
        assert srv.faults_served["slow_headers"] >= 2
        assert _all_hung_up(srv)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("via", ["https", "http proxy", "https proxy tunnel"])
def test_dribbled_headers_over_tls_and_proxies(
    blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    """The deadline holds for https (headers dribbled through TLS), a plain request through a proxy, and a
    proxy that dribbles its answer to ``CONNECT``."""
    root, _ = blob
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_CA))
    retry = RetryPolicy(attempts=2, backoff_s=0.01, backoff_max_s=0.05)
    client = HttpClient(HttpOptions(connect_timeout_s=5, read_timeout_s=1, header_timeout_s=0.5, retry=retry))
    with LoopbackServer(root, tls=via == "https") as srv:
        url, path = f"{srv.url}/blob.bin", "blob.bin"
        if via == "http proxy":
            monkeypatch.setenv("HTTP_PROXY", srv.base)
            url = "http://dataset.invalid/data/blob.bin"
        elif via == "https proxy tunnel":
            monkeypatch.setenv("HTTPS_PROXY", srv.base)
            url, path = "https://dataset.invalid/data/blob.bin", "dataset.invalid:443"
        srv.add(Fault("slow_headers", path, times=-1, stall_s=0.1))
        with pytest.raises(
            RemoteError, match=r"failed after 2 attempts; last error: .*no response headers arrived"
        ):
            client.get_range(url, 0, 100, lambda pos, data: None, what="t", counters=Counters())
        assert srv.faults_served["slow_headers"] == 2
        assert _all_hung_up(srv)


# ----------------------------------------------------------------------------------------------- confinement
def test_url_builder_refuses_names_that_leave_the_dataset() -> None:
    base = "https://hub.test/datasets/org/name/resolve/0123/sub"
    source = HttpSource(base, HttpClient(HttpOptions()))
    assert source.url("shards/shard-000001.tar") == f"{base}/shards/shard-000001.tar"
    assert source.url("a b/c?d#e.tar") == f"{base}/a%20b/c%3Fd%23e.tar"  # quoted: no query, no fragment
    for bad in HOSTILE:
        with pytest.raises(FormatError, match=re.escape(repr(bad))):
            source.url(bad)
    fs = FsspecSource("memory://confined")
    for bad in HOSTILE:
        with pytest.raises(FormatError, match=re.escape(repr(bad))):
            fs.url(bad)
    for url in ("hf://datasets/org/../victim", "hf://datasets/org/name/../../victim", "hf://datasets/o/n@.."):
        with pytest.raises(ConfigError, match="not a"):
            HubPath.parse(url)


def _hostile_copy(src: Path, out: Path, name: str) -> Path:
    """A copy of ``src`` whose index names its first shard ``name`` (as a publisher could write it)."""
    shutil.copytree(src, out)
    index = DatasetIndex.from_bytes((out / INDEX_FILE).read_bytes(), "index")
    shards = (dataclasses.replace(index.shards[0], name=name), *index.shards[1:])
    (out / INDEX_FILE).write_bytes(dataclasses.replace(index, shards=shards).to_bytes())
    return out


def _read_first(source: str, cache: Path) -> None:
    ds = LeRobotWebDataset(source, episode_pool_size=2, shuffle=False, cache_dir=cache)
    try:
        next(iter(ds))
    finally:
        ds._store.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", HOSTILE[:3])
def test_hostile_shard_name_never_leaves_the_dataset_over_https(
    converted: Path, tmp_path: Path, fast: None, name: str
) -> None:
    root = _hostile_copy(converted, tmp_path / "served" / "data", name)
    (tmp_path / "served" / "victim").mkdir()  # what a request that left /data/ would find
    with LoopbackServer(root) as srv:
        with pytest.raises(FormatError, match=re.escape(repr(name))):
            _read_first(srv.url, tmp_path / "cache")
        targets = [s.target for s in srv.seen]
    assert targets and all(t in (f"/data/{INDEX_FILE}", "/data/episodes.parquet") for t in targets), targets


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", HOSTILE[:3])
def test_hostile_shard_name_never_leaves_the_repository_over_hf(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Through ``hf://`` with a token: no request for another repository (or another revision)."""
    root = _hostile_copy(converted, tmp_path / "repo", name)
    hub = HubRepo("lerowds/hostile", token="hf_test_token")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    with LoopbackServer(root, hub=hub) as srv:
        use_hub(monkeypatch, endpoint=srv.base)
        with pytest.raises(FormatError, match=re.escape(repr(name))):
            _read_first("hf://datasets/lerowds/hostile", tmp_path / "cache")
        # huggingface_hub >= 1.x itself asks the endpoint for its agent registry (once a day, no dataset input)
        targets = [s.target for s in srv.seen if s.target != "/api/agent-harnesses"]
    prefix = "/datasets/lerowds/hostile/resolve/"
    allowed = {
        f"{prefix}main/{INDEX_FILE}",
        f"{prefix}{hub.commit}/{INDEX_FILE}",
        f"{prefix}{hub.commit}/episodes.parquet",
    }
    assert targets and set(targets) <= allowed, targets


# ----------------------------------------------------------------------------------------------- responses
@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(3).randbytes(50_000)
    (tmp_path / "blob.bin").write_bytes(data)
    return tmp_path, data


def _client() -> HttpClient:
    retry = RetryPolicy(attempts=4, backoff_s=0.01, backoff_max_s=0.05)
    return HttpClient(HttpOptions(connect_timeout_s=5, read_timeout_s=5, retry=retry))


def test_compressed_response_is_refused_naming_the_encoding(blob: tuple[Path, bytes]) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        srv.add(Fault("gzip", "blob.bin", times=-1))
        url = f"{srv.url}/blob.bin"
        pattern = rf"{re.escape(url)}: the server sent Content-Encoding: gzip .*\(not retried\)"
        with pytest.raises(RemoteError, match=pattern):
            _client().get_range(url, 0, 1000, lambda pos, data: None, what="t", counters=Counters())
        with pytest.raises(RemoteError, match=pattern):
            _client().get(url, what="t", counters=Counters())
        assert srv.faults_served["gzip"] == 2  # one request each: not retried


@pytest.mark.timeout(60)
def test_slow_whole_file_get_is_cut_too(blob: tuple[Path, bytes]) -> None:
    """``index.json`` and ``episodes.parquet`` are whole-file GETs: the same minimum rate applies to them."""
    root, _ = blob
    retry = RetryPolicy(attempts=2, backoff_s=0.01, backoff_max_s=0.05)
    client = HttpClient(HttpOptions(read_timeout_s=5, retry=retry, min_rate_bps=1000, rate_window_s=0.3))
    with LoopbackServer(root) as srv:
        srv.add(Fault("trickle", "blob.bin", times=-1, stall_s=0.02, trickle_bytes=1))
        with pytest.raises(RemoteError, match=r"blob\.bin: failed after 2 attempts; last error: too slow"):
            client.get(f"{srv.url}/blob.bin", what="t", counters=Counters())


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/blob.bin", "data:,hello"])
def test_redirect_off_http_is_permanent_naming_both_urls(blob: tuple[Path, bytes], location: str) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        srv.redirects["a.bin"] = location
        url = f"{srv.url}/a.bin"
        pattern = (
            rf"{re.escape(url)} redirected to {re.escape(location)}, which is not an http\(s\) URL: "
            r"refused \(not retried\)"
        )
        with pytest.raises(RemoteError, match=pattern):
            _client().get_range(url, 0, 10, lambda pos, data: None, what="t", counters=Counters())
        assert len(srv.seen) == 1


# ----------------------------------------------------------------------------------------------- options
def test_remote_options_reach_the_store_of_a_dataset_and_a_mix(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``remote=RemoteOptions(...)`` overrides the environment, for a dataset and for every path of a mix."""
    import lerowds

    monkeypatch.setenv("LEROWDS_RETRIES", "5")
    opts = lerowds.RemoteOptions(retries=2, read_timeout_s=3.0, min_rate_bps=0, prefetch_threads=1)
    assert dataclasses.replace(RemoteOptions.from_env(), retries=2).retries == 2
    assert RemoteOptions.from_env().http.retry.attempts == 5
    with LoopbackServer(converted) as srv:
        ds = LeRobotWebDataset(srv.url, cache_dir=tmp_path, remote=opts)
        assert ds._store.options == opts  # type: ignore[attr-defined]
        assert ds._store.source.client.options == opts.http  # type: ignore[attr-defined]
        assert ds._store.source.client.options.retry.attempts == 2  # type: ignore[attr-defined]
        mixed = lerowds.mix({"a": srv.url, "b": srv.url}, cache_dir=tmp_path, remote=opts)
        for source in mixed.sources.values():
            assert source._store.options == opts  # type: ignore[attr-defined]
        assert LeRobotWebDataset(srv.url, cache_dir=tmp_path)._store.options.retries == 5  # type: ignore[attr-defined]
    for bad in ({"retries": 0}, {"retries": True}, {"read_timeout_s": "5"}, {"prefetch_ahead": 1.5}):
        with pytest.raises(ConfigError):
            RemoteOptions(**bad)  # type: ignore[arg-type]
