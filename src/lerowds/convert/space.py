"""How many bytes the shards still to write will take at most: the free-space check before a run.

The plan's per-episode estimate (``plan.estimate_episode_bytes``) cuts shards; it counts a flat overhead per
episode. The check needs a bound instead: the estimated payload, plus each member's exact tar header and the
worst padding, the episode's json member built from its metadata, the footer every per-episode parquet
repeats (schema and metadata, as large as the source data file's), and each shard's end-of-archive record.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from lerowds.convert.plan import EPISODE_OVERHEAD, PlannedShard
from lerowds.convert.source import SourceDataset, SourceEpisode
from lerowds.errors import SourceError
from lerowds.format import (
    TAR_BLOCK,
    episode_key,
    episode_metadata,
    json_member,
    parquet_member,
    video_member,
)

_SLACK = 256  # the json member's values not known before converting (codec name, task indices)


def _header_bytes(name: str) -> int:
    info = tarfile.TarInfo(name)
    return len(info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape"))


def _json_bytes(source: SourceDataset, ep: SourceEpisode) -> int:
    videos = {
        key: {
            "codec": "h264",
            "frames": ep.length,
            "reencoded": False,
            "source_path": ref.path,
            "source_from_timestamp": ref.from_timestamp,
            "source_to_timestamp": ref.to_timestamp,
        }
        for key, ref in ep.videos
    }
    images = [k for k, f in source.features.items() if f.get("dtype") == "image"]
    meta = episode_metadata(
        ep.episode_index, ep.length, ep.tasks, ep.dataset_from_index, source.fps, videos, image_keys=images
    )
    return len(meta) + _SLACK


def shard_bound(source: SourceDataset, shard: PlannedShard, footers: dict[str, int]) -> int:
    """At most the bytes of ``shard`` (``footers``: a cache of data files' parquet footer sizes)."""
    total = shard.estimated_bytes - EPISODE_OVERHEAD * len(shard.episodes)  # the payload estimate
    for e in shard.episodes:
        ep = source.episode(e)
        key = episode_key(e)
        names = [json_member(key), parquet_member(key), *(video_member(key, k) for k, _ in ep.videos)]
        total += sum(_header_bytes(n) + TAR_BLOCK - 1 for n in names) + _json_bytes(source, ep)
        if ep.data_path not in footers:
            path = source.root / ep.data_path
            try:
                footers[ep.data_path] = pq.read_metadata(path).serialized_size
            except (pa.ArrowException, OSError) as err:
                raise SourceError(
                    f"{path}: unreadable parquet ({err}); the file is truncated or corrupt"
                ) from err
        total += footers[ep.data_path]
    return total + 2 * TAR_BLOCK + tarfile.RECORDSIZE - 1


def bytes_needed(source: SourceDataset, shards: Sequence[PlannedShard]) -> int:
    """At most the bytes ``shards`` will take on disk (before the file system's own block rounding)."""
    footers: dict[str, int] = {}
    return sum(shard_bound(source, s, footers) for s in shards)
