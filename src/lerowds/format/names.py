"""Names and small I/O helpers of the on-disk format: constants, sizes, member and shard names, atomic writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from lerowds.checks import check_size
from lerowds.errors import FormatError

FORMAT_NAME = "lerowds"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
EPISODES_FILE = "episodes.parquet"
SHARDS_DIR = "shards"
TAR_BLOCK = 512


# ----------------------------------------------------------------------------------------------- sizes
def parse_size(text: str | int) -> int:
    """Bytes in ``512MB``, ``64KiB``, ``1.5GB``, ``1000`` (SI units are powers of 10, ``*iB`` of 2)."""
    return check_size("size", text)


# ----------------------------------------------------------------------------------------------- names
def episode_key(episode_index: int) -> str:
    """The tar sample key of an episode: no dots, so webdataset groups its members by it."""
    if episode_index < 0:
        raise ValueError(f"episode_index must be >= 0, got {episode_index}")
    return f"episode_{episode_index:06d}"


def shard_name(shard: int) -> str:
    """Path of shard number ``shard`` relative to the dataset root."""
    return f"{SHARDS_DIR}/shard-{shard:06d}.tar"


def json_member(key: str) -> str:
    return f"{key}.json"


def parquet_member(key: str) -> str:
    return f"{key}.parquet"


def video_member(key: str, video_key: str) -> str:
    return f"{key}.{video_key}.mp4"


# ----------------------------------------------------------------------------------------------- atomic I/O
def _file_mode() -> int:
    """What ``open()`` would give a new file (0o666 minus the umask); mkstemp's 0o600 would hide the dataset
    from other users of a shared file system."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_range(path: str | os.PathLike[str], offset: int, size: int, *, fd: int | None = None) -> bytes:
    """Read ``size`` bytes at ``offset`` with one pread (of ``fd`` if given, the open ``path``); a short
    read is a FormatError naming the file."""
    if fd is not None:
        data = os.pread(fd, size, offset)
    else:
        own = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(own, size, offset)
        finally:
            os.close(own)
    if len(data) != size:
        raise FormatError(
            f"{path}: short read at offset {offset}: wanted {size} bytes, got {len(data)} "
            "(truncated shard? run `lerowds verify` and re-convert)"
        )
    return data
