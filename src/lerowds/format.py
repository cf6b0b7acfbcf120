"""The on-disk format both halves share: dataset index, episode table, shard members. See docs/FORMAT.md.

A converted dataset is a directory::

    index.json          dataset index (written last, atomically)
    episodes.parquet    one row per episode: length, tasks, shard, byte offsets of its members
    shards/shard-000000.tar ...

Nothing here imports torch or video libraries.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.errors import ConfigError, FormatError

if TYPE_CHECKING:
    from typing_extensions import Self

FORMAT_NAME = "lerowds"
FORMAT_VERSION = 1
INDEX_FILE = "index.json"
EPISODES_FILE = "episodes.parquet"
SHARDS_DIR = "shards"
TAR_BLOCK = 512


# ----------------------------------------------------------------------------------------------- sizes
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in ``512MB``, ``64KiB``, ``1.5GB``, ``1000`` (SI units are powers of 10, ``*iB`` of 2)."""
    if isinstance(text, int):
        value = text
    else:
        m = _SIZE_RE.match(text)
        if not m or m.group(2).lower() not in _UNITS:
            raise ConfigError(
                f"bad size {text!r}: expected a number with an optional unit, e.g. 512MB or 64KiB"
            )
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise ConfigError(f"size must be > 0 bytes, got {text!r}")
    return value


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


_FILE_MODE = _file_mode()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
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


def read_range(path: str | os.PathLike[str], offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` with one pread; a short read is a FormatError naming the file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    if len(data) != size:
        raise FormatError(
            f"{path}: short read at offset {offset}: wanted {size} bytes, got {len(data)} "
            "(truncated shard? run `lerowds verify` and re-convert)"
        )
    return data


# ----------------------------------------------------------------------------------------------- tar writing
COPY_CHUNK = 1 << 20  # FileSlices are copied through a buffer of this size (hashed while it is in cache)
PARALLEL_HASH_MIN = 1 << 16  # pieces this large are sha256-hashed on a second thread


@dataclass(frozen=True, slots=True)
class FileSlices:
    """A member's content given as ``head`` bytes followed by byte ``ranges`` (offset, size) of the file
    ``path``: ``ShardWriter`` copies the ranges at write time, without holding the member in memory."""

    head: bytes
    path: str
    ranges: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.head) + sum(size for _, size in self.ranges)

    def chunks(self, buffer: bytearray) -> Iterator[bytes | memoryview]:
        """The content in pieces: ``head``, then each range read into ``buffer`` (valid until the next piece)."""
        yield self.head
        view = memoryview(buffer)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for offset, size in self.ranges:
                end = offset + size
                while offset < end:
                    want = min(len(view), end - offset)
                    got = os.preadv(fd, [view[:want]], offset)
                    if got != want:
                        raise FormatError(
                            f"{self.path}: short read at byte {offset} (wanted {want}, got {got}): the file "
                            "shrank while being copied; check the source and rerun"
                        )
                    yield view[:want]
                    offset += want
        finally:
            os.close(fd)

    def read(self) -> bytes:
        """The whole content in memory."""
        return b"".join(bytes(c) for c in self.chunks(bytearray(COPY_CHUNK)))


@dataclass(frozen=True, slots=True)
class MemberLocation:
    """Where a member's data lies inside its tar: byte offset of the data (after headers) and its size."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class EpisodeLocation:
    """Byte span of one episode's sample (from its first header to the end of its last member's padding)."""

    offset: int
    size: int
    members: tuple[MemberLocation, ...]
    crc32: int | None = None  # zlib.crc32 of the whole span, headers and padding included

    def member(self, name: str) -> MemberLocation:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


class ShardWriter:
    """Write one tar shard deterministically (fixed mtime/owner/mode) to a temp file; ``commit`` renames it.

    Members are written directly (header from ``tarfile.TarInfo.tobuf``, data, NUL padding) and the archive
    ends like ``tarfile`` ends it (two NUL blocks, then NULs up to a 10 KiB record): a plain GNU tar, without
    tarfile's 16 KiB copy loop. Use as a context manager: on an exception the temp file is removed and the
    final name never appears.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.fchmod(fd, _FILE_MODE)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._sha256 = hashlib.sha256()
        self._offset = 0
        self._done = False
        self._buffer = bytearray(COPY_CHUNK)
        # sha256 of large pieces runs on a second thread while this one computes CRC-32 and writes
        self._hasher = ThreadPoolExecutor(1, thread_name_prefix="lerowds-sha256")

    def _write(self, data: bytes | memoryview, crc: int = 0) -> int:
        """Write ``data`` into the shard's hash; return ``zlib.crc32(data, crc)``."""
        if len(data) < PARALLEL_HASH_MIN:
            self._sha256.update(data)
            self._file.write(data)
            crc = zlib.crc32(data, crc)
        else:
            hashed = self._hasher.submit(self._sha256.update, data)  # both release the GIL
            self._file.write(data)
            crc = zlib.crc32(data, crc)
            hashed.result()  # before the caller reuses ``data``'s buffer
        self._offset += len(data)
        return crc

    def add_episode(self, members: Sequence[tuple[str, bytes | FileSlices]]) -> EpisodeLocation:
        """Append one sample's members (contiguously, in the given order) and return their locations."""
        start = self._offset
        locs = []
        crc = 0
        for name, data in members:
            size = len(data)
            info = tarfile.TarInfo(name)
            info.size = size
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            header = info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape")
            padding = bytes(-size % TAR_BLOCK)
            crc = self._write(header, crc)
            locs.append(MemberLocation(name, self._offset, size))
            pieces = data.chunks(self._buffer) if isinstance(data, FileSlices) else (data,)
            for piece in pieces:
                crc = self._write(piece, crc)
            if self._offset != locs[-1].offset + size:
                raise FormatError(
                    f"{self.path}: member {name} wrote {self._offset - locs[-1].offset} of {size} bytes"
                )
            crc = self._write(padding, crc)
        return EpisodeLocation(start, self._offset - start, tuple(locs), crc)

    def commit(self) -> tuple[int, str]:
        """Finish the tar, fsync, rename it to its final name; return (size, sha256)."""
        self._write(bytes(2 * TAR_BLOCK))
        self._write(bytes(-self._offset % tarfile.RECORDSIZE))
        self._hasher.shutdown()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        self._done = True
        return self._offset, self._sha256.hexdigest()

    def abort(self) -> None:
        if not self._done:
            self._hasher.shutdown()
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None or not self._done:
            self.abort()


# ----------------------------------------------------------------------------------------------- index
@dataclass(frozen=True, slots=True)
class ShardRecord:
    """One shard as the index lists it."""

    name: str
    size: int
    sha256: str
    episodes: tuple[int, ...]
    num_frames: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "episodes": list(self.episodes),
            "num_frames": self.num_frames,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShardRecord:
        return cls(d["name"], int(d["size"]), d["sha256"], tuple(int(e) for e in d["episodes"]), int(d["num_frames"]))


@dataclass(frozen=True, slots=True)
class DatasetIndex:
    """Everything a reader needs without opening a shard. Serialised as ``index.json``."""

    repo_id: str
    revision: str | None
    codebase_version: str
    fps: int
    features: dict[str, Any]
    tasks: tuple[str, ...]  # position = task_index
    stats: dict[str, Any]
    total_episodes: int
    total_frames: int
    shards: tuple[ShardRecord, ...]
    episodes_sha256: str
    robot_type: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise FormatError(f"index: fps must be > 0, got {self.fps}")

    @property
    def video_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "video"]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") == "image"]

    @property
    def camera_keys(self) -> list[str]:
        return [k for k, f in self.features.items() if f.get("dtype") in ("video", "image")]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": {
                "repo_id": self.repo_id,
                "revision": self.revision,
                "codebase_version": self.codebase_version,
                "robot_type": self.robot_type,
            },
            "fps": self.fps,
            "features": self.features,
            "tasks": list(self.tasks),
            "stats": self.stats,
            "total_episodes": self.total_episodes,
            "total_frames": self.total_frames,
            "episodes_table": {"path": EPISODES_FILE, "sha256": self.episodes_sha256},
            "shards": [s.to_json() for s in self.shards],
            "options": self.options,
        }

    def to_bytes(self) -> bytes:
        return (json.dumps(self.to_json(), indent=1, sort_keys=False, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = INDEX_FILE) -> DatasetIndex:
        try:
            d = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FormatError(f"{where}: not valid JSON ({e}); the conversion may be incomplete, rerun it") from e
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise FormatError(f"{where}: not a lerowds index (format={d.get('format') if isinstance(d, dict) else d!r})")
        if d.get("version") != FORMAT_VERSION:
            raise FormatError(
                f"{where}: lerowds format version {d.get('version')!r}, this lerowds reads version "
                f"{FORMAT_VERSION}: upgrade lerowds or re-convert the dataset"
            )
        try:
            src = d["source"]
            return cls(
                repo_id=src["repo_id"],
                revision=src.get("revision"),
                codebase_version=src["codebase_version"],
                robot_type=src.get("robot_type"),
                fps=int(d["fps"]),
                features=d["features"],
                tasks=tuple(d["tasks"]),
                stats=d.get("stats") or {},
                total_episodes=int(d["total_episodes"]),
                total_frames=int(d["total_frames"]),
                shards=tuple(ShardRecord.from_json(s) for s in d["shards"]),
                episodes_sha256=d["episodes_table"]["sha256"],
                options=d.get("options") or {},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{where}: malformed lerowds index, missing or bad field {e}") from e

    def fingerprint(self) -> str:
        """A short id of the dataset's content (its episode table and shard checksums)."""
        h = hashlib.sha256(self.episodes_sha256.encode())
        for s in self.shards:
            h.update(s.sha256.encode())
        return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- episode table
CRC32_COLUMN = "crc32"  # episodes.parquet: zlib.crc32 of each episode's span (lets a reader check a ranged read)
EPISODE_BASE_COLUMNS = (
    "episode_index",
    "length",
    "dataset_from_index",
    "shard",
    "offset",
    "size",
    "json_offset",
    "json_size",
    "parquet_offset",
    "parquet_size",
)


def video_columns(video_key: str) -> tuple[str, str]:
    return f"video/{video_key}/offset", f"video/{video_key}/size"


@dataclass(frozen=True)
class EpisodeTable:
    """The per-episode table as numpy columns (int64), plus each episode's task list."""

    columns: dict[str, np.ndarray]
    tasks: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.columns["episode_index"])

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise FormatError(f"{EPISODES_FILE}: no column {name!r} (have {sorted(self.columns)})") from None

    def row_of(self, episode_index: int) -> int:
        """Position of ``episode_index`` in the table."""
        idx = self.columns["episode_index"]
        pos = int(np.searchsorted(idx, episode_index))
        if pos >= len(idx) or idx[pos] != episode_index:
            raise FormatError(f"episode {episode_index} is not in this dataset ({len(idx)} episodes)")
        return pos

    def to_parquet_bytes(self) -> bytes:
        arrays = {k: pa.array(v, type=pa.int64()) for k, v in self.columns.items()}
        arrays["tasks"] = pa.array([list(t) for t in self.tasks], type=pa.list_(pa.string()))
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf, compression="zstd", write_statistics=False)
        return buf.getvalue()

    @classmethod
    def from_parquet_bytes(cls, data: bytes, where: str = EPISODES_FILE) -> EpisodeTable:
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (pa.ArrowException, OSError) as e:
            raise FormatError(f"{where}: unreadable episode table ({e}); re-convert the dataset") from e
        columns = {
            name: table.column(name).to_numpy().astype(np.int64, copy=False)
            for name in table.column_names
            if name != "tasks"
        }
        missing = [c for c in EPISODE_BASE_COLUMNS if c not in columns]
        if missing:
            raise FormatError(f"{where}: episode table lacks columns {missing}")
        tasks = tuple(tuple(t) for t in table.column("tasks").to_pylist())
        if np.any(np.diff(columns["episode_index"]) <= 0):
            raise FormatError(f"{where}: episode_index must be strictly increasing")
        return cls(columns, tasks)


# ----------------------------------------------------------------------------------------------- episode json
def episode_metadata(
    episode_index: int,
    length: int,
    tasks: Sequence[str],
    dataset_from_index: int,
    fps: int,
    videos: Mapping[str, Mapping[str, Any]],
    *,
    task_indices: Sequence[int] = (),
    image_keys: Sequence[str] = (),
) -> bytes:
    """The ``<key>.json`` member: small, self-describing metadata of one episode.

    ``tasks[i]`` is the string of task index ``task_indices[i]``, so a sample's ``task`` can be resolved
    from the episode alone (e.g. in a webdataset pipeline without the index).
    """
    if task_indices and len(task_indices) != len(tasks):
        raise ValueError(f"task_indices {list(task_indices)} must pair with tasks {list(tasks)}")
    d = {
        "episode_index": episode_index,
        "length": length,
        "tasks": list(tasks),
        "task_indices": [int(i) for i in task_indices],
        "image_keys": list(image_keys),
        "dataset_from_index": dataset_from_index,
        "fps": fps,
        "videos": {k: dict(v) for k, v in videos.items()},
    }
    return json.dumps(d, ensure_ascii=False, sort_keys=True).encode()


# ----------------------------------------------------------------------------------------------- reading
def read_local_index(root: str | os.PathLike[str]) -> tuple[DatasetIndex, EpisodeTable]:
    """Load ``index.json`` and ``episodes.parquet`` of a converted dataset on local disk."""
    root = Path(root)
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        hint = (
            "a conversion is still running or was interrupted: rerun `lerowds convert` with the same arguments"
            if (root / SHARDS_DIR).is_dir()
            else "convert a LeRobot v3 dataset with `lerowds convert --repo-id ORG/NAME --output DIR`"
        )
        raise FormatError(f"{root}: no {INDEX_FILE}, not a finished lerowds dataset ({hint})")
    index = DatasetIndex.from_bytes(index_path.read_bytes(), str(index_path))
    table_bytes = (root / EPISODES_FILE).read_bytes() if (root / EPISODES_FILE).is_file() else None
    if table_bytes is None:
        raise FormatError(f"{root}: {EPISODES_FILE} is missing; re-convert the dataset")
    return index, check_episode_table(index, table_bytes, str(root / EPISODES_FILE))


def check_episode_table(index: DatasetIndex, table_bytes: bytes, where: str) -> EpisodeTable:
    """Parse ``episodes.parquet`` after checking it against the sha256 that ``index.json`` lists for it."""
    if hashlib.sha256(table_bytes).hexdigest() != index.episodes_sha256:
        raise FormatError(f"{where}: checksum does not match {INDEX_FILE}; re-convert the dataset")
    return EpisodeTable.from_parquet_bytes(table_bytes, where)
