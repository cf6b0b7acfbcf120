"""Where a remote dataset's bytes come from: an http(s) base URL, or any fsspec file system.

A source reads whole small files (``index.json``, ``episodes.parquet``) and byte ranges of shards, each
with timeouts and retries. Sources are picklable and open their connections lazily in each process.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, unquote

from urllib3.util import parse_url

from lerowds.errors import ConfigError, FormatError
from lerowds.reader.io.http import HttpClient, Writer
from lerowds.reader.io.retry import (
    Counters,
    Permanent,
    RetryPolicy,
    Transient,
    call_with_retries,
    check_download,
    store,
)


class ByteSource(Protocol):
    """Read files of a converted dataset, relative to its root."""

    def url(self, relpath: str) -> str:
        """Where ``relpath`` lives, for messages."""
        ...

    def read(self, relpath: str, *, what: str, counters: Counters) -> tuple[bytes, Mapping[str, str]]:
        """The whole file and, where the source has them, response headers (lower-case names)."""
        ...

    def read_range(
        self,
        relpath: str,
        start: int,
        size: int,
        write: Writer,
        *,
        what: str,
        counters: Counters,
        cancel: threading.Event | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        """Stream bytes ``[start, start + size)`` into ``write``; a ValueError from ``verify`` refetches."""
        ...


_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")  # control characters, backslash


def confined_segments(relpath: str, where: str) -> list[str]:
    """The ``/``-separated segments of a file name from the dataset's index, refused (``FormatError`` naming
    it) unless it is a plain relative path: no empty (absolute, ``//``), ``.`` or ``..`` segment, also
    percent-encoded (``%2e%2e``, ``%2f``), no backslash or control character. Names come from an index that
    a stranger may have written; a request built from them must never leave the dataset."""
    segments = relpath.split("/")
    for seg in segments:
        plain = unquote(seg)
        if plain in ("", ".", "..") or "/" in plain or _UNSAFE_CHARS.search(plain):
            raise FormatError(
                f"{where}: file name {relpath!r} from the dataset's index is not a plain relative path (segment "
                f"{seg!r}): refused, it could read a file outside the dataset; the index is damaged or hostile"
            )
    return segments


def _base_path(url: str) -> tuple[str, str, int | None, str]:
    u = parse_url(url)  # as urllib3 will send it: dot segments removed
    return (u.scheme or "").lower(), (u.host or "").lower(), u.port, u.path or ""


class HttpSource:
    """A converted dataset served over http(s) below ``base`` (which may redirect, e.g. the Hub's resolve).

    Every URL is ``base`` + the file's quoted segments, checked to stay below ``base`` as it will be sent.
    """

    def __init__(self, base: str, client: HttpClient) -> None:
        self.base = base.rstrip("/")
        self.client = client

    def url(self, relpath: str) -> str:
        segments = confined_segments(relpath, self.base)
        url = f"{self.base}/{'/'.join(quote(seg, safe='') for seg in segments)}"
        scheme, host, port, path = _base_path(url)
        b_scheme, b_host, b_port, b_path = _base_path(self.base)
        if (scheme, host, port) != (b_scheme, b_host, b_port) or not path.startswith(
            b_path.rstrip("/") + "/"
        ):
            raise FormatError(f"{self.base}: file name {relpath!r} from the dataset's index leads outside it")
        return url

    def read(self, relpath: str, *, what: str, counters: Counters) -> tuple[bytes, Mapping[str, str]]:
        return self.client.get(self.url(relpath), what=what, counters=counters)

    def read_range(
        self,
        relpath: str,
        start: int,
        size: int,
        write: Writer,
        *,
        what: str,
        counters: Counters,
        cancel: threading.Event | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        self.client.get_range(
            self.url(relpath), start, size, write, what=what, counters=counters, cancel=cancel, verify=verify
        )

    def with_base(self, base: str) -> HttpSource:
        return HttpSource(base, self.client)


def _fsspec_call(fn: Callable[[], bytes]) -> bytes:
    """Run an fsspec read, sorting its errors into retryable and not."""
    try:
        return fn()
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotImplementedError) as e:
        raise Permanent(f"{type(e).__name__}: {e}") from None
    except (OSError, TimeoutError, ConnectionError) as e:
        raise Transient(f"{type(e).__name__}: {e}") from None


class FsspecSource:
    """A converted dataset on any fsspec file system (s3://, gs://, memory://, ...): ranged ``cat_file``."""

    def __init__(
        self, url: str, *, retry: RetryPolicy | None = None, storage_options: dict[str, Any] | None = None
    ):
        import fsspec  # a dependency; imported here, as only fsspec URLs need it

        try:
            self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            scheme = url.split("://", 1)[0]
            raise ConfigError(
                f"source {url!r}: no usable fsspec backend for {scheme}:// ({e}); install it, "
                f"e.g. `pip install s3fs` for s3://, `pip install gcsfs` for gs://"
            ) from e
        self.root = self.root.rstrip("/")
        self.protocol = url.split("://", 1)[0]
        self.retry = retry or RetryPolicy()
        self._rng = random.Random(f"lerowds-fsspec-{url}")  # backoff jitter only

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_rng"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rng = random.Random(f"lerowds-fsspec-{self.root}")

    def _path(self, relpath: str) -> str:
        return f"{self.root}/{'/'.join(confined_segments(relpath, self.url_root))}"

    @property
    def url_root(self) -> str:
        return f"{self.protocol}://{self.root}"

    def url(self, relpath: str) -> str:
        return f"{self.protocol}://{self._path(relpath)}"

    def read(self, relpath: str, *, what: str, counters: Counters) -> tuple[bytes, Mapping[str, str]]:
        path = self._path(relpath)

        def attempt() -> bytes:
            counters.add("requests")
            return _fsspec_call(lambda: self.fs.cat_file(path))

        data = call_with_retries(
            attempt, policy=self.retry, what=what, where=self.url(relpath), counters=counters, rng=self._rng
        )
        counters.add("bytes", len(data))
        return data, {}

    def read_range(
        self,
        relpath: str,
        start: int,
        size: int,
        write: Writer,
        *,
        what: str,
        counters: Counters,
        cancel: threading.Event | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        path = self._path(relpath)

        def attempt() -> None:
            counters.add("requests")
            data = _fsspec_call(lambda: self.fs.cat_file(path, start=start, end=start + size))
            counters.add("bytes", len(data))
            if len(data) != size:
                raise Transient(f"short read: {len(data)} of {size} bytes")
            store(write, 0, memoryview(data))
            check_download(verify, counters)

        call_with_retries(
            attempt,
            policy=self.retry,
            what=what,
            where=self.url(relpath),
            counters=counters,
            rng=self._rng,
            cancel=cancel,
        )
