"""The on-disk format both halves share: dataset index, episode table, shard members. See docs/FORMAT.md.

A converted dataset is a directory::

    index.json          dataset index (written last, atomically)
    episodes.parquet    one row per episode: length, tasks, shard, byte offsets of its members
    shards/shard-000000.tar ...

Nothing here imports torch or video libraries. The code lives in ``names`` (constants, sizes, member names,
atomic I/O), ``tar`` (shard writing, member locations), ``table`` (episode table, episode json), ``layout`` (where
members may lie, their tar headers, shard names), ``index`` (dataset index, loading a dataset) and
``index_json`` (its episode id lists and non-finite stats); import from ``lerowds.format``.
"""

from lerowds.format.index import (
    DatasetIndex,
    ShardRecord,
    check_episode_table,
    read_local_index,
    shard_problems,
    total_problems,
)
from lerowds.format.index_json import nonfinite_stats
from lerowds.format.layout import (
    check_layout,
    check_member_headers,
    check_shard_name,
    layout_problems,
    member_names,
)
from lerowds.format.names import (
    EPISODES_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_FILE,
    SHARDS_DIR,
    TAR_BLOCK,
    atomic_write_bytes,
    episode_key,
    json_member,
    parquet_member,
    parse_size,
    read_range,
    sha256_file,
    shard_name,
    video_member,
)
from lerowds.format.table import (
    CRC32_COLUMN,
    EPISODE_BASE_COLUMNS,
    EpisodeTable,
    episode_metadata,
    video_columns,
)
from lerowds.format.tar import (
    COPY_CHUNK,
    PARALLEL_HASH_MIN,
    ClipRange,
    EpisodeLocation,
    FileSlices,
    MemberLocation,
    ShardWriter,
)

__all__ = [
    "COPY_CHUNK",
    "CRC32_COLUMN",
    "EPISODES_FILE",
    "EPISODE_BASE_COLUMNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INDEX_FILE",
    "PARALLEL_HASH_MIN",
    "SHARDS_DIR",
    "TAR_BLOCK",
    "ClipRange",
    "DatasetIndex",
    "EpisodeLocation",
    "EpisodeTable",
    "FileSlices",
    "MemberLocation",
    "ShardRecord",
    "ShardWriter",
    "atomic_write_bytes",
    "check_episode_table",
    "check_layout",
    "check_member_headers",
    "check_shard_name",
    "episode_key",
    "episode_metadata",
    "json_member",
    "layout_problems",
    "member_names",
    "nonfinite_stats",
    "parquet_member",
    "parse_size",
    "read_local_index",
    "read_range",
    "sha256_file",
    "shard_name",
    "shard_problems",
    "total_problems",
    "video_columns",
    "video_member",
]
