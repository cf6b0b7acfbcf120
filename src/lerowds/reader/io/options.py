"""Settings and counters of a remote store: ``RemoteOptions`` (defaults, or from ``LEROWDS_*`` variables)
and ``RemoteStats``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from lerowds.errors import ConfigError
from lerowds.reader.io.http import HttpOptions
from lerowds.reader.io.prefetch import PrefetchOptions
from lerowds.reader.io.retry import RetryPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteOptions:
    """Network and prefetch settings of a remote store (defaults, or ``from_env``)."""

    http: HttpOptions = field(default_factory=HttpOptions)
    prefetch: PrefetchOptions = field(default_factory=PrefetchOptions)
    # check each downloaded span: tar headers, members, metadata, table (and crc32 where the index has it)
    verify: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RemoteOptions:
        """Defaults overridden by ``LEROWDS_CONNECT_TIMEOUT``, ``LEROWDS_READ_TIMEOUT``, ``LEROWDS_RETRIES``,
        ``LEROWDS_BACKOFF``, ``LEROWDS_BACKOFF_MAX``, ``LEROWDS_MIN_RATE`` (bytes/s), ``LEROWDS_RATE_WINDOW``,
        ``LEROWDS_PREFETCH_THREADS``, ``LEROWDS_PREFETCH_AHEAD`` and ``LEROWDS_WAIT_TIMEOUT`` (seconds, counts)."""
        env = os.environ if env is None else env

        def num(name: str, default: float) -> float:
            raw = env.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None

        def count(name: str, default: int) -> int:
            value = num(name, default)
            if value != int(value):
                raise ConfigError(f"{name}={env[name]!r} is not a whole number")
            return int(value)

        dr, dh, dp = RetryPolicy(), HttpOptions(), PrefetchOptions()
        retry = RetryPolicy(
            attempts=count("LEROWDS_RETRIES", dr.attempts),
            backoff_s=num("LEROWDS_BACKOFF", dr.backoff_s),
            backoff_max_s=num("LEROWDS_BACKOFF_MAX", dr.backoff_max_s),
        )
        http = HttpOptions(
            connect_timeout_s=num("LEROWDS_CONNECT_TIMEOUT", dh.connect_timeout_s),
            read_timeout_s=num("LEROWDS_READ_TIMEOUT", dh.read_timeout_s),
            retry=retry,
            min_rate_bps=num("LEROWDS_MIN_RATE", dh.min_rate_bps),
            rate_window_s=num("LEROWDS_RATE_WINDOW", dh.rate_window_s),
        )
        prefetch = PrefetchOptions(
            threads=count("LEROWDS_PREFETCH_THREADS", dp.threads),
            lookahead=count("LEROWDS_PREFETCH_AHEAD", dp.lookahead),
            wait_timeout_s=num("LEROWDS_WAIT_TIMEOUT", dp.wait_timeout_s),
        )
        return cls(http=http, prefetch=prefetch)


@dataclass(frozen=True, slots=True)
class RemoteStats:
    """Counters summed over every process that used the store (the main process and its workers)."""

    requests: int = 0  # HTTP requests / fsspec reads, retries included
    retries: int = 0
    bytes: int = 0  # bytes received
    downloaded: int = 0  # episodes downloaded
    reused: int = 0  # episodes pinned from the cache (e.g. another worker's download)
    waits: int = 0  # claims that had to wait (another process downloading it, or a full cache)
    verify_failures: int = 0  # downloads that failed verification and were fetched again
    stalls: int = 0  # admissions that had to wait for their episode to arrive (the first pool fill included)
    stall_ms: int = 0  # milliseconds consumers spent waiting for episodes to arrive
