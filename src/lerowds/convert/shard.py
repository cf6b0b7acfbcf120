"""Convert one planned shard: build its episodes, write the tar (temp + rename), then its done-record.

``convert_shard`` runs in the main process or in a worker process; it touches no state but its own shard's
files, so shards can be converted in any order, by any number of processes or machines.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lerowds.convert.episode import DataFiles, build_episode
from lerowds.convert.identity import source_changes, source_id
from lerowds.convert.plan import PlannedShard
from lerowds.convert.remux import VideoFiles
from lerowds.convert.source import SourceEpisode
from lerowds.convert.state import DoneRecord, EpisodeRecord, write_done
from lerowds.errors import ConversionError
from lerowds.format import ShardWriter, shard_name

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, int], None]  # (episodes, frames, bytes) just written


@dataclass(frozen=True, slots=True)
class ShardJob:
    """Everything a worker needs to convert one shard (picklable, no open files)."""

    output: Path
    root: Path
    shard: PlannedShard
    episodes: tuple[SourceEpisode, ...]
    fps: int
    reencode: bool
    plan: str  # the plan's fingerprint, recorded in the done-record
    tasks: tuple[str, ...] = ()  # the dataset's task strings by task_index
    features: Mapping[str, Any] | None = None  # meta/info.json's, checked against the data and videos
    file_ids: Mapping[str, tuple[int, int, int]] | None = None  # source files' identity if not by stat

    def __post_init__(self) -> None:
        if tuple(e.episode_index for e in self.episodes) != self.shard.episodes:
            raise ValueError(
                f"shard {self.shard.shard}: job episodes do not match the plan's {self.shard.episodes}"
            )


def remove_partials(output: Path, shard: int) -> None:
    """Delete temp files a killed run left for ``shard`` (``ShardWriter`` names them ``.<name>.*.partial``)."""
    path = output / shard_name(shard)
    for stale in path.parent.glob(f".{path.name}.*.partial"):
        log.debug("removing stale %s", stale)
        stale.unlink(missing_ok=True)


def disk_full(where: str) -> ConversionError:
    """The one message for a full disk (``where``: e.g. "while writing PATH"), saying what to do."""
    return ConversionError(
        f"no space left on device {where}: free some space (or pick another --output) and rerun the same "
        "command; finished shards are kept"
    )


def convert_shard(job: ShardJob, progress: ProgressFn | None = None) -> DoneRecord:
    """Write ``job``'s shard and its done-record; a full disk or failed write is a ConversionError."""
    path = job.output / shard_name(job.shard.shard)
    remove_partials(job.output, job.shard.shard)
    data_files = DataFiles()
    records = []
    # before reading them: a change meanwhile shows on a rerun
    sources = source_id(job.root, job.episodes, dict(job.file_ids or {}))
    try:
        with ShardWriter(path) as writer, closing(VideoFiles()) as videos:
            for episode in job.episodes:
                built = build_episode(
                    job.root,
                    episode,
                    fps=job.fps,
                    reencode=job.reencode,
                    data_files=data_files,
                    video_files=videos,
                    all_tasks=job.tasks,
                    features=job.features,
                )
                location = writer.add_episode(built.members)
                records.append(
                    EpisodeRecord(
                        episode.episode_index,
                        episode.length,
                        episode.tasks,
                        episode.dataset_from_index,
                        location,
                    )
                )
                if progress is not None:
                    progress(1, episode.length, built.nbytes)
            changed = source_changes(sources, source_id(job.root, job.episodes, dict(job.file_ids or {})))
            if changed:
                raise ConversionError(
                    f"shard {job.shard.shard}: its source changed while it was being converted: "
                    f"{'; '.join(changed)}; rerun the same command once the source is no longer written to"
                )
            size, sha256 = writer.commit()
        record = DoneRecord(job.shard.shard, size, sha256, job.plan, tuple(records), sources)
        write_done(job.output, record)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise disk_full(f"while writing {path}") from e
        raise ConversionError(f"writing {path} failed: {e}") from e
    log.debug("shard %d: %d episodes, %d bytes, sha256 %s", job.shard.shard, len(records), size, sha256[:12])
    return record
