"""What keeps a million-episode dataset small: compact table columns, task codes, shard ids as one array,
a local store pickled as its path (reloaded in the worker, refused if the dataset changed)."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import shutil

import numpy as np
import pytest

from lerowds.errors import FormatError
from lerowds.format import EPISODES_FILE, INDEX_FILE, DatasetIndex, EpisodeTable, read_local_index
from lerowds.format.index import EpisodeIds
from lerowds.reader.dataset import LeRobotWebDataset


def test_table_round_trips_with_task_codes_and_compact_columns(edge_converted) -> None:
    _, table = read_local_index(edge_converted)
    again = EpisodeTable.from_parquet_bytes(table.to_parquet_bytes())
    assert again == table and again.tasks == table.tasks
    assert all(t in table.task_strings for ts in table.tasks for t in ts)
    assert len(set(table.task_strings)) == len(table.task_strings)  # each distinct string once
    assert all(c.dtype in (np.int32, np.uint32) and not c.flags.writeable for c in table.columns.values())
    big = EpisodeTable(
        {"episode_index": [0, 1], "offset": [0, 5 << 32], "crc32": [0, (1 << 32) - 1]}, [("a",), ("a", "b")]
    )
    assert (big["episode_index"].dtype, big["offset"].dtype, big["crc32"].dtype) == (
        np.int32,
        np.int64,
        np.uint32,
    )
    assert (
        int(big["offset"][1]) == 5 << 32
        and big.tasks == (("a",), ("a", "b"))
        and big.task_strings == ("a", "b")
    )


def test_index_keeps_shard_episode_ids_as_one_array_and_round_trips(demo_converted) -> None:
    data = (demo_converted / INDEX_FILE).read_bytes()
    index = DatasetIndex.from_bytes(data)
    assert all(isinstance(s.episodes, EpisodeIds) for s in index.shards)
    assert [e for s in index.shards for e in s.episodes] == list(range(36))
    assert index.to_bytes() == data and DatasetIndex.from_bytes(index.to_bytes()) == index
    first = index.shards[0]
    assert first.episodes == tuple(first.episodes) and first.episodes == list(first.episodes)
    assert first.episodes != (99,)
    bad = data.replace(b'"episodes": [\n', b'"episodes": [\n  1x,\n', 1)
    with pytest.raises(FormatError, match="index.json"):
        DatasetIndex.from_bytes(bad)


def test_local_dataset_pickles_without_its_table_and_refuses_a_changed_dataset(
    tabular_converted, tmp_path
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(tabular_converted, root)
    ds = LeRobotWebDataset(root, episode_pool_size=3, seed=2)
    want = [(int(s["episode_index"]), int(s["frame_index"])) for s in ds]
    data = pickle.dumps(ds)
    assert len(data) < len((root / EPISODES_FILE).read_bytes()) + 20_000  # no table columns inside
    clone = pickle.loads(data)
    clone.set_epoch(0)
    assert [(int(s["episode_index"]), int(s["frame_index"])) for s in clone] == want

    stale = pickle.loads(data)
    index, table = read_local_index(root)
    changed = EpisodeTable({**table.columns, "length": table["length"]}, [("other task",)] * len(table))
    new_bytes = changed.to_parquet_bytes()
    (root / EPISODES_FILE).write_bytes(new_bytes)
    (root / INDEX_FILE).write_bytes(
        dataclasses.replace(index, episodes_sha256=hashlib.sha256(new_bytes).hexdigest()).to_bytes()
    )
    with pytest.raises(FormatError, match="changed on disk after it was opened"):
        next(iter(stale))


@pytest.mark.parametrize("bad", [b"0, 1x", b"0,,2", b"0, 1 2", b"0,"])
def test_unreadable_episode_list_is_a_format_error(demo_converted, bad: bytes) -> None:
    data = (demo_converted / INDEX_FILE).read_bytes()
    start = data.index(b'"episodes": [') + len(b'"episodes": [')
    broken = data[:start] + bad + data[data.index(b"]", start) :]
    with pytest.raises(FormatError, match="not valid JSON"):
        DatasetIndex.from_bytes(broken)


def test_reading_indexes_in_threads_leaves_the_warning_filters_alone(demo_converted) -> None:
    """Loader threads read the index at once: process-wide warning filters must come out as they went in."""
    import threading
    import warnings

    before = list(warnings.filters)
    threads = [threading.Thread(target=read_local_index, args=(demo_converted,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert warnings.filters == before
