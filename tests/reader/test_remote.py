"""Remote sources against a real HTTP server on 127.0.0.1: same samples as local, faults survived, a bounded
cache, no duplicate concurrent downloads; the Hub path offline (local Hub cache, emulated endpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import random
import shutil
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch
from conftest import video_converted
from torch.utils.data import DataLoader

from lerowds.errors import ConfigError, RemoteError
from lerowds.format import INDEX_FILE, DatasetIndex, EpisodeTable, read_local_index
from lerowds.reader.dataset import LeRobotWebDataset
from lerowds.reader.io.cache import EpisodeCache, Full, Pin, Reservation, parse_bytes
from lerowds.reader.io.http import HttpClient, HttpOptions, redirect_headers
from lerowds.reader.io.hub import HubPath
from lerowds.reader.io.integrity import CRC32_COLUMN
from lerowds.reader.io.options import RemoteOptions
from lerowds.reader.io.remote import RemoteStore
from lerowds.reader.io.retry import Counters, RetryPolicy, parse_retry_after
from lerowds.reader.io.store import LocalStore, open_store

if TYPE_CHECKING:
    from typing_extensions import Self

sys.path.insert(0, str(Path(__file__).parent))
from httpserver import Fault, HubRepo, LoopbackServer, use_hub

LENGTHS = [4, 9, 2, 12, 6, 1, 10, 7, 5, 11, 3, 8]
FAST = {  # small timeouts and backoff so that fault tests take seconds
    "LEROWDS_CONNECT_TIMEOUT": "5",
    "LEROWDS_READ_TIMEOUT": "1",
    "LEROWDS_RETRIES": "6",
    "LEROWDS_BACKOFF": "0.01",
    "LEROWDS_BACKOFF_MAX": "0.05",
    "LEROWDS_WAIT_TIMEOUT": "60",
}


# ----------------------------------------------------------------------------------------------- fixtures
def _with_crc32(src: Path, out: Path) -> Path:
    """A copy of a converted dataset whose episode table has a ``crc32`` column (CRC-32 of each span)."""
    shutil.copytree(src, out)
    index, table = read_local_index(out)
    crcs = []
    for row in range(len(table)):
        shard = out / index.shards[int(table["shard"][row])].name
        with open(shard, "rb") as f:
            f.seek(int(table["offset"][row]))
            crcs.append(zlib.crc32(f.read(int(table["size"][row]))))
    columns = dict(table.columns)
    columns[CRC32_COLUMN] = torch.tensor(crcs, dtype=torch.int64).numpy()
    data = EpisodeTable(columns, table.tasks).to_parquet_bytes()
    (out / "episodes.parquet").write_bytes(data)
    index = dataclasses.replace(index, episodes_sha256=hashlib.sha256(data).hexdigest())
    (out / INDEX_FILE).write_bytes(index.to_bytes())
    return out


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 episodes of 1..12 frames, one 32x32 camera, several episodes per ~16 kB shard."""
    return video_converted(tmp_path_factory.mktemp("remote"), "lerowds/remote", LENGTHS, shard_size=16 * 1024)


@pytest.fixture(scope="module")
def converted_crc(converted: Path) -> Path:
    return _with_crc32(converted, converted.parent / "out_crc")


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)


def _digest(sample: dict) -> str:
    h = hashlib.sha1()
    for k in sorted(sample):
        v = sample[k]
        h.update(k.encode())
        h.update(v.numpy().tobytes() if isinstance(v, torch.Tensor) else repr(v).encode())
    return h.hexdigest()


def _samples(ds: LeRobotWebDataset, num_workers: int) -> list[str]:
    return [_digest(s) for s in DataLoader(ds, batch_size=None, num_workers=num_workers)]


_LOCAL: dict[tuple[str, int, int], list[str]] = {}


def _local(root: Path, seed: int, num_workers: int) -> list[str]:
    key = (str(root), seed, num_workers)
    if key not in _LOCAL:
        _LOCAL[key] = _samples(_dataset(root, seed), num_workers)
    return _LOCAL[key]


def _dataset(source: str | Path, seed: int, **kw: object) -> LeRobotWebDataset:
    return LeRobotWebDataset(source, episode_pool_size=3, seed=seed, return_uint8=True, **kw)  # type: ignore[arg-type]


def _episode_files(cache_root: Path) -> list[Path]:
    return [p for p in cache_root.glob("*/ep-*") if p.suffix in (".bin", ".part")]


class CacheMonitor:
    """Sample the bytes of cached and in-flight episodes under a cache dir every ~2 ms; keep the maximum."""

    def __init__(self, root: Path) -> None:
        self.root, self.max_bytes, self.samples = root, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            total = 0
            for p in _episode_files(self.root):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    pass
            self.max_bytes, self.samples = max(self.max_bytes, total), self.samples + 1

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _spans(root: Path) -> list[tuple[str, int, int]]:
    """(shard name, span offset, span size) of each episode row."""
    index, table = read_local_index(root)
    return [
        (index.shards[int(table["shard"][r])].name, int(table["offset"][r]), int(table["size"][r]))
        for r in range(len(table))
    ]


# ----------------------------------------------------------------------------------------------- pure parts
def test_parse_bytes() -> None:
    assert parse_bytes(1234) == 1234
    assert parse_bytes("2GB") == 2 * 10**9
    assert parse_bytes("1.5 GiB") == int(1.5 * 2**30)
    assert parse_bytes("512kb") == 512_000
    for bad in ("2 parsecs", "", 0, -1, "0MB", True, 1.5):
        with pytest.raises(ConfigError, match="cache_limit|size"):
            parse_bytes(bad)  # type: ignore[arg-type]


def test_hub_path_parse() -> None:
    assert HubPath.parse("hf://datasets/org/name") == HubPath("org/name", None, "")
    assert HubPath.parse("hf://datasets/org/name@v1.0/sub/dir/") == HubPath("org/name", "v1.0", "sub/dir")
    assert HubPath.parse("hf://datasets/org/name@refs/pr/3/sub") == HubPath("org/name", "refs/pr/3", "sub")
    assert HubPath.parse("hf://datasets/org/name@refs%2Fpr%2F3") == HubPath("org/name", "refs/pr/3", "")
    assert str(HubPath("org/name", "refs/pr/3", "sub")) == "hf://datasets/org/name@refs%2Fpr%2F3/sub"
    for bad in ("hf://org/name", "hf://datasets/org", "hf://datasets/org/name@"):
        with pytest.raises(ConfigError, match="hf://"):
            HubPath.parse(bad)


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy, rng = RetryPolicy(backoff_s=1.0, backoff_max_s=8.0, retry_after_max_s=60.0), random.Random(0)
    for failures, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)):
        assert base / 2 <= policy.delay(failures, rng) <= base
    assert policy.delay(1, rng, retry_after=30.0) == 30.0
    assert policy.delay(1, rng, retry_after=600.0) == 60.0  # capped
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert parse_retry_after("soon") is None


def test_options_from_environment() -> None:
    opts = RemoteOptions.from_env(
        {"LEROWDS_RETRIES": "3", "LEROWDS_READ_TIMEOUT": "0.5", "LEROWDS_PREFETCH_AHEAD": "0"}
    )
    assert (opts.http.retry.attempts, opts.http.read_timeout_s, opts.prefetch.lookahead) == (3, 0.5, 0)
    assert RemoteOptions.from_env({}) == RemoteOptions()
    for bad in ({"LEROWDS_RETRIES": "x"}, {"LEROWDS_RETRIES": "2.5"}, {"LEROWDS_RETRIES": "0"}):
        with pytest.raises(ConfigError, match="LEROWDS_RETRIES|attempts"):
            RemoteOptions.from_env(bad)


def test_credentials_stay_with_their_origin() -> None:
    h = {"authorization": "Bearer x", "cookie": "c", "range": "bytes=0-1"}
    assert redirect_headers(h, "https://hub.test/a", "https://hub.test/b") == h
    assert redirect_headers(h, "https://hub.test/a", "https://cdn.test/b") == {"range": "bytes=0-1"}


# ----------------------------------------------------------------------------------------------- HTTP client
@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = random.Random(1).randbytes(300_000)
    (tmp_path / "blob.bin").write_bytes(data)
    return tmp_path, data


def _client(attempts: int = 6, read_timeout_s: float = 0.5) -> HttpClient:
    retry = RetryPolicy(attempts=attempts, backoff_s=0.01, backoff_max_s=0.05, retry_after_max_s=5)
    return HttpClient(
        HttpOptions(connect_timeout_s=5, read_timeout_s=read_timeout_s, retry=retry, chunk_bytes=8192)
    )


def _fetch(client: HttpClient, url: str, start: int, size: int, counters: Counters, **kw: object) -> bytes:
    buf = bytearray(size)

    def write(pos: int, data: memoryview) -> None:
        buf[pos : pos + len(data)] = data

    client.get_range(url, start, size, write, what="test range", counters=counters, **kw)  # type: ignore[arg-type]
    return bytes(buf)


@pytest.mark.parametrize("kind", ["drop", "429", "503", "stall", "truncate"])
def test_range_read_survives_fault(
    blob: tuple[Path, bytes], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = blob
    sleeps: list[float] = []
    if kind == "429":  # record the client's waits instead of timing them (the server does not sleep here)
        monkeypatch.setattr(time, "sleep", sleeps.append)
    with LoopbackServer(root) as srv:
        srv.add(Fault(kind, "blob.bin", times=2, retry_after="1", stall_s=1.5))  # resumed ranges too
        counters = Counters()
        got = _fetch(_client(), f"{srv.url}/blob.bin", 1000, 250_000, counters)
    assert got == data[1000:251_000]
    assert counters.snapshot()["retries"] >= 1 and srv.faults_served[kind] == 2
    if kind == "429":  # Retry-After: 1, twice: each wait at least the server's 1 s, not the 0.01 s backoff
        assert len(sleeps) == 2 and all(s >= 1.0 for s in sleeps), sleeps


def test_corrupt_body_is_fetched_again(blob: tuple[Path, bytes]) -> None:
    root, data = blob
    want = hashlib.sha256(data[:100_000]).hexdigest()
    with LoopbackServer(root) as srv:
        srv.add(Fault("corrupt", "blob.bin", start=0))
        counters, buf = Counters(), bytearray(100_000)

        def write(pos: int, chunk: memoryview) -> None:
            buf[pos : pos + len(chunk)] = chunk

        def verify() -> None:
            if hashlib.sha256(buf).hexdigest() != want:
                raise ValueError("checksum mismatch")

        _client().get_range(
            f"{srv.url}/blob.bin", 0, 100_000, write, what="t", counters=counters, verify=verify
        )
    assert bytes(buf) == data[:100_000]
    assert counters.snapshot()["verify_failures"] == 1 and srv.requests[("blob.bin", 0)] == 2


def test_permanent_failure_names_url_and_status(blob: tuple[Path, bytes]) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        srv.add(Fault("503", "blob.bin", times=-1))
        url = f"{srv.url}/blob.bin"
        with pytest.raises(RemoteError, match=r"test range: .*blob\.bin: failed after 3 attempts.*HTTP 503"):
            _fetch(_client(attempts=3), url, 0, 10, Counters())
        assert srv.requests[("blob.bin", 0)] == 3
        with pytest.raises(RemoteError, match=r"HTTP 404.*not retried"):
            _fetch(_client(), f"{srv.url}/missing.bin", 0, 10, Counters())
        assert srv.requests[("missing.bin", 0)] == 0  # 404 before any range is served


def test_stall_is_bounded_by_the_read_timeout(blob: tuple[Path, bytes]) -> None:
    root, _ = blob
    with LoopbackServer(root) as srv:
        srv.add(Fault("stall", "blob.bin", times=-1, stall_s=3.0))
        counters = Counters()
        # The stalled server hangs up after 3 s without answering: "timed out" (not a dropped connection)
        # shows the client gave up on its 0.2 s read timeout first, on both attempts.
        with pytest.raises(RemoteError, match="failed after 2 attempts.*timed out"):
            _fetch(_client(attempts=2, read_timeout_s=0.2), f"{srv.url}/blob.bin", 0, 10, counters)
        assert srv.faults_served["stall"] == 2 and counters.snapshot()["retries"] == 1


# ----------------------------------------------------------------------------------------------- cache
def test_cache_refcount_reuse_and_stale_files(tmp_path: Path) -> None:
    cache = EpisodeCache(tmp_path, "ds", 1000)
    res = cache.claim(3, 400)
    assert isinstance(res, Reservation)
    assert cache.claim(3, 400).__class__.__name__ == "Busy"  # another consumer waits, never downloads twice
    os.pwrite(res.fd, b"x" * 400, 0)
    first = cache.commit(res)
    second = cache.claim(3, 400)  # a second user (own fd, own shared lock) reuses the file
    assert isinstance(second, Pin) and second.path == first.path
    assert isinstance(cache.claim(4, 700), Full)  # 400 + 700 > 1000
    assert cache.unpin(first) is False and Path(second.path).exists()
    assert cache.unpin(second) is True and cache.files() == []
    # files nobody holds (their process died) are evicted when room is needed
    (tmp_path / "ds" / "ep-000007.bin").write_bytes(b"y" * 500)
    (tmp_path / "ds" / "ep-000008.part").write_bytes(b"z" * 400)
    assert cache.usage() == 900
    res = cache.claim(9, 600)
    assert isinstance(res, Reservation) and cache.files() == ["ep-000009.part"]
    cache.abort(res)
    with pytest.raises(ConfigError, match="more than cache_limit"):
        cache.claim(1, 1001)


# ----------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("seed", [0, 5])
def test_remote_matches_local(
    converted: Path, tmp_path: Path, fast: None, seed: int, num_workers: int
) -> None:
    with LoopbackServer(converted) as srv:
        ds = _dataset(srv.url, seed, cache_dir=tmp_path, cache_limit="1MB")
        assert isinstance(ds._store, RemoteStore)
        assert _samples(ds, num_workers) == _local(converted, seed, num_workers)
        assert srv.requests[(INDEX_FILE, None)] == 1  # fetched once, then pickled into the workers
        assert max(srv.max_inflight.values()) == 1
        stats = ds._store.stats()
    assert stats.downloaded + stats.reused >= len(LENGTHS)
    assert _episode_files(tmp_path) == []


def test_faults_give_identical_samples_in_a_bounded_cache(
    converted_crc: Path, tmp_path: Path, fast: None
) -> None:
    spans = _spans(converted_crc)
    largest = max(size for _, _, size in spans)
    limit = 2 * 4 * largest  # 2 workers x (pool of 3 + 1 ahead); far less than the dataset
    assert limit < sum(size for _, _, size in spans)
    kinds = ["drop", "429", "503", "stall", "truncate", "corrupt", "drop", "corrupt"]
    with LoopbackServer(converted_crc) as srv:
        for kind, (shard, offset, _) in zip(kinds, spans[1:]):
            srv.add(Fault(kind, shard, start=offset, retry_after="1", stall_s=1.5))
        ds = _dataset(srv.url, 3, cache_dir=tmp_path, cache_limit=limit)
        with CacheMonitor(tmp_path) as mon:
            got = _samples(ds, 2)
        stats = ds.remote_stats()
        assert max(srv.max_inflight.values()) == 1  # no two workers fetched the same bytes at once
        served = dict(srv.faults_served)
    assert got == _local(converted_crc, 3, 2)
    assert served == {"drop": 2, "429": 1, "503": 1, "stall": 1, "truncate": 1, "corrupt": 2}
    assert stats["retries"] >= len(kinds) and stats["verify_failures"] == 2
    assert mon.samples > 10 and 0 < mon.max_bytes <= limit
    assert _episode_files(tmp_path) == []


def test_corrupt_parquet_member_is_caught_without_checksum(
    converted: Path, tmp_path: Path, fast: None
) -> None:
    index, table = read_local_index(converted)
    row = 3
    offset = int(table["offset"][row])
    at = int(table["parquet_offset"][row]) - offset + int(table["parquet_size"][row]) // 2
    with LoopbackServer(converted) as srv:
        srv.add(Fault("corrupt", index.shards[int(table["shard"][row])].name, start=offset, at=at))
        ds = _dataset(srv.url, 1, cache_dir=tmp_path)
        assert _samples(ds, 0) == _local(converted, 1, 0)
        assert ds._store.stats().verify_failures == 1


@pytest.mark.parametrize("num_workers", [0, 2])
def test_failing_episode_raises_named_error(
    converted: Path, tmp_path: Path, fast: None, num_workers: int
) -> None:
    shard, offset, size = _spans(converted)[6]
    with LoopbackServer(converted) as srv:
        srv.add(Fault("503", shard, start=offset, times=-1))
        ds = _dataset(srv.url, 2, cache_dir=tmp_path)
        pattern = rf"episode 6 \({shard} bytes {offset}-{offset + size - 1}\).*{srv.url}/{shard}.*HTTP 503"
        it = iter(DataLoader(ds, batch_size=None, num_workers=num_workers))
        with pytest.raises(RemoteError, match=pattern):
            for _ in it:
                pass
        if num_workers:  # as the iterator's __del__ would, without waiting for the garbage collector
            it._shutdown_workers()  # type: ignore[attr-defined]
        ds._store.close()  # unpins what the broken iteration held here; workers did so when they exited
    assert _episode_files(tmp_path) == []


def test_permanent_failure_behind_slow_downloads_surfaces_at_once(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 404 on episode 2 while episodes 0 and 1 still trickle in: the consumer, waiting on episode 0,
    raises the 404 naming episode 2, its shard and URL, instead of waiting out its deadline (a hang then
    shows as "episode 0: not downloaded after 3s") and blaming the healthy episode 0."""
    monkeypatch.setenv("LEROWDS_WAIT_TIMEOUT", "3")
    spans = _spans(converted)
    shard, offset, size = spans[2]
    with LoopbackServer(converted) as srv:
        srv.add(Fault("404", shard, start=offset, times=-1))
        for name in {s for s, _, _ in spans}:  # every other episode takes ~10 s or more
            srv.add(Fault("trickle", name, times=-1, stall_s=max(0.05, 10 / (spans[0][2] / 64))))
        ds = LeRobotWebDataset(srv.url, episode_pool_size=3, shuffle=False, cache_dir=tmp_path)
        pattern = rf"episode 2 \({shard} bytes {offset}-{offset + size - 1}\).*{srv.url}/{shard}.*HTTP 404"
        with pytest.raises(RemoteError, match=pattern):
            next(iter(ds))
        ds._store.close()


def test_too_small_cache_is_an_error_not_a_hang(converted: Path, tmp_path: Path, fast: None) -> None:
    largest = max(size for _, _, size in _spans(converted))
    with LoopbackServer(converted) as srv:
        ds = _dataset(srv.url, 0, cache_dir=tmp_path, cache_limit=2 * largest)  # the pool needs 3
        with pytest.raises(ConfigError, match="cache_limit is too small"):
            _samples(ds, 0)
        assert ds.remote_stats()["waits"] == 0  # refused at once: no claim waited for room in the cache


def test_dataloader_workers_share_the_cache_limit(
    converted: Path, tmp_path: Path, fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each of 2 DataLoader workers gets half the cache limit: the worker count reaches the store (which
    imports no torch) through ``prefetch(rows, workers=...)``."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    largest = max(size for _, _, size in _spans(converted))
    with LoopbackServer(converted) as srv:
        ds = _dataset(srv.url, 0, cache_dir=tmp_path, cache_limit=2 * largest)
        it = iter(DataLoader(ds, batch_size=None, num_workers=2))
        with pytest.raises(
            ConfigError, match=rf"{2 * largest} bytes shared by 2 consumer\(s\) on this machine"
        ):
            for _ in it:
                pass
        it._shutdown_workers()  # type: ignore[attr-defined]
        ds._store.close()


def test_store_pickles_without_threads(converted: Path, tmp_path: Path, fast: None) -> None:
    with LoopbackServer(converted) as srv:
        store = open_store(srv.url, cache_dir=tmp_path)
        assert isinstance(store, RemoteStore)
        store.prefetch(range(len(LENGTHS)))
        copy = pickle.loads(pickle.dumps(store))
        assert copy._rt is None or copy._rt.prefetcher is None
        store.close()
        local = LocalStore(converted)
        for row in (0, 5, 11):
            assert copy.parquet_bytes(row) == local.parquet_bytes(row)
            clip, want = (
                copy.clip(row, "observation.images.front"),
                local.clip(row, "observation.images.front"),
            )
            with open(clip.path, "rb") as a, open(want.path, "rb") as b:
                a.seek(clip.offset)
                b.seek(want.offset)
                assert a.read(clip.size) == b.read(want.size)
            copy.release(row)
        copy.close()
    assert _episode_files(tmp_path) == []


def _read_all(
    store: RemoteStore, local: LocalStore, rows: list[int], barrier: object, errors: object
) -> None:
    try:
        barrier.wait(30)  # type: ignore[attr-defined]
        for row in rows:
            if store.parquet_bytes(row) != local.parquet_bytes(row):
                raise AssertionError(f"row {row}: parquet member differs")
        barrier.wait(30)  # type: ignore[attr-defined]  # everybody holds every episode now
        for row in rows:
            store.release(row)
    except BaseException as e:
        errors.put(repr(e))  # type: ignore[attr-defined]
        raise


def test_processes_share_downloads_never_duplicate_them(converted: Path, tmp_path: Path, fast: None) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    rows = list(range(len(LENGTHS)))
    with LoopbackServer(converted, latency_s=0.05) as srv:
        store = open_store(srv.url, cache_dir=tmp_path)
        assert isinstance(store, RemoteStore)
        barrier, errors = ctx.Barrier(4), ctx.Queue()
        procs = [
            ctx.Process(
                target=_read_all, args=(store, LocalStore(converted), rows[i:] + rows[:i], barrier, errors)
            )
            for i in (0, 0, 3, 7)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert errors.empty() and [p.exitcode for p in procs] == [0, 0, 0, 0]
        ranges = {k: n for k, n in srv.requests.items() if k[0].startswith("shards/")}
        assert len(ranges) == len(LENGTHS) and set(ranges.values()) == {1}  # one download per episode
        assert max(srv.max_inflight.values()) == 1
        assert store.stats().reused == 3 * len(LENGTHS)
    assert _episode_files(tmp_path) == []


# ----------------------------------------------------------------------------------------------- other sources
def test_hf_offline_reads_the_local_hub_cache(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = "c0ffee" * 6 + "c0ff"
    repo = tmp_path / "hf" / "hub" / "datasets--lerowds--remote"
    shutil.copytree(converted, repo / "snapshots" / commit / "converted")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    # must not be contacted; the cache as huggingface_hub resolves it from HF_HOME
    use_hub(monkeypatch, endpoint="http://127.0.0.1:9", offline=True, cache=str(tmp_path / "hf" / "hub"))
    ds = _dataset("hf://datasets/lerowds/remote/converted", 4)
    assert isinstance(ds._store, LocalStore) and commit in str(ds._store.root)
    assert _samples(ds, 0) == _local(converted, 4, 0)
    with pytest.raises(RemoteError, match="HF_HUB_OFFLINE is set"):
        open_store("hf://datasets/lerowds/other")


def test_hf_endpoint_resolves_pins_commit_and_sends_token(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: None
) -> None:
    hub = HubRepo("lerowds/remote", token="hf_test_token")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("LEROWDS_PREFETCH_THREADS", "1")  # (concurrent threads may each resolve a shard once)
    with LoopbackServer(converted.parent, hub=hub) as srv:
        use_hub(monkeypatch, endpoint=srv.base)
        ds = _dataset("hf://datasets/lerowds/remote/out", 0, cache_dir=tmp_path)
        assert isinstance(ds._store, RemoteStore)
        assert f"/resolve/{hub.commit}/out" in ds._store.source.base  # type: ignore[attr-defined]
        assert _samples(ds, 2) == _local(converted, 0, 2)
        assert srv.auth_seen and set(srv.auth_seen) == {"Bearer hf_test_token"}
        assert any(rel.startswith("out/shards/") for rel, _ in srv.requests)  # through the "CDN" redirect
        shard_resolves = {rel: n for rel, n in srv.resolves.items() if rel.endswith(".tar")}
        assert max(shard_resolves.values()) <= 2  # each worker resolves a shard once, then reuses the target
        assert sum(shard_resolves.values()) < ds._store.stats().downloaded
        monkeypatch.setenv("HF_TOKEN", "wrong")
        with pytest.raises(RemoteError, match="HTTP 401.*HF_TOKEN"):
            open_store("hf://datasets/lerowds/remote/out", cache_dir=tmp_path)


def test_fsspec_memory_source(converted: Path, tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for p in converted.rglob("*"):
        if p.is_file() and ".lerowds" not in p.parts:
            fs.pipe_file(f"/remote-test/{p.relative_to(converted)}", p.read_bytes())
    try:
        ds = _dataset("memory://remote-test", 6, cache_dir=tmp_path)
        assert isinstance(ds._store, RemoteStore)
        assert _samples(ds, 0) == _local(converted, 6, 0)
    finally:
        fs.rm("/remote-test", recursive=True)
    index, _ = read_local_index(converted)
    assert isinstance(index, DatasetIndex)
