"""``RemoteStore``: a converted dataset read over http(s), from the Hub (``hf://``) or any fsspec URL.

The index (``index.json`` + ``episodes.parquet``, checked against its sha256) is fetched once, when the
store is made; the store is then pickled into DataLoader workers. Each process that iterates starts its own
prefetcher (``prefetch.py``): every episode the consumer will admit is downloaded with one ranged read of
its whole span into the machine-wide bounded cache (``cache.py``), verified (``integrity.py``), and read
from there; ``release`` unpins it, and the last user deletes it.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from lerowds.errors import ConfigError, FormatError, RemoteError
from lerowds.format import (
    EPISODES_FILE,
    INDEX_FILE,
    ClipRange,
    DatasetIndex,
    EpisodeTable,
    check_episode_table,
)
from lerowds.reader.io.cache import (
    DEFAULT_CACHE_LIMIT,
    EpisodeCache,
    Pin,
    Reservation,
    default_cache_dir,
    parse_bytes,
)
from lerowds.reader.io.http import HttpClient
from lerowds.reader.io.hub import HubPath, endpoint, hub_headers, local_snapshot, offline
from lerowds.reader.io.integrity import Crc32, Span, span_of, verify_span
from lerowds.reader.io.local import LocalStore
from lerowds.reader.io.options import RemoteOptions, RemoteStats
from lerowds.reader.io.prefetch import Prefetcher, claim_blocking, quota_message
from lerowds.reader.io.retry import Counters
from lerowds.reader.io.sources import ByteSource, FsspecSource, HttpSource
from lerowds.reader.shared import ProcessSlots

__all__ = ["RemoteOptions", "RemoteStats", "RemoteStore", "cache_shares", "open_remote_store"]

logger = logging.getLogger(__name__)

_COUNTERS = tuple(f.name for f in fields(RemoteStats))
_COMMIT = re.compile(r"[0-9a-f]{40}")  # what the Hub's X-Repo-Commit carries


def cache_shares(threads: int = 1, workers: int = 1) -> int:
    """Consumers on this machine that share the cache limit evenly: the DataLoader ``workers`` of this
    process's loader (or ``threads``, the consumer threads of a ``lerowds.Loader``) times the ranks on this
    node (``LOCAL_WORLD_SIZE``, as torchrun sets it)."""
    try:
        local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    except ValueError:
        raise ConfigError(f"LOCAL_WORLD_SIZE={os.environ['LOCAL_WORLD_SIZE']!r} is not an integer") from None
    return max(1, workers, threads) * max(1, local)


class _Runtime:
    """What one process holds: its counters, its prefetcher, and the episodes its consumer has admitted."""

    def __init__(self, counters: ProcessSlots) -> None:
        self.pid = os.getpid()
        self.counters = counters  # this process writes its own slot of the store's shared counters
        self.lock = threading.Lock()
        self.prefetcher: Prefetcher | None = None
        self.held: dict[int, list[Pin]] = {}

    def held_bytes(self) -> int:
        with self.lock:
            return sum(p.size for pins in self.held.values() for p in pins)

    def take_all(self) -> tuple[Prefetcher | None, list[Pin]]:
        with self.lock:
            pf, self.prefetcher = self.prefetcher, None
            pins = [p for ps in self.held.values() for p in ps]
            self.held.clear()
        return pf, pins


def _shutdown(runtime: _Runtime, cache: EpisodeCache) -> None:
    """Stop downloads and unpin everything this process holds (close, garbage collection, process exit)."""
    if runtime.pid != os.getpid():
        return
    pf, pins = runtime.take_all()
    if pf is not None:
        pf.stop(join_s=0.5)
    for pin in pins:
        cache.unpin(pin)
    runtime.counters.release()  # this process's counts stay in the totals; its slot is free again


class RemoteStore:
    """An ``EpisodeStore`` whose episodes are downloaded ahead of the pool into a bounded local cache."""

    def __init__(
        self,
        source: ByteSource,
        index: DatasetIndex,
        table: EpisodeTable,
        cache: EpisodeCache,
        options: RemoteOptions,
        *,
        name: str,
        counters: Counters | None = None,
    ) -> None:
        self.source, self.index, self.table = source, index, table
        self.cache, self.options, self.name = cache, options, name
        self._shards = tuple(s.name for s in index.shards)
        # requests, bytes, ... of every process using this store (shared with its DataLoader workers)
        self._counters = ProcessSlots(_COUNTERS)
        for counter, n in (counters.snapshot() if counters is not None else {}).items():
            self._counters.add(counter, n)  # what opening the store counted (index, episode table)
        self._rt: _Runtime | None = None
        self.consumer_threads = 1  # consumer threads of this process sharing the cache (lerowds.Loader)
        # DataLoader workers sharing the cache, as the last ``prefetch`` in this process said
        self._workers = 1

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_rt"] = None  # threads, pins and counters belong to the process that made them
        return state

    def __repr__(self) -> str:
        return f"RemoteStore({self.name!r}, cache={str(self.cache.dir)!r}, limit={self.cache.limit})"

    def _runtime(self) -> _Runtime:
        rt = self._rt
        if rt is None or rt.pid != os.getpid():
            rt = self._rt = _Runtime(self._counters)
            multiprocessing.util.Finalize(self, _shutdown, args=(rt, self.cache), exitpriority=10)
        return rt

    def _span(self, row: int) -> Span:
        return span_of(self.table, self._shards, self.index.video_keys, row)

    # -------------------------------------------------------------------------------------- downloads
    def _fetch_into(self, span: Span, res: Reservation, cancel: threading.Event) -> None:
        crc = Crc32()

        def write(pos: int, data: memoryview) -> None:
            os.pwrite(res.fd, data, pos)
            crc.update(pos, data)

        def verify() -> None:
            verify_span(res.fd, span, crc.value if crc.end == span.size else None)

        self.source.read_range(
            span.shard,
            span.offset,
            span.size,
            write,
            what=span.describe(),
            counters=self._runtime().counters,
            cancel=cancel,
            verify=verify if self.options.verify else None,
        )

    def _fetch_now(self, row: int) -> Pin:
        """Fetch an episode the prefetcher does not have in its plan, in the calling thread."""
        rt, span = self._runtime(), self._span(row)
        shares = cache_shares(self.consumer_threads, self._workers)
        held, pf = rt.held_bytes(), rt.prefetcher
        if held + (pf.pinned_bytes() if pf else 0) + span.size > self.cache.limit // shares:
            raise ConfigError(quota_message(self.cache.limit // shares, shares, held, span))
        claim = claim_blocking(
            self.cache, span, cancel=threading.Event(), options=self.options.prefetch, counters=rt.counters
        )
        if isinstance(claim, Pin):
            rt.counters.add("reused")
            return claim
        if claim is None:  # pragma: no cover - the event above is never set
            raise RuntimeError(f"{span.describe()}: claim cancelled")
        try:
            self._fetch_into(span, claim, threading.Event())
            pin = self.cache.commit(claim)
        except BaseException:
            self.cache.abort(claim)
            raise
        rt.counters.add("downloaded")
        return pin

    def _acquire(self, row: int) -> Pin:
        rt = self._runtime()
        pf = rt.prefetcher
        pin = pf.take(row) if pf is not None else None
        if pin is None:
            pin = self._fetch_now(row)
        with rt.lock:
            rt.held.setdefault(row, []).append(pin)
        return pin

    def _held(self, row: int) -> Pin | None:
        rt = self._runtime()
        with rt.lock:
            pins = rt.held.get(row)
            return pins[-1] if pins else None

    # -------------------------------------------------------------------------------------- EpisodeStore
    def prefetch(self, rows: Sequence[int], *, workers: int = 1) -> None:
        """Start downloading ``rows`` (the consumer's admission order) in the background; a new call
        replaces the previous plan and unpins what the previous iteration still held. ``workers``: the
        DataLoader workers of this rank (1 in the main process), which share the cache limit evenly."""
        rt = self._runtime()
        self._workers = workers
        old, pins = rt.take_all()
        if old is not None:
            old.stop()
        for pin in pins:
            self.cache.unpin(pin)
        spans = [self._span(int(r)) for r in rows]
        if not spans:
            return
        shares = cache_shares(self.consumer_threads, self._workers)
        pf = Prefetcher(
            spans,
            cache=self.cache,
            fetch=self._fetch_into,
            options=self.options.prefetch,
            counters=rt.counters,
            held_bytes=rt.held_bytes,
            quota=self.cache.limit // shares,
            shares=shares,
        )
        with rt.lock:
            rt.prefetcher = pf
        pf.start()

    def parquet_bytes(self, row: int) -> bytes:
        pin = self._acquire(row)
        span = self._span(row)
        offset, size = span.members[1]
        data = os.pread(pin.fd, size, offset)
        if len(data) != size:
            raise FormatError(
                f"{pin.path}: {span.describe()}: short read of its cached parquet member "
                f"(wanted {size} bytes at {offset}, got {len(data)}); was the cache directory cleaned?"
            )
        return data

    def clip(self, row: int, video_key: str) -> ClipRange:
        pin = self._held(row) or self._acquire(row)
        span = self._span(row)
        pos = [*self.index.video_keys].index(video_key) if video_key in self.index.video_keys else -1
        if pos < 0:
            raise FormatError(f"{self.name}: no video key {video_key!r} (have {self.index.video_keys})")
        offset, size = span.members[2 + pos]
        return ClipRange(pin.path, offset, size)

    def release(self, row: int) -> None:
        rt = self._runtime()
        with rt.lock:
            pins = rt.held.get(row)
            pin = pins.pop(0) if pins else None
            if pins == []:
                del rt.held[row]
        if pin is None:
            logger.debug("%s: release of row %d, which this process does not hold", self.name, row)
            return
        self.cache.unpin(pin)
        if rt.prefetcher is not None:
            rt.prefetcher.notify()

    def close(self) -> None:
        _shutdown(self._runtime(), self.cache)

    # -------------------------------------------------------------------------------------- stats
    def stats(self) -> RemoteStats:
        """Requests, retries, bytes and episodes so far, summed over this store's processes."""
        return RemoteStats(**self._counters.totals())


# ----------------------------------------------------------------------------------------------- opening
def _source_of(url: str, options: RemoteOptions, counters: Counters) -> tuple[ByteSource, bytes, str]:
    """The source of ``url``, the bytes of its ``index.json``, and a name for messages."""
    if url.startswith("hf://"):
        hub = HubPath.parse(url)
        revision = hub.revision or "main"
        http = HttpSource(
            hub.resolve_base(endpoint(), revision), HttpClient(options.http, headers=hub_headers)
        )
        index_bytes, headers = http.read(INDEX_FILE, what=f"{hub}: {INDEX_FILE}", counters=counters)
        commit = headers.get("x-repo-commit")
        if commit and not _COMMIT.fullmatch(commit):
            raise RemoteError(f"{hub}: the Hub reported commit {commit!r} for {INDEX_FILE}, not a commit id")
        if commit and commit != revision:  # pin it: every worker and every later read sees this snapshot
            http = http.with_base(hub.resolve_base(endpoint(), commit))
            logger.info("%s: revision %s is commit %s", hub, revision, commit)
        return http, index_bytes, str(hub)
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        source: ByteSource = HttpSource(url, HttpClient(options.http))
    else:
        source = FsspecSource(url, retry=options.http.retry)
    index_bytes, _ = source.read(INDEX_FILE, what=f"{url}: {INDEX_FILE}", counters=counters)
    return source, index_bytes, url.rstrip("/")


def open_remote_store(
    url: str,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    cache_limit: int | str | None = None,
    options: RemoteOptions | None = None,
    verify_crc: bool = True,
) -> RemoteStore | LocalStore:
    """Open a converted dataset at ``url`` (http(s)://, hf://datasets/ORG/NAME[@REV][/subdir], fsspec URL).

    With ``HF_HUB_OFFLINE=1`` an ``hf://`` source is read from the local Hub cache instead.
    """
    options = options or RemoteOptions.from_env()
    limit = parse_bytes(DEFAULT_CACHE_LIMIT if cache_limit is None else cache_limit)
    if url.startswith("hf://") and offline():
        root = local_snapshot(HubPath.parse(url))
        logger.info("%s: HF_HUB_OFFLINE is set: reading the local Hub cache %s", url, root)
        return LocalStore(root, verify_crc=verify_crc)
    counters = Counters()
    source, index_bytes, name = _source_of(url, options, counters)
    index = DatasetIndex.from_bytes(index_bytes, source.url(INDEX_FILE))
    for shard in index.shards:  # a name that would leave the dataset is refused before any request
        source.url(shard.name)
    table_bytes, _ = source.read(EPISODES_FILE, what=f"{name}: {EPISODES_FILE}", counters=counters)
    table = check_episode_table(index, table_bytes, source.url(EPISODES_FILE))
    root = (
        Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(url.startswith("hf://"))
    )
    cache = EpisodeCache(root, index.fingerprint(), limit)
    logger.info(
        "%s: %d episodes in %d shards; cache %s (limit %d bytes)",
        name,
        len(table),
        len(index.shards),
        cache.dir,
        limit,
    )
    return RemoteStore(source, index, table, cache, options, name=name, counters=counters)
