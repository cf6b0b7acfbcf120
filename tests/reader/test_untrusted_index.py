"""An ``index.json`` is published input: shard names outside the format's pattern are refused before anything
is opened, and totals that disagree with the episode table are refused (issue 21, items 5 and 6)."""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from lerowds import LeRobotWebDataset
from lerowds.errors import FormatError
from lerowds.format import INDEX_FILE, DatasetIndex, read_local_index

sys.path.insert(0, str(Path(__file__).parent))
from httpserver import LoopbackServer

BAD_NAMES = [
    "/etc/hostname",
    "../x/shard-000000.tar",
    "shards/../../x/shard-000000.tar",
    "%2e%2e/shards/shard-000000.tar",
    "shards/%2e%2e/shard-000000.tar",
    "shards\\shard-000000.tar",
    "..\\..\\shard-000000.tar",
    "shards/sub/shard-000000.tar",
    "other/shard-000000.tar",
    "shards/shard-000000.tar/",
    "shards/shard-000000.tar\n",
    "shards/shard-00000.tar",
    "https://example.com/shards/shard-000000.tar",
    "",
]


def _with_shard_name(src: Path, out: Path, name: str) -> Path:
    shutil.copytree(src, out)
    index, _ = read_local_index(out)
    shards = (dataclasses.replace(index.shards[0], name=name), *index.shards[1:])
    (out / INDEX_FILE).write_bytes(dataclasses.replace(index, shards=shards).to_bytes())
    return out


@pytest.mark.parametrize("name", BAD_NAMES)
def test_shard_names_outside_the_format_are_refused_before_anything_opens(
    tabular_converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    root = _with_shard_name(tabular_converted, tmp_path / "ds", name)
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *a, **k):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else None
        return real_open(file, *a, **k)

    def spy_os_open(path, *a, **k):  # type: ignore[no-untyped-def]
        opened.append(os.fspath(path))
        return real_os_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    with pytest.raises(FormatError, match=re.escape(f"shard name {name!r} is not a lerowds shard name")):
        LeRobotWebDataset(root)
    monkeypatch.undo()
    assert all(Path(p).resolve().is_relative_to(root.resolve()) for p in opened), opened
    assert not any("shards" in p for p in opened)  # the index is refused before any shard is opened
    with pytest.raises(FormatError, match="is not a lerowds shard name"):  # by the index's own parser
        DatasetIndex.from_bytes((root / INDEX_FILE).read_bytes())


@pytest.mark.parametrize("name", ["/etc/hostname", "../x/shard-000000.tar", "%2e%2e/shard-000000.tar"])
def test_shard_names_outside_the_format_are_refused_remotely_without_a_request(
    tabular_converted: Path, tmp_path: Path, name: str
) -> None:
    root = _with_shard_name(tabular_converted, tmp_path / "ds", name)
    with LoopbackServer(root) as srv:
        with pytest.raises(FormatError, match="is not a lerowds shard name"):
            LeRobotWebDataset(srv.url, cache_dir=tmp_path / "c")
        assert [s.target.rsplit("/", 1)[-1] for s in srv.seen] == [INDEX_FILE]


def test_a_shard_listed_twice_is_refused(tabular_converted: Path, tmp_path: Path) -> None:
    root = _with_shard_name(tabular_converted, tmp_path / "ds", "shards/shard-000001.tar")
    with pytest.raises(FormatError, match="shard shards/shard-000001.tar is listed twice"):
        read_local_index(root)


@pytest.mark.parametrize("field", ["size", "num_frames"])
@pytest.mark.parametrize("value", [-1, 2**70, 1.5, "12", True])
def test_shard_sizes_must_be_integers(tabular_converted: Path, field: str, value: object) -> None:
    d = json.loads((tabular_converted / INDEX_FILE).read_bytes())
    d["shards"][0][field] = value
    with pytest.raises(FormatError, match=rf"shard shards/shard-000000.tar: {field} must be an integer"):
        DatasetIndex.from_bytes(json.dumps(d).encode())


# ----------------------------------------------------------------------------------------------- totals
@pytest.mark.parametrize(
    ("field", "delta"), [("total_frames", 1), ("total_frames", -7), ("total_episodes", 1)]
)
def test_wrong_totals_are_refused_when_the_dataset_opens(
    tabular_converted: Path, tmp_path: Path, field: str, delta: int
) -> None:
    shutil.copytree(tabular_converted, tmp_path / "ds")
    root = tmp_path / "ds"
    index, _ = read_local_index(root)
    wrong = getattr(index, field) + delta
    (root / INDEX_FILE).write_bytes(dataclasses.replace(index, **{field: wrong}).to_bytes())
    with pytest.raises(FormatError, match=rf"{INDEX_FILE} says {field}={wrong}, "):
        LeRobotWebDataset(root)
    with LoopbackServer(root) as srv, pytest.raises(FormatError, match=rf"says {field}={wrong}"):
        LeRobotWebDataset(srv.url, cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------------------------- episode lists
def _index_with_list(root: Path, text: str) -> bytes:
    """``root``'s index.json cut to its first shard, whose episode list is written as ``text``."""
    d = json.loads((root / INDEX_FILE).read_bytes())
    d["shards"] = d["shards"][:1]
    d["shards"][0]["episodes"] = "@LIST@"
    return json.dumps(d, indent=1).encode().replace(b'"@LIST@"', text.encode())


@pytest.mark.parametrize(
    "text", ["[]", "[5]", "[0, 1, 2]", "[0,1,2]", "[\n  3,\n  4\n ]", "[ 7 ]", "[9223372036854775807]"]
)
def test_episode_lists_parse_like_json(tabular_converted: Path, text: str) -> None:
    got = DatasetIndex.from_bytes(_index_with_list(tabular_converted, text)).shards[0].episodes
    assert list(got) == json.loads(text)


@pytest.mark.parametrize("text", ["[1,,2]", "[,1]", "[1,]", "[1 2]", "[1, 2 3]", "[99999999999999999999]"])
def test_bad_episode_lists_are_refused(tabular_converted: Path, text: str) -> None:
    with pytest.raises(FormatError, match="bad episode list|not valid JSON"):
        DatasetIndex.from_bytes(_index_with_list(tabular_converted, text))


def test_episode_lists_parse_without_np_fromstring(
    tabular_converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NumPy is removing ``np.fromstring``: the index must load without it, with the same ids."""
    want = [list(s.episodes) for s in read_local_index(tabular_converted)[0].shards]
    monkeypatch.delattr(np, "fromstring")
    got = DatasetIndex.from_bytes((tabular_converted / INDEX_FILE).read_bytes())
    assert [list(s.episodes) for s in got.shards] == want and sum(map(len, want)) == 13
