"""Settings and counters of a remote store: ``RemoteOptions`` (defaults, or from ``LEROWDS_*`` variables)
and ``RemoteStats``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from lerowds.checks import check_bool
from lerowds.errors import ConfigError
from lerowds.reader.io.http import HttpOptions
from lerowds.reader.io.prefetch import PrefetchOptions
from lerowds.reader.io.retry import RetryPolicy

# field of ``RemoteOptions`` -> the environment variable that sets it in ``RemoteOptions.from_env``
ENV = {
    "connect_timeout_s": "LEROWDS_CONNECT_TIMEOUT",
    "read_timeout_s": "LEROWDS_READ_TIMEOUT",
    "header_timeout_s": "LEROWDS_HEADER_TIMEOUT",
    "retries": "LEROWDS_RETRIES",
    "backoff_s": "LEROWDS_BACKOFF",
    "backoff_max_s": "LEROWDS_BACKOFF_MAX",
    "min_rate_bps": "LEROWDS_MIN_RATE",
    "rate_window_s": "LEROWDS_RATE_WINDOW",
    "prefetch_threads": "LEROWDS_PREFETCH_THREADS",
    "prefetch_ahead": "LEROWDS_PREFETCH_AHEAD",
    "wait_timeout_s": "LEROWDS_WAIT_TIMEOUT",
}
_COUNTS = ("retries", "prefetch_threads", "prefetch_ahead")


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteOptions:
    """Network and prefetch settings of a remote source: ``LeRobotWebDataset(url, remote=RemoteOptions(...))``.

    Without ``remote=`` they come from the ``LEROWDS_*`` variables (``from_env``); a ``RemoteOptions`` you pass
    is used as is (``dataclasses.replace(RemoteOptions.from_env(), ...)`` keeps the environment's values).
    """

    connect_timeout_s: float = 10.0  # to connect (TCP, proxy, TLS)
    read_timeout_s: float = 60.0  # longest silence while waiting for headers or body bytes
    header_timeout_s: float = 120.0  # longest wait from a request's start to its last header byte
    retries: int = 8  # attempts per request, the first included
    backoff_s: float = 0.5  # wait after the first failure; doubles per failure, with jitter
    backoff_max_s: float = 30.0
    min_rate_bps: float = 1024.0  # slowest body accepted, bytes/s (0: no minimum) ...
    rate_window_s: float = 30.0  # ... averaged over this many seconds
    prefetch_threads: int = 4  # concurrent downloads per consumer
    prefetch_ahead: int = 32  # episodes a consumer downloads ahead of the one it admits
    wait_timeout_s: float = 600.0  # longest wait for one episode, from when the wait starts
    # check each downloaded span: tar headers, members, metadata, table (and crc32 where the index has it)
    verify: bool = True

    def __post_init__(self) -> None:
        check_bool("verify", self.verify)
        try:  # the parts check every field (checks.py: counts are integers, not bools; timeouts > 0; ...)
            self.http  # noqa: B018
            self.prefetch  # noqa: B018
        except ConfigError as e:
            raise ConfigError(f"RemoteOptions: {e}") from None

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retries, backoff_s=self.backoff_s, backoff_max_s=self.backoff_max_s)

    @property
    def http(self) -> HttpOptions:
        return HttpOptions(
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
            header_timeout_s=self.header_timeout_s,
            retry=self.retry,
            min_rate_bps=self.min_rate_bps,
            rate_window_s=self.rate_window_s,
        )

    @property
    def prefetch(self) -> PrefetchOptions:
        return PrefetchOptions(
            threads=self.prefetch_threads, lookahead=self.prefetch_ahead, wait_timeout_s=self.wait_timeout_s
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RemoteOptions:
        """The defaults, each overridden by its ``LEROWDS_*`` variable where set (see ``ENV``)."""
        env = os.environ if env is None else env
        values: dict[str, float | int] = {}
        for name, var in ENV.items():
            raw = env.get(var, "")
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{var}={raw!r} is not a number") from None
            if name in _COUNTS:
                if value != int(value):
                    raise ConfigError(f"{var}={raw!r} is not a whole number")
                value = int(value)
            try:
                cls(**{name: value})  # type: ignore[arg-type]
            except ConfigError as e:
                raise ConfigError(f"{var}={raw!r}: {e}") from None
            values[name] = value
        return cls(**values)  # type: ignore[arg-type]


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
