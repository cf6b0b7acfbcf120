"""What a conversion writes: every row once, bit-exact self-identifying clips, whole episodes per shard,
a complete index, and the same bytes on every run."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from convert_helpers import (
    SMALL_REPO,
    SMALL_SHARD_SIZE,
    decode_frames,
    decode_rgb,
    member_bytes,
    read_output,
    run_convert,
    source_table,
    tree_bytes,
)

from lerowds.convert.source import load_local
from lerowds.format import CRC32_COLUMN, EPISODE_BASE_COLUMNS, FORMAT_VERSION, episode_key, video_columns
from lerowds.testing.framecode import decode_frame_id

Dataset = Callable[[str], tuple[Path, Path, dict[str, int]]]


@pytest.mark.parametrize("name", ["small", "edge", "novideo"])
def test_every_source_row_exactly_once_with_identical_values(dataset: Dataset, name: str) -> None:
    root, out, _ = dataset(name)
    index, table = read_output(out)
    source = source_table(root)
    meta = load_local(root, "x")
    parts = []
    for row in range(len(table)):
        member = pq.read_table(pa.BufferReader(member_bytes(out, index, table, row, "parquet")))
        e = int(table["episode_index"][row])
        assert member.num_rows == int(table["length"][row])
        assert set(member.column("episode_index").to_pylist()) == {e}
        assert member.column("frame_index").to_pylist() == list(range(member.num_rows))  # source order
        file_schema = pq.read_schema(root / meta.episode(e).data_path)
        assert member.schema.equals(file_schema, check_metadata=True), e  # columns, dtypes, hf metadata
        parts.append(member)
    converted = pa.concat_tables(parts)
    assert converted.num_rows == source.num_rows == index.total_frames
    assert sorted(converted.column("index").to_pylist()) == list(range(source.num_rows))  # each row once
    assert converted.sort_by("index").equals(source.sort_by("index"))  # identical values, images included


@pytest.mark.parametrize("name", ["small", "edge"])
def test_clips_have_length_frames_decode_like_the_source_and_self_identify(
    dataset: Dataset, name: str
) -> None:
    root, out, cams = dataset(name)
    index, table = read_output(out)
    source = load_local(root, "x")
    decoded_sources: dict[str, list[tuple[float, np.ndarray]]] = {}
    copied = reencoded = 0
    for row in range(len(table)):
        e, length = int(table["episode_index"][row]), int(table["length"][row])
        meta = json.loads(member_bytes(out, index, table, row, "json"))
        for key in index.video_keys:
            clip = member_bytes(out, index, table, row, f"video/{key}")
            frames = decode_frames(clip)
            assert len(frames) == length
            assert frames[0][0] == 0.0  # first frame at timestamp 0
            assert [decode_frame_id(img, cams[key]) for img in decode_rgb(clip)] == [
                (e, f) for f in range(length)
            ]
            if meta["videos"][key]["reencoded"]:
                reencoded += 1
                continue
            copied += 1
            ref = source.episode(e).video(key)
            if ref.path not in decoded_sources:
                decoded_sources[ref.path] = decode_frames(root / ref.path)
            half = 0.5 / index.fps
            segment = [
                img
                for t, img in decoded_sources[ref.path]
                if ref.from_timestamp - half <= t < ref.to_timestamp - half
            ]
            assert len(segment) == length
            for (_, got), want in zip(frames, segment):
                np.testing.assert_array_equal(got, want)  # bit-exact, same decoder
    assert copied > 0
    assert (reencoded > 0) == (name == "edge")  # the edge preset's non-keyframe episodes were re-encoded


@pytest.mark.parametrize("name", ["small", "edge", "novideo"])
def test_shards_never_split_an_episode_and_offsets_match_the_tar(dataset: Dataset, name: str) -> None:
    _, out, _ = dataset(name)
    index, table = read_output(out)
    assert len(index.shards) >= 2, "the test datasets are converted into several shards"
    seen: dict[str, int] = {}
    for number, shard in enumerate(index.shards):
        with tarfile.open(out / shard.name) as tar:
            members = tar.getmembers()
        keys = [m.name.split(".", 1)[0] for m in members]
        runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
        assert len(runs) == len(set(runs)), f"{shard.name}: an episode's members are not contiguous"
        assert runs == [episode_key(e) for e in shard.episodes]
        for key in runs:
            assert key not in seen, f"{key} in {shard.name} and shard {seen[key]}"
            seen[key] = number
        for m in members:
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (0, 0, 0, "", "", 0o644)
        by_name = {m.name: m for m in members}
        for e in shard.episodes:
            row = table.row_of(e)
            assert int(table["shard"][row]) == number
            key = episode_key(e)
            names = [m.name for m in members if m.name.startswith(key + ".")]
            expected = [f"{key}.json", f"{key}.parquet", *(f"{key}.{k}.mp4" for k in index.video_keys)]
            assert names == expected  # json first, then parquet, then the cameras in feature order
            cols = [("json_offset", "json_size"), ("parquet_offset", "parquet_size")]
            cols += [video_columns(k) for k in index.video_keys]
            for name_, (off, size) in zip(expected, cols):
                assert int(table[off][row]) == by_name[name_].offset_data
                assert int(table[size][row]) == by_name[name_].size
            assert int(table["offset"][row]) == by_name[expected[0]].offset  # the first header
    assert sorted(seen) == [episode_key(e) for e in table["episode_index"]]


def test_index_carries_what_a_reader_needs(small_root: Path, small_out: Path) -> None:
    index, table = read_output(small_out)
    raw = json.loads((small_out / "index.json").read_text())
    info = json.loads((small_root / "meta/info.json").read_text())
    manifest = json.loads((small_root.parent / "lerobot_v3_small.manifest.json").read_text())
    assert (raw["format"], raw["version"]) == ("lerowds", FORMAT_VERSION)
    assert (index.repo_id, index.codebase_version, index.fps) == (SMALL_REPO, "v3.0", 15)
    assert index.features == info["features"]
    assert index.stats == json.loads((small_root / "meta/stats.json").read_text())
    assert list(index.tasks) == [
        "pick up the red cube",
        "open the top drawer",
        "push the blue block to the left",
    ]
    assert index.total_episodes == 12 and index.total_frames == sum(manifest["episode_lengths"]) == 587
    assert table["length"].tolist() == manifest["episode_lengths"]
    assert [list(t) for t in table.tasks] == manifest["episode_tasks"]
    assert sum(s.num_frames for s in index.shards) == 587
    assert set(table.columns) == set(EPISODE_BASE_COLUMNS) | {CRC32_COLUMN} | {
        c for k in index.video_keys for c in video_columns(k)
    }
    assert index.options == {"episodes": None, "shard_size": SMALL_SHARD_SIZE, "reencode": False}
    assert table["dataset_from_index"].tolist() == np.cumsum([0, *manifest["episode_lengths"][:-1]]).tolist()


def test_edge_tasks_unicode_long_and_changing(edge_out: Path) -> None:
    index, table = read_output(edge_out)
    assert any(len(t) > 1000 for t in index.tasks) and any("拾起" in t for t in index.tasks)
    assert any(len(t) == 2 for t in table.tasks)  # an episode whose task changes half-way keeps both
    assert index.fps == 10 and "observation.images.top" in index.image_keys


def test_rerun_into_a_fresh_dir_is_byte_identical_with_any_worker_count(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    run_convert(small_root, SMALL_REPO, tmp_path / "again", shard_size=SMALL_SHARD_SIZE, workers=2)
    assert tree_bytes(tmp_path / "again") == tree_bytes(small_out)


def test_rerun_into_the_same_dir_reuses_every_shard(
    small_root: Path, small_out: Path, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    result = run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    assert result.converted == () and result.reused == tuple(range(result.num_shards)) and result.finalized
    assert tree_bytes(out) == tree_bytes(small_out)


def test_episode_subset(small_root: Path, tmp_path: Path) -> None:
    result = run_convert(small_root, SMALL_REPO, tmp_path / "out", episodes="2:5, 9")
    index, table = read_output(tmp_path / "out")
    assert table["episode_index"].tolist() == [2, 3, 4, 9]
    assert index.total_episodes == 4 and index.total_frames == 90 + 33 + 61 + 22
    assert result.num_shards == 1 and index.options["episodes"] == "2:5,9"
