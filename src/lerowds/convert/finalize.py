"""Finish a conversion: the episode table, then ``index.json`` last, from the plan and the done-records."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lerowds.convert.plan import PlannedShard
from lerowds.convert.state import ConversionPlan, DoneRecord, EpisodeRecord, load_plan, read_done
from lerowds.errors import ConversionError
from lerowds.format import (
    CRC32_COLUMN,
    EPISODE_BASE_COLUMNS,
    EPISODES_FILE,
    INDEX_FILE,
    DatasetIndex,
    EpisodeTable,
    ShardRecord,
    atomic_write_bytes,
    episode_key,
    json_member,
    nonfinite_stats,
    parquet_member,
    video_columns,
    video_member,
)

log = logging.getLogger(__name__)


def record_matches(output: Path, record: DoneRecord, planned: PlannedShard, fingerprint: str) -> bool:
    """Whether ``record`` belongs to this plan and shard and its tar is in place with the recorded size."""
    path = output / record.name
    return (
        record.plan == fingerprint
        and tuple(e.episode_index for e in record.episodes) == planned.episodes
        and path.is_file()
        and path.stat().st_size == record.size
    )


def collect_done(output: Path, plan: ConversionPlan) -> tuple[list[DoneRecord], list[int]]:
    """The done-records of every planned shard, and the shards that are not (or no longer) done."""
    records, missing = [], []
    for planned in plan.shards:
        record = read_done(output, planned.shard)
        if record is not None and record_matches(output, record, planned, plan.fingerprint):
            records.append(record)
        else:
            missing.append(planned.shard)
    return records, missing


def episode_table(records: list[DoneRecord], video_keys: list[str]) -> EpisodeTable:
    """One row per episode (ascending episode_index): its length, shard and the DATA offsets of its members."""
    rows: list[tuple[int, EpisodeRecord]] = [(r.shard, e) for r in records for e in r.episodes]
    rows.sort(key=lambda x: x[1].episode_index)
    names = list(EPISODE_BASE_COLUMNS) + [c for k in video_keys for c in video_columns(k)]
    cols: dict[str, list[int]] = {n: [] for n in names}
    for shard, e in rows:
        key = episode_key(e.episode_index)
        loc = e.location
        js, pq = loc.member(json_member(key)), loc.member(parquet_member(key))
        values = [
            e.episode_index,
            e.length,
            e.dataset_from_index,
            shard,
            loc.offset,
            loc.size,
            js.offset,
            js.size,
            pq.offset,
            pq.size,
        ]
        for k in video_keys:
            clip = loc.member(video_member(key, k))
            values += [clip.offset, clip.size]
        for n, v in zip(names, values):
            cols[n].append(v)
    columns = {n: np.asarray(v, dtype=np.int64) for n, v in cols.items()}
    crcs = [e.location.crc32 for _, e in rows]
    if all(c is not None for c in crcs):
        columns[CRC32_COLUMN] = np.asarray(crcs, dtype=np.int64)
    return EpisodeTable(columns, tuple(e.tasks for _, e in rows))


def _finite_stats(stats: dict[str, Any], output: Path) -> dict[str, Any]:
    """The source's stats with NaN and infinite values as ``null`` (strict JSON; lerowds reads them back as
    NaN, as lerobot reads its own ``stats.json``), each one logged: such a statistic cannot normalize."""
    clean, where = nonfinite_stats(stats)
    for path in where:
        feature, _, statistic = path.rpartition("/")
        log.warning(
            "%s: meta/stats.json: statistic %r of feature %r is NaN or infinite; written to %s as null "
            "(read back as NaN): normalizing with it gives NaN, recompute the source's stats",
            output,
            statistic,
            feature,
            INDEX_FILE,
        )
    return clean


def finalize(output: str | Path) -> DatasetIndex:
    """Write ``episodes.parquet`` and then ``index.json`` once every planned shard has a done-record."""
    output = Path(output)
    plan = load_plan(output)
    records, missing = collect_done(output, plan)
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        raise ConversionError(
            f"cannot finalize {output}: {len(missing)} of {len(plan.shards)} shards are not done ({shown}); "
            "run the conversion tasks that own them (shard % --num-tasks == --task-index) and finalize again"
        )
    features = plan.dataset["features"]
    video_keys = [k for k, f in features.items() if f.get("dtype") == "video"]
    table_bytes = episode_table(records, video_keys).to_parquet_bytes()
    atomic_write_bytes(output / EPISODES_FILE, table_bytes)
    src = plan.source
    index = DatasetIndex(
        repo_id=src["repo_id"],
        revision=src["revision"],
        codebase_version=src["codebase_version"],
        robot_type=src["robot_type"],
        fps=int(src["fps"]),
        features=features,
        tasks=tuple(plan.dataset["tasks"]),
        stats=_finite_stats(plan.dataset["stats"], output),
        total_episodes=sum(len(r.episodes) for r in records),
        total_frames=sum(r.num_frames for r in records),
        shards=tuple(
            ShardRecord(r.name, r.size, r.sha256, tuple(e.episode_index for e in r.episodes), r.num_frames)
            for r in records
        ),
        episodes_sha256=hashlib.sha256(table_bytes).hexdigest(),
        options=dict(plan.options),
    )
    atomic_write_bytes(output / INDEX_FILE, index.to_bytes())
    log.info(
        "%s: finalized: %d episodes, %d frames in %d shards",
        output,
        index.total_episodes,
        index.total_frames,
        len(index.shards),
    )
    return index
