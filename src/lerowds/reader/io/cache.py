"""A bounded on-disk cache of downloaded episode spans, shared by every process of a machine.

Layout below ``root`` (the limit bounds the bytes of all ``ep-*.bin`` and ``ep-*.part`` files under it)::

    .lock                        global lock (flock), held only for short bookkeeping sections
    <namespace>/ep-000012.part   a download in flight: created with O_EXCL, sized to the whole span at once
                                 (so it counts fully against the limit), exclusively flocked by its owner
    <namespace>/ep-000012.bin    a finished, verified span; every user holds a shared flock on its own fd

The kernel's flock holders are the refcount: a user's lock dies with its process, so a crashed worker
never pins a file forever. The last user to unpin deletes the file; a ``.part`` or ``.bin`` that nobody
holds is stale (its process died) and is evicted when space is needed. ``namespace`` is the dataset's
fingerprint, so the same episode of the same dataset is shared, and another dataset's never is.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lerowds.checks import check_size
from lerowds.errors import ConfigError

DEFAULT_CACHE_LIMIT = 8 * 10**9
_FILE = re.compile(r"^ep-\d+\.(bin|part)$")


def parse_bytes(value: int | str) -> int:
    """A cache limit in bytes: ``8_000_000``, ``"2GB"`` (10**9), ``"1.5GiB"`` (2**30); must be > 0."""
    return check_size("cache_limit", value)


def default_cache_dir(hub: bool = False) -> Path:
    """``$LEROWDS_CACHE``, else ``$HF_HOME/lerowds`` for Hub sources, else ``$XDG_CACHE_HOME/lerowds`` or
    ``~/.cache/lerowds``; episodes go to its ``episodes/`` folder."""
    if os.environ.get("LEROWDS_CACHE"):
        return Path(os.environ["LEROWDS_CACHE"]).expanduser() / "episodes"
    if hub and os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "lerowds" / "episodes"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "lerowds" / "episodes"


@dataclass(frozen=True, slots=True)
class Pin:
    """This process uses a cached episode: ``fd`` holds a shared lock on ``path`` until unpinned."""

    episode: int
    path: str
    fd: int
    size: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """This process downloads an episode into ``path`` (a ``.part`` held exclusively through ``fd``)."""

    episode: int
    path: str
    fd: int
    size: int


@dataclass(frozen=True, slots=True)
class Busy:
    """Another process is downloading the episode now: wait for it, then pin its file."""

    path: str


@dataclass(frozen=True, slots=True)
class Full:
    """No room for the episode until some user unpins: ``used`` of ``limit`` bytes are taken."""

    used: int
    limit: int


Claim = Pin | Reservation | Busy | Full


def _try_lock(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class EpisodeCache:
    """Claim, pin and unpin cached episode spans under ``root``, within ``limit`` bytes. Picklable."""

    def __init__(self, root: str | os.PathLike[str], namespace: str, limit: int) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", namespace):
            raise ValueError(f"cache namespace must be a plain folder name, got {namespace!r}")
        self.root = Path(root)
        self.namespace = namespace
        self.limit = parse_bytes(limit)
        self.dir = self.root / namespace

    def paths(self, episode: int) -> tuple[str, str]:
        stem = str(self.dir / f"ep-{episode:06d}")
        return stem + ".bin", stem + ".part"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The machine-wide bookkeeping lock (a new fd per use, so threads exclude each other too)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _files(self) -> Iterator[os.DirEntry[str]]:
        try:
            spaces = [e for e in os.scandir(self.root) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for space in spaces:
            try:
                yield from (e for e in os.scandir(space.path) if _FILE.match(e.name))
            except FileNotFoundError:
                continue

    @staticmethod
    def _unheld(path: str) -> bool:
        """Nobody holds ``path`` (its users and downloader died): the caller holds the global lock."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            return _try_lock(fd, fcntl.LOCK_EX)
        finally:
            os.close(fd)

    def _used(self, evict_stale: bool) -> int:
        used = 0
        for entry in self._files():
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                continue
            if evict_stale and self._unheld(entry.path):
                Path(entry.path).unlink(missing_ok=True)
                continue
            used += size
        return used

    def usage(self) -> int:
        """Bytes of all cached and in-flight episodes under ``root`` now."""
        return self._used(evict_stale=False)

    def files(self) -> list[str]:
        """Names of this dataset's cached and in-flight episode files (for tests and monitoring)."""
        return sorted(e.name for e in self._files() if os.path.dirname(e.path) == str(self.dir))

    def _pin_existing(self, episode: int, path: str, size: int) -> Pin | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        if os.fstat(fd).st_size != size or not _try_lock(fd, fcntl.LOCK_SH):
            os.close(fd)  # a leftover of another index with this fingerprint cannot happen; be safe anyway
            Path(path).unlink(missing_ok=True)
            return None
        return Pin(episode, path, fd, size)

    def claim(self, episode: int, size: int) -> Claim:
        """Pin the cached episode, or reserve room to download it, or say who or what is in the way."""
        if size > self.limit:
            raise ConfigError(
                f"episode {episode} is {size} bytes, more than cache_limit={self.limit}: raise cache_limit"
            )
        done, part = self.paths(episode)
        with self._locked():
            pin = self._pin_existing(episode, done, size)
            if pin is not None:
                return pin
            if os.path.exists(part):
                if not self._unheld(part):
                    return Busy(part)
                Path(part).unlink(missing_ok=True)  # its downloader died mid-way
            used = self._used(evict_stale=False)
            if used + size > self.limit:
                used = self._used(evict_stale=True)
                if used + size > self.limit:
                    return Full(used, self.limit)
            fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.ftruncate(fd, size)
            except BaseException:
                os.close(fd)
                Path(part).unlink(missing_ok=True)
                raise
            return Reservation(episode, part, fd, size)

    def commit(self, res: Reservation) -> Pin:
        """The download is complete and verified: publish it and keep it pinned."""
        done, _ = self.paths(res.episode)
        with self._locked():
            os.replace(res.path, done)
            fcntl.flock(res.fd, fcntl.LOCK_SH)  # we hold the global lock: nobody can slip in between
        return Pin(res.episode, done, res.fd, res.size)

    def abort(self, res: Reservation) -> None:
        """Drop an unfinished download."""
        with self._locked():
            Path(res.path).unlink(missing_ok=True)
            os.close(res.fd)

    def unpin(self, pin: Pin) -> bool:
        """Stop using an episode; the last user deletes its file. True if it was deleted."""
        with self._locked():
            last = _try_lock(pin.fd, fcntl.LOCK_EX)
            if last:
                Path(pin.path).unlink(missing_ok=True)
            os.close(pin.fd)
        return last
