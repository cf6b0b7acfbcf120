"""``lerowds verify`` catches damaged shards precisely; ``lerowds info`` summarises a dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lerowds.cli import main
from lerowds.convert import describe, verify
from lerowds.format import read_local_index


@pytest.fixture
def out(small_out: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(small_out, tmp_path / "out"))


def test_a_good_dataset_verifies_deeply(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = verify(out, deep=True)
    assert report.ok and report.shards_checked == 5 and report.episodes_checked == 12
    assert main(["verify", str(out), "--deep"]) == 0
    assert capsys.readouterr().out.startswith("OK:")


def test_a_flipped_byte_is_caught(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index, table = read_local_index(out)
    row = table.row_of(4)
    shard = out / index.shards[int(table["shard"][row])].name
    data = bytearray(shard.read_bytes())
    end = int(table["parquet_offset"][row]) + int(table["parquet_size"][row])
    data[end - 1] ^= 0x01  # the last byte of episode 4's parquet member (its "PAR1" magic)
    shard.write_bytes(bytes(data))
    report = verify(out)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"{index.shards[1].name}: sha256 ")
    assert report.problems[0].endswith(f"differs from the index's {index.shards[1].sha256[:16]}...")
    deep = verify(out, deep=True)
    assert deep.problems[1:] == (deep.problems[1],) and deep.problems[1].startswith(
        "episode 4 (shards/shard-000001.tar): episode_000004.parquet: unreadable"
    )
    assert main(["verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("FAILED:") and "shards/shard-000001.tar: sha256" in err


def test_a_truncated_shard_is_caught(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    index, table = read_local_index(out)
    assert index.shards[2].episodes == (6, 7)
    shard = out / index.shards[2].name
    size = shard.stat().st_size
    cut = (
        int(table["video/observation.images.wrist/offset"][table.row_of(7)]) + 10
    )  # inside episode 7's last clip
    with open(shard, "r+b") as f:
        f.truncate(cut)
    report = verify(out, deep=True)
    assert (
        report.problems[0]
        == f"{index.shards[2].name}: {cut} bytes, the index says {size} (truncated or overwritten)"
    )
    assert any("episode 7 (shards/shard-000002.tar)" in p and "short read" in p for p in report.problems[1:])
    assert main(["verify", str(out), "--deep"]) == 1
    (out / index.shards[3].name).unlink()
    assert "shards/shard-000003.tar: missing" in verify(out).problems


def test_verify_without_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path)]) == 2
    assert "no index.json" in capsys.readouterr().err


def test_info_shows_totals_features_cameras_shards(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = describe(out)
    for needle in (
        "lerowds/fixture_small",
        "episodes  12 (length min 20, median 43, max 90)",
        "frames    587 (39.1 s at 15 fps)",
        "shards    5,",
        "observation.images.front  video    96 x 128  av1 yuv420p",
        "observation.state         float32  (6,)",
    ):
        assert needle in text, needle
    assert main(["info", str(out)]) == 0
    assert capsys.readouterr().out == text


@pytest.mark.parametrize("dropped", [1, 4])  # from the middle (later ones shift) or the end
def test_a_shard_dropped_from_the_index_fails_plain_verify_and_the_reader(
    out: Path, capsys: pytest.CaptureFixture[str], dropped: int
) -> None:
    import json

    from lerowds.errors import FormatError
    from lerowds.format import INDEX_FILE

    index = json.loads((out / INDEX_FILE).read_text())
    name = index["shards"][dropped]["name"]
    del index["shards"][dropped]
    (out / INDEX_FILE).write_text(json.dumps(index))
    report = verify(out)  # plain: no episode is read
    assert not report.ok
    assert any("index.json" in p and "episodes.parquet" in p for p in report.problems), report.problems
    assert main(["verify", str(out)]) == 1
    assert "FAILED" in capsys.readouterr().err
    with pytest.raises(FormatError, match=r"episodes\.parquet: .*index\.json.*re-convert or re-download"):
        read_local_index(out)
    from lerowds import LeRobotWebDataset

    with pytest.raises(FormatError, match="disagree|lists episodes"):
        list(LeRobotWebDataset(out, shuffle=False))
    assert name not in (out / INDEX_FILE).read_text()
