"""``lerowds verify``: check a converted dataset against its index (sizes, sha256; ``deep``: every episode)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import av
import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.convert.contract import clip_problems, row_problems, schema_problems
from lerowds.convert.remux import count_frames
from lerowds.errors import FormatError, VerifyError
from lerowds.format import (
    EPISODES_FILE,
    INDEX_FILE,
    TAR_BLOCK,
    DatasetIndex,
    EpisodeTable,
    episode_key,
    json_member,
    layout_problems,
    parquet_member,
    read_range,
    sha256_file,
    shard_problems,
    total_problems,
    video_columns,
    video_member,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification: what was checked and every problem found (empty when all is well)."""

    root: Path
    deep: bool
    shards_checked: int
    bytes_checked: int
    episodes_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        what = f"{self.shards_checked} shards ({self.bytes_checked / 1e6:.1f} MB)"
        if self.deep:
            what += f", {self.episodes_checked} episodes (rows and frames)"
        if self.ok:
            return f"OK: {self.root}: {what} match the index\n"
        lines = [f"FAILED: {self.root}: {len(self.problems)} problem(s) in {what}:"]
        lines += [f"  {p}" for p in self.problems]
        lines.append(
            "re-convert the dataset (rerun `lerowds convert` with the same arguments redoes bad shards)"
        )
        return "\n".join(lines) + "\n"

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise VerifyError(self.format().strip())


def verify(root: str | Path, deep: bool = False) -> VerifyReport:
    """Check every shard's size and sha256 against ``index.json``; with ``deep``, every episode's members too."""
    root = Path(root)
    index_path = root / INDEX_FILE
    if not index_path.is_file():
        raise FormatError(
            f"{root}: no {INDEX_FILE}: not a finished lerowds dataset (nothing to verify against)"
        )
    index = DatasetIndex.from_bytes(index_path.read_bytes(), str(index_path))
    problems: list[str] = []
    table = _check_table(root, index, problems)
    bad_shards: set[int] = set()
    nbytes = 0
    for number, shard in enumerate(index.shards):
        path = root / shard.name
        if not path.is_file():
            problems.append(f"{shard.name}: missing")
            bad_shards.add(number)
            continue
        size = path.stat().st_size
        nbytes += size
        if size != shard.size:
            problems.append(
                f"{shard.name}: {size} bytes, the index says {shard.size} (truncated or overwritten)"
            )
            bad_shards.add(number)
            continue
        digest = sha256_file(path)
        if digest != shard.sha256:
            problems.append(
                f"{shard.name}: sha256 {digest[:16]}... differs from the index's {shard.sha256[:16]}..."
            )
            bad_shards.add(number)
    episodes = 0
    if deep and table is not None:
        for row in range(len(table)):
            problems += _check_episode(root, index, table, row)
            episodes += 1
    return VerifyReport(root, deep, len(index.shards), nbytes, episodes, tuple(problems))


def _check_table(root: Path, index: DatasetIndex, problems: list[str]) -> EpisodeTable | None:
    path = root / EPISODES_FILE
    if not path.is_file():
        problems.append(f"{EPISODES_FILE}: missing")
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != index.episodes_sha256:
        problems.append(f"{EPISODES_FILE}: sha256 differs from the index's")
        return None
    try:
        table = EpisodeTable.from_parquet_bytes(data, str(path))
    except FormatError as e:
        problems.append(str(e))
        return None
    shards = shard_problems(index, table)
    problems += total_problems(index, table) + shards
    if not shards:  # every row's shard is listed: where its members lie can be checked
        problems += layout_problems(
            table, [s.size for s in index.shards], [s.name for s in index.shards], index.video_keys
        )
    return table


def _check_episode(root: Path, index: DatasetIndex, table: EpisodeTable, row: int) -> list[str]:
    """Problems of one episode: member headers, json, parquet row count, clip frame counts."""
    e = int(table["episode_index"][row])
    length = int(table["length"][row])
    shard = int(table["shard"][row])
    if not 0 <= shard < len(index.shards):
        return [f"episode {e}: shard {shard} is not in the index"]
    path = root / index.shards[shard].name
    where = f"episode {e} ({index.shards[shard].name})"
    key = episode_key(e)
    members = [
        (json_member(key), "json_offset", "json_size"),
        (parquet_member(key), "parquet_offset", "parquet_size"),
    ]
    members += [(video_member(key, k), *video_columns(k)) for k in index.video_keys]
    features = dict(zip((m[0] for m in members[2:]), index.video_keys))  # clip member -> video key
    problems = []
    for name, off_col, size_col in members:
        offset, size = int(table[off_col][row]), int(table[size_col][row])
        try:
            header = read_range(path, offset - TAR_BLOCK, TAR_BLOCK)
            data = read_range(path, offset, size)
        except (FormatError, OSError) as e_:
            problems.append(f"{where}: {name}: unreadable ({e_})")
            continue
        stored = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        if len(name) < 100 and stored != name:
            problems.append(f"{where}: member at offset {offset} is {stored!r}, expected {name!r}")
            continue
        problem = _check_member(name, data, e, length, index, features.get(name))
        if problem:
            problems.append(f"{where}: {name}: {problem}")
    return problems


def _check_member(
    name: str, data: bytes, episode: int, length: int, index: DatasetIndex, video_key: str | None
) -> str | None:
    try:
        if name.endswith(".json"):
            meta = json.loads(data)
            if meta.get("episode_index") != episode or meta.get("length") != length:
                return (
                    f"says episode {meta.get('episode_index')} length {meta.get('length')}, expected {length}"
                )
        elif name.endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(data), use_threads=False)
            if table.num_rows != length:
                return f"{table.num_rows} rows, the episode's length is {length}"
            if "episode_index" in table.column_names and set(table.column("episode_index").to_pylist()) != {
                episode
            }:
                return "holds rows of other episodes"
            features = index.features
            contradictions = schema_problems(table.schema, features, INDEX_FILE) or row_problems(
                table, features, INDEX_FILE
            )
            if contradictions:
                return "; ".join(contradictions)
        else:
            packets, decoded = count_frames(data)
            if packets != length or decoded != length:
                return f"{packets} packets / {decoded} decoded frames, the episode's length is {length}"
            contradictions = clip_problems(data, index.fps, index.features.get(video_key or ""), INDEX_FILE)
            if contradictions:
                return "; ".join(contradictions)
    except (ValueError, pa.ArrowException, av.FFmpegError, OSError) as e:
        return f"unreadable ({e})"
    return None
