"""Build one episode's tar members: ``<key>.json``, ``<key>.parquet``, one ``<key>.<video_key>.mp4`` per camera."""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lerowds.convert.contract import row_problems, schema_problems, stream_facts, stream_problems, track_facts
from lerowds.convert.remux import VideoFiles, cut_clip
from lerowds.convert.source import SourceEpisode
from lerowds.errors import ConversionError, SourceError
from lerowds.format import (
    FileSlices,
    episode_key,
    episode_metadata,
    json_member,
    parquet_member,
    video_member,
)

_COMPRESSIONS = {
    "UNCOMPRESSED": "none",
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "BROTLI": "brotli",
    "ZSTD": "zstd",
}


@dataclass(frozen=True, slots=True)
class EpisodeMembers:
    """One episode's members in tar order (json, parquet, then the videos in feature order)."""

    episode_index: int
    length: int
    members: tuple[tuple[str, bytes | FileSlices], ...]

    @property
    def nbytes(self) -> int:
        return sum(len(data) for _, data in self.members)


class DataFiles:
    """Open source parquet files, kept while consecutive episodes read from them (a small LRU)."""

    def __init__(self, capacity: int = 4) -> None:
        self._files: OrderedDict[Path, pq.ParquetFile] = OrderedDict()
        self._capacity = capacity

    def get(self, path: Path) -> pq.ParquetFile:
        pf = self._files.get(path)
        if pf is None:
            try:
                pf = pq.ParquetFile(path)
            except FileNotFoundError:
                raise SourceError(f"{path}: missing") from None
            except (pa.ArrowException, OSError) as e:
                raise SourceError(
                    f"{path}: unreadable parquet ({e}); the file is truncated or corrupt"
                ) from e
            self._files[path] = pf
            while len(self._files) > self._capacity:
                self._files.popitem(last=False)
        self._files.move_to_end(path)
        return pf


def read_episode_rows(pf: pq.ParquetFile, path: Path, episode_index: int) -> pa.Table:
    """All rows of ``episode_index`` in a data file, in file order (row groups pruned by their statistics)."""
    names = pf.schema_arrow.names
    if "episode_index" not in names:
        raise SourceError(f"{path}: no episode_index column (have {names})")
    leaves = pf.metadata.schema
    col = next((i for i in range(len(leaves)) if leaves.column(i).path == "episode_index"), None)
    parts = []
    try:
        for rg in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(rg).column(col).statistics if col is not None else None
            if stats is not None and stats.has_min_max and not stats.min <= episode_index <= stats.max:
                continue
            table = pf.read_row_group(rg, use_threads=False)  # threads cost more than they save here
            parts.append(table.filter(pc.equal(table.column("episode_index"), episode_index)))
    except (pa.ArrowException, OSError) as e:
        raise SourceError(f"{path}: unreadable parquet ({e}); the file is truncated or corrupt") from e
    if not parts:
        return pf.schema_arrow.empty_table()
    return pa.concat_tables(parts)


def parquet_bytes(table: pa.Table, pf: pq.ParquetFile) -> bytes:
    """The episode's rows as one parquet file: the source schema (and its metadata) and compression."""
    compression = "snappy"
    if pf.metadata.num_row_groups and pf.metadata.num_columns:
        compression = _COMPRESSIONS.get(pf.metadata.row_group(0).column(0).compression, "snappy")
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(pf.schema_arrow.metadata), buf, compression=compression)
    return buf.getvalue()


def image_columns(schema: pa.Schema) -> tuple[str, ...]:
    """Columns holding encoded images (lerobot's ``dtype: image``: a struct with a ``bytes`` field)."""
    return tuple(
        f.name for f in schema if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0
    )


def episode_task_map(
    rows: pa.Table, episode: SourceEpisode, all_tasks: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The episode's task strings paired with their task indices (as its rows use them)."""
    if not all_tasks or "task_index" not in rows.column_names:
        return tuple(episode.tasks), ()
    used = sorted(set(rows.column("task_index").to_pylist()))
    bad = [i for i in used if not 0 <= i < len(all_tasks)]
    if bad:
        raise ConversionError(
            f"episode {episode.episode_index}: task_index {bad} not in meta/tasks.parquet ({len(all_tasks)} tasks)"
        )
    return tuple(all_tasks[i] for i in used), tuple(used)


def check_video(
    videos: VideoFiles | None, path: Path, fps: int, feature: Mapping[str, Any] | None, label: str
) -> None:
    """A SourceError unless the video stream of ``path`` has the declared fps and frame size (once a file)."""
    if videos is None:
        with closing(VideoFiles(capacity=1)) as own:
            return check_video(own, path, fps, feature, label)
    if str(path) in videos.checked:
        return None
    track = videos.track(path)
    if track is not None:
        facts = track_facts(track.timescale, track.durations, track.stsd)
    else:
        facts = stream_facts(videos.get(path).streams.video[0])
    problems = stream_problems(*facts, fps, feature)
    if problems:
        raise SourceError(
            f"{label}: {path}: {'; '.join(problems)} (the video contradicts meta/info.json; fix the dataset "
            "or its info.json)"
        )
    videos.checked.add(str(path))
    return None


def build_episode(
    root: Path,
    episode: SourceEpisode,
    *,
    fps: int,
    reencode: bool = False,
    data_files: DataFiles | None = None,
    video_files: VideoFiles | None = None,
    all_tasks: tuple[str, ...] = (),
    features: Mapping[str, Mapping[str, Any]] | None = None,
) -> EpisodeMembers:
    """Read an episode's rows and cut its clips; check row and frame counts against its metadata, and
    (given ``features``, info.json's) columns, dtypes, shapes and video streams against the declaration."""
    key = episode_key(episode.episode_index)
    path = root / episode.data_path
    pf = (data_files or DataFiles()).get(path)
    rows = read_episode_rows(pf, path, episode.episode_index)
    if features is not None:
        problems = schema_problems(rows.schema, features) or row_problems(rows, features)
        if problems:
            raise SourceError(
                f"episode {episode.episode_index}: {path}: {'; '.join(problems)} (the data contradicts "
                "meta/info.json; fix the dataset or its info.json)"
            )
    if rows.num_rows != episode.length:
        raise ConversionError(
            f"episode {episode.episode_index}: {path} holds {rows.num_rows} rows of it but the episode "
            f"metadata says length={episode.length} (row count disagrees with meta/episodes)"
        )
    videos: dict[str, dict[str, object]] = {}
    clips: list[tuple[str, bytes | FileSlices]] = []
    for video_key, ref in episode.videos:
        if features is not None:
            label = f"episode {episode.episode_index}, camera {video_key!r}"
            check_video(video_files, root / ref.path, fps, features.get(video_key), label)
        clip = cut_clip(
            root / ref.path,
            ref.from_timestamp,
            ref.to_timestamp,
            fps,
            expected_frames=episode.length,
            label=f"episode {episode.episode_index}, camera {video_key!r}",
            reencode=reencode,
            videos=video_files,
        )
        videos[video_key] = {
            "codec": clip.codec,
            "frames": clip.num_frames,
            "reencoded": clip.reencoded,
            "source_path": ref.path,
            "source_from_timestamp": ref.from_timestamp,
            "source_to_timestamp": ref.to_timestamp,
        }
        clips.append((video_member(key, video_key), clip.content))
    tasks, task_indices = episode_task_map(rows, episode, all_tasks)
    meta = episode_metadata(
        episode_index=episode.episode_index,
        length=episode.length,
        tasks=tasks,
        dataset_from_index=episode.dataset_from_index,
        fps=fps,
        videos=videos,
        task_indices=task_indices,
        image_keys=image_columns(rows.schema),
    )
    members = ((json_member(key), meta), (parquet_member(key), parquet_bytes(rows, pf)), *clips)
    return EpisodeMembers(episode.episode_index, episode.length, members)
