"""episodes.parquet carries a CRC-32 of every episode's byte span, so one ranged read can be checked."""

from __future__ import annotations

import zlib

import pytest
from convert_helpers import read_output

from lerowds.format import CRC32_COLUMN, read_range


@pytest.mark.parametrize("name", ["small", "edge"])
def test_crc32_of_each_episode_span(dataset, name: str) -> None:
    _, out, _ = dataset(name)
    index, table = read_output(out)
    assert CRC32_COLUMN in table.columns
    for row in range(len(table)):
        shard = out / index.shards[int(table["shard"][row])].name
        span = read_range(shard, int(table["offset"][row]), int(table["size"][row]))
        assert zlib.crc32(span) == int(table[CRC32_COLUMN][row]), (
            f"episode {int(table['episode_index'][row])}"
        )
