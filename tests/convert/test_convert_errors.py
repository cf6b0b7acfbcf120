"""Each bad input gets its own clear error (naming the file, episode or camera), never a half-written shard."""

from __future__ import annotations

import errno
import importlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from convert_helpers import (
    SMALL_REPO,
    SMALL_SHARD_SIZE,
    copy_dataset,
    decode_rgb,
    member_bytes,
    read_output,
    run_convert,
)

from lerowds.cli import main
from lerowds.convert import run as run_module
from lerowds.convert import shard as shard_module
from lerowds.errors import ConfigError, ConversionError, SourceError
from lerowds.testing.framecode import decode_frame_id
from lerowds.testing.v3spec import sample_spec

EPISODES_META = "meta/episodes/chunk-000/file-000.parquet"


def _edit_episode_meta(root: Path, episode: int, **changes: float) -> None:
    path = root / EPISODES_META
    table = pq.read_table(path)
    rows = table.to_pylist()
    (row,) = [r for r in rows if r["episode_index"] == episode]
    row.update(changes)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _assert_no_shard_left(out: Path) -> None:
    shards = out / "shards"
    assert not shards.exists() or not list(shards.glob("*.tar")) and not list(shards.glob(".*.partial"))
    assert not (out / "index.json").exists()


def _assert_incomplete(out: Path) -> None:
    """Finished shards may stay (a rerun reuses them), but no partial file and no index."""
    assert not list(out.glob("shards/.*.partial"))
    assert not (out / "index.json").exists()


@pytest.fixture
def src(small_root: Path, tmp_path: Path) -> Path:
    return copy_dataset(small_root, tmp_path / "src")


def test_v21_dataset_says_so_and_how_to_upgrade(src: Path, tmp_path: Path) -> None:
    info = json.loads((src / "meta/info.json").read_text())
    (src / "meta/info.json").write_text(json.dumps({**info, "codebase_version": "v2.1"}))
    with pytest.raises(
        SourceError, match=r"v2\.1 dataset.*python -m lerobot\.datasets\.v30\.convert_dataset_v21_to_v30"
    ) as raised:
        run_convert(src, SMALL_REPO, tmp_path / "out")
    for layout in (  # the v2.1 layout it describes, and the v3.0 one lerowds reads
        "data/chunk-XXX/episode_XXXXXX.parquet",
        "videos/chunk-XXX/<video_key>/episode_XXXXXX.mp4",
        "meta/episodes.jsonl",
        "data/chunk-XXX/file-XXX.parquet",
        "--repo-id=lerowds/fixture_small",
    ):
        assert layout in str(raised.value)
    (src / "meta/info.json").write_text(json.dumps(info))
    (src / "meta/episodes.jsonl").write_text('{"episode_index": 0}\n')  # a v2 layout, whatever info.json says
    with pytest.raises(SourceError, match="v2.x layout"):
        run_convert(src, SMALL_REPO, tmp_path / "out")


def test_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no meta/info.json"):
        run_convert(tmp_path / "empty", SMALL_REPO, tmp_path / "out")


@pytest.mark.parametrize(
    "victim",
    ["data/chunk-001/file-000.parquet", "videos/observation.images.wrist/chunk-001/file-000.mp4"],
)
def test_missing_source_file_is_named(src: Path, tmp_path: Path, victim: str) -> None:
    (src / victim).unlink()
    with pytest.raises(SourceError, match=f"missing source file.*{victim}"):
        run_convert(src, SMALL_REPO, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # checked before anything is written


@pytest.mark.parametrize(
    ("victim", "what"),
    [
        ("data/chunk-001/file-000.parquet", "unreadable parquet"),
        ("videos/observation.images.front/chunk-001/file-000.mp4", "unreadable mp4"),
        ("meta/tasks.parquet", "unreadable parquet"),
        (EPISODES_META, "unreadable parquet"),
    ],
)
def test_truncated_source_file_is_named(src: Path, tmp_path: Path, victim: str, what: str) -> None:
    data = (src / victim).read_bytes()
    (src / victim).write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=f"{victim}: {what}"):
        run_convert(src, SMALL_REPO, tmp_path / "out", shard_size=SMALL_SHARD_SIZE)
    _assert_incomplete(tmp_path / "out")


def test_row_count_disagreeing_with_metadata(src: Path, tmp_path: Path) -> None:
    _edit_episode_meta(src, 3, length=34)
    with pytest.raises(
        ConversionError, match=r"episode 3: .*chunk-000/file-001.parquet holds 33 rows .* length=34"
    ):
        run_convert(src, SMALL_REPO, tmp_path / "out", episodes="3")
    _assert_no_shard_left(tmp_path / "out")


def test_video_frame_count_disagreeing_with_metadata(src: Path, tmp_path: Path) -> None:
    key = "observation.images.front"
    table = pq.read_table(src / EPISODES_META).to_pylist()
    to = table[3][f"videos/{key}/to_timestamp"]
    _edit_episode_meta(src, 3, **{f"videos/{key}/to_timestamp": to - 1 / 15})
    with pytest.raises(ConversionError, match=rf"episode 3, camera '{key}'.* holds 32 frames .* length=33"):
        run_convert(src, SMALL_REPO, tmp_path / "out", episodes="3")
    _assert_no_shard_left(tmp_path / "out")


def test_non_keyframe_start_needs_reencode(edge_root: Path, edge_out: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConversionError, match=r"episode 2, camera 'observation\.images\.front'.*not a keyframe.*--reencode"
    ):
        run_convert(edge_root, "lerowds/edge", tmp_path / "out", episodes="2")
    _assert_no_shard_left(tmp_path / "out")
    # with --reencode (the session's edge_out): the clips have their frames, and they still name themselves
    index, table = read_output(edge_out)
    cams = {c.key: i for i, c in enumerate(sample_spec("edge").cameras)}
    for e in sample_spec("edge").non_keyframe_episodes:
        row = table.row_of(e)
        meta = json.loads(member_bytes(edge_out, index, table, row, "json"))
        assert any(v["reencoded"] for v in meta["videos"].values())
        for key in index.video_keys:
            frames = decode_rgb(member_bytes(edge_out, index, table, row, f"video/{key}"))
            assert [decode_frame_id(f, cams[key]) for f in frames] == [(e, i) for i in range(meta["length"])]


def test_output_dir_holding_another_dataset_or_options(
    small_root: Path, small_out: Path, novideo_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(small_out, out)
    with pytest.raises(ConversionError, match="'lerowds/fixture_small'.*'lerowds/novideo'.*delete"):
        run_convert(novideo_root, "lerowds/novideo", out)
    with pytest.raises(ConversionError, match="option shard_size: 65536 here, 1000 requested"):
        run_convert(small_root, SMALL_REPO, out, shard_size=1000)
    shutil.rmtree(out / ".lerowds")  # a finished dataset without resume state
    with pytest.raises(ConversionError, match="finished lerowds dataset of 'lerowds/fixture_small'"):
        run_convert(small_root, SMALL_REPO, out, shard_size=SMALL_SHARD_SIZE)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/notes.txt").write_text("mine")
    with pytest.raises(ConversionError, match="not an empty directory"):
        run_convert(small_root, SMALL_REPO, tmp_path / "other")


def test_not_enough_disk_space_up_front(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_module, "free_bytes", lambda path: 50_000)
    with pytest.raises(
        ConversionError, match=r"not enough disk space .* need about 0\.\d MB, 0\.1 MB are free"
    ):
        run_convert(small_root, SMALL_REPO, tmp_path / "out")
    _assert_no_shard_left(tmp_path / "out")


def test_disk_full_while_writing(small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shard_module.ShardWriter.add_episode
    calls = []

    def full(self: shard_module.ShardWriter, members: object) -> object:
        calls.append(1)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, members)  # type: ignore[arg-type]

    monkeypatch.setattr(shard_module.ShardWriter, "add_episode", full)
    with pytest.raises(ConversionError, match=r"no space left on device while writing .*shard-000001\.tar"):
        run_convert(small_root, SMALL_REPO, tmp_path / "out", shard_size=SMALL_SHARD_SIZE)
    assert sorted(p.name for p in (tmp_path / "out/shards").iterdir()) == ["shard-000000.tar"]  # no partial


def test_bad_episode_selection(small_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad item 'x'"):
        run_convert(small_root, SMALL_REPO, tmp_path / "out", episodes="0:3,x")
    with pytest.raises(ConfigError, match=r"names episode\(s\) 12, 13"):
        run_convert(small_root, SMALL_REPO, tmp_path / "out", episodes="10:14")


def test_cli_prints_one_line_and_exits_2(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (src / "data/chunk-001/file-000.parquet").unlink()
    args = [
        "convert",
        "--repo-id",
        SMALL_REPO,
        "--root",
        str(src),
        "-o",
        str(tmp_path / "out"),
        "--no-progress",
    ]
    monkeypatch.delenv("LEROWDS_DEBUG", raising=False)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("lerowds convert: error:") and "file-000.parquet" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("LEROWDS_DEBUG", "1")
    assert main(args) == 2
    assert "Traceback" in capsys.readouterr().err
    assert (
        main(["convert", "--repo-id", SMALL_REPO, "-o", str(tmp_path / "x"), "--shard-size", "12 parsecs"])
        == 2
    )
    assert "bad size '12 parsecs'" in capsys.readouterr().err


def test_disk_full_while_finalizing(
    small_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finalize_module = importlib.import_module("lerowds.convert.finalize")  # the package re-exports a function

    def full(path: object, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(finalize_module, "atomic_write_bytes", full)
    with pytest.raises(ConversionError, match="no space left on device under .*rerun the same command"):
        run_convert(small_root, SMALL_REPO, tmp_path / "out", shard_size=SMALL_SHARD_SIZE)
    assert not (tmp_path / "out/index.json").exists()
    monkeypatch.undo()
    result = run_convert(small_root, SMALL_REPO, tmp_path / "out", shard_size=SMALL_SHARD_SIZE)
    assert result.converted == () and result.finalized  # every shard was kept
