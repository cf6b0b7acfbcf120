"""The synthetic LeRobot v3 writer against the real lerobot fixture, and the edge cases the fixture lacks."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lerowds.testing.framecode import decode_frame_id
from lerowds.testing.v3spec import frame_task_slots
from lerowds.testing.v3writer import CameraSpec, DatasetSpec, _layout, sample_spec, write_v3_dataset

try:
    from PIL import Image
except ImportError:  # decode with PyAV instead: the check must not silently vanish
    Image = None

FIXTURES = Path(__file__).parents[1].parent / "shared" / "fixtures"
FIXTURE = FIXTURES / "lerobot_v3_small"


@pytest.fixture(scope="module")
def fixture_root() -> Path:
    if not (FIXTURE / "meta" / "info.json").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"shared fixture missing at {FIXTURE}")
        pytest.skip(f"shared fixture missing at {FIXTURE}")
    return FIXTURE


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's own spec (lengths, fps, cameras, tasks), written by us."""
    return write_v3_dataset(tmp_path_factory.mktemp("v3") / "fixture", sample_spec("fixture"))


@pytest.fixture(scope="module")
def edge(edge_root: Path) -> Path:
    """The edge preset, written once per run (tests/conftest.py)."""
    return edge_root


# ---------------------------------------------------------------- helpers
def info(root: Path) -> dict[str, Any]:
    return json.loads((root / "meta/info.json").read_text(encoding="utf-8"))


def episodes(root: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(root.glob("meta/episodes/*/*.parquet")))


def data(root: Path) -> pa.Table:
    return pa.concat_tables(pq.read_table(p) for p in sorted(root.glob("data/*/*.parquet")))


def video_file(root: Path, row: dict[str, Any], key: str) -> Path:
    fmt = info(root)["video_path"]
    c, f = row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
    return root / fmt.format(video_key=key, chunk_index=c, file_index=f)


def packets(path: Path) -> tuple[dict[int, bool], Any]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {p.pts: p.is_keyframe for p in c.demux(s) if p.size}, s.time_base


def decoded(path: Path) -> tuple[dict[int, np.ndarray], Any]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return {fr.pts: fr.to_ndarray(format="rgb24") for fr in c.decode(s)}, s.time_base


def png_rgb(data: bytes) -> np.ndarray:
    if Image is not None:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    with av.open(io.BytesIO(data), format="png_pipe") as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def check_frames_identify(root: Path) -> int:
    """Every frame of every episode, decoded at from_timestamp + timestamp, names its (episode, frame)."""
    meta, fps, checked = info(root), info(root)["fps"], 0
    keys = [k for k, ft in meta["features"].items() if ft["dtype"] == "video"]
    cams = [k for k, ft in meta["features"].items() if ft["dtype"] in ("video", "image")]
    cache: dict[Path, tuple[dict[int, np.ndarray], Any]] = {}
    for row in episodes(root).to_pylist():
        for key in keys:
            path = video_file(root, row, key)
            frames, tb = cache.setdefault(path, decoded(path))
            for f in range(row["length"]):
                t = row[f"videos/{key}/from_timestamp"] + f / fps
                pts = round(t / tb)
                assert pts in frames and abs(pts * tb - t) < 1e-4, (path, row["episode_index"], f)
                got = decode_frame_id(frames[pts], cam=cams.index(key))
                assert got == (row["episode_index"], f), (path, key, row["episode_index"], f, got)
                checked += 1
    return checked


def check_timestamp_rule(root: Path) -> None:
    """from_timestamp = summed duration of earlier episodes in that file; to = from + length / fps."""
    fps, rows = info(root)["fps"], episodes(root).to_pylist()
    keys = [k for k, ft in info(root)["features"].items() if ft["dtype"] == "video"]
    for key in keys:
        prev_file, prev_to = None, 0.0
        for row in rows:
            here = (row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"])
            expected = prev_to if here == prev_file else 0.0
            assert row[f"videos/{key}/from_timestamp"] == expected, (key, row["episode_index"])
            assert row[f"videos/{key}/to_timestamp"] == expected + row["length"] / fps
            prev_file, prev_to = here, row[f"videos/{key}/to_timestamp"]


# ---------------------------------------------------------------- against the real fixture
def test_fixture_preset_is_the_fixtures_spec(fixture_root: Path) -> None:
    manifest = json.loads((FIXTURES / "lerobot_v3_small.manifest.json").read_text())
    spec = sample_spec("fixture")
    assert list(spec.episode_lengths) == manifest["episode_lengths"]
    assert [list(t) for t in spec.episode_tasks] == manifest["episode_tasks"]
    assert spec.fps == manifest["fps"]
    assert [(c.key, c.h, c.w, c.dtype) for c in spec.cameras] == [
        (c["key"], c["h"], c["w"], c["dtype"]) for c in manifest["cameras"]
    ]


def test_info_json_matches_fixture(fixture_root: Path, ours: Path) -> None:
    theirs, mine = info(fixture_root), info(ours)
    assert list(mine) == list(theirs)
    assert list(mine["features"]) == list(theirs["features"])  # feature order drives column order
    for key, ft in theirs["features"].items():
        assert list(mine["features"][key]) == list(ft), key
    assert mine == theirs


def test_episodes_parquet_matches_fixture(fixture_root: Path, ours: Path) -> None:
    theirs, mine = episodes(fixture_root), episodes(ours)
    assert mine.schema.equals(theirs.schema), (mine.schema, theirs.schema)
    assert len(list(ours.glob("meta/episodes/*/*.parquet"))) == len(
        list(fixture_root.glob("meta/episodes/*/*"))
    )
    # everything but the front camera's file layout (lerobot rolls video files by bytes) is identical
    same = [
        c for c in theirs.column_names if not c.startswith(("stats/", "videos/observation.images.front/"))
    ]
    assert mine.select(same).to_pylist() == theirs.select(same).to_pylist()
    assert (
        mine["stats/observation.state/count"].to_pylist()
        == theirs["stats/observation.state/count"].to_pylist()
    )
    for root in (fixture_root, ours):
        check_timestamp_rule(root)


def test_data_parquet_matches_fixture(fixture_root: Path, ours: Path) -> None:
    files = sorted(p.relative_to(fixture_root) for p in fixture_root.glob("data/*/*.parquet"))
    assert files == sorted(p.relative_to(ours) for p in ours.glob("data/*/*.parquet"))
    for rel in files:
        theirs, mine = pq.ParquetFile(fixture_root / rel), pq.ParquetFile(ours / rel)
        assert mine.schema_arrow.equals(theirs.schema_arrow), rel
        hf = [json.loads(f.schema_arrow.metadata[b"huggingface"])["info"] for f in (theirs, mine)]
        assert hf[0] == hf[1], rel
        groups = [[f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] for f in (theirs, mine)]
        assert groups[0] == groups[1], rel  # one row group per episode
        assert mine.read().equals(theirs.read()), rel  # same vectors, timestamps, indices, task indices
    ids = data(ours)["index"].to_numpy()
    assert np.array_equal(ids, np.arange(len(ids)))


def test_tasks_parquet_and_stats_match_fixture(fixture_root: Path, ours: Path) -> None:
    theirs, mine = (
        pq.read_table(fixture_root / "meta/tasks.parquet"),
        pq.read_table(ours / "meta/tasks.parquet"),
    )
    assert mine.schema.equals(theirs.schema)
    # pandas' metadata, as lerobot's writer leaves it; "creator" names the pyarrow that wrote the file
    meta_mine, meta_theirs = (json.loads(t.schema.metadata[b"pandas"]) for t in (mine, theirs))
    assert meta_mine.pop("creator") == {"library": "pyarrow", "version": pa.__version__}
    meta_theirs.pop("creator")
    assert meta_mine == meta_theirs
    assert set(mine.schema.metadata) == set(theirs.schema.metadata) == {b"pandas"}
    assert mine.equals(theirs)
    s_theirs = json.loads((fixture_root / "meta/stats.json").read_text())
    s_mine = json.loads((ours / "meta/stats.json").read_text())
    assert set(s_mine) == set(s_theirs)
    for key, stats in s_theirs.items():
        assert list(s_mine[key]) == list(stats), key
        for name, value in stats.items():
            assert np.shape(s_mine[key][name]) == np.shape(value), (key, name)
        assert s_mine[key]["count"] == stats["count"]
        for name in ("min", "max", "mean"):
            np.testing.assert_allclose(s_mine[key][name], stats[name], rtol=1e-6, err_msg=f"{key}/{name}")


def test_video_streams_match_fixture(fixture_root: Path, ours: Path) -> None:
    for root in (fixture_root, ours):
        rows = episodes(root).to_pylist()
        for key in ("observation.images.front", "observation.images.wrist"):
            for row in rows:
                path = video_file(root, row, key)
                with av.open(str(path)) as c:
                    s = c.streams.video[0]
                    cc = s.codec_context
                    props = (cc.codec.canonical_name, cc.codec_tag, cc.pix_fmt, s.time_base, s.average_rate)
                    assert props == ("av1", "av01", "yuv420p", Fraction(1, 15360), 15), (path, props)
                kf, tb = packets(path)
                start = round(row[f"videos/{key}/from_timestamp"] / tb)
                assert kf[start], (root, key, row["episode_index"])  # every episode starts on a keyframe
                assert sorted(kf) == [i * 1024 for i in range(len(kf))]  # contiguous 1024-tick frames
    assert check_frames_identify(ours) == 2 * 587


# ---------------------------------------------------------------- cases the fixture lacks
def test_edge_layout_and_features(edge: Path) -> None:
    spec, meta = sample_spec("edge"), info(edge)
    assert meta["fps"] == 10 and meta["total_frames"] == sum(spec.episode_lengths) == len(data(edge))
    assert {1, 2, 3} <= set(spec.episode_lengths)
    feats = meta["features"]
    assert feats["next.reward"] == {"dtype": "float32", "shape": [1], "names": None}
    assert feats["next.done"] == {"dtype": "bool", "shape": [1], "names": None}
    assert feats["observation.images.top"] == {
        "dtype": "image",
        "shape": [48, 64, 3],
        "names": ["height", "width", "channels"],
    }
    assert {(f["shape"][0], f["shape"][1]) for f in feats.values() if f["dtype"] == "video"} == {
        (96, 128),
        (30, 40),
        (64, 64),
    }
    schema = pq.read_schema(next(edge.glob("data/*/*.parquet")))
    assert schema.field("next.reward").type == pa.float32() and schema.field("next.done").type == pa.bool_()
    assert schema.field("observation.velocity").type == pa.list_(pa.float32(), 3)
    assert schema.field("observation.images.top").type == pa.struct(
        [("bytes", pa.binary()), ("path", pa.string())]
    )
    for pattern in ("data/*", "meta/episodes/*", "videos/observation.images.side/*"):
        assert len(list(edge.glob(pattern))) >= 2, pattern  # several chunks of each kind
    table = data(edge)
    assert np.array_equal(
        table["timestamp"].to_numpy(), (table["frame_index"].to_numpy() / 10).astype(np.float32)
    )
    assert not [p for p in edge.rglob(".*")], "temporary files left behind"
    check_timestamp_rule(edge)


def test_edge_tasks_unicode_long_and_switching(edge: Path) -> None:
    spec = sample_spec("edge")
    tasks = pq.read_table(edge / "meta/tasks.parquet")["__index_level_0__"].to_pylist()
    assert tasks == spec.tasks()
    assert any(len(t) > 1000 for t in tasks) and any("拾起红色方块" in t for t in tasks)
    table, rows = data(edge), episodes(edge).to_pylist()
    for e, ep_tasks in enumerate(spec.episode_tasks):
        got = table.filter(pc.equal(table["episode_index"], e))["task_index"].to_pylist()
        n = spec.episode_lengths[e]
        assert got == [tasks.index(ep_tasks[j]) for j in frame_task_slots(n, len(ep_tasks))]
        if len(ep_tasks) == 2:  # the switch falls at frame_index == length // 2
            assert got[n // 2 - 1 : n // 2 + 1] == [tasks.index(ep_tasks[0]), tasks.index(ep_tasks[1])]
        assert rows[e]["tasks"] == list(ep_tasks)


def test_edge_images_are_png_structs_that_decode(edge: Path) -> None:
    table = data(edge)
    cams = [k for k, ft in info(edge)["features"].items() if ft["dtype"] in ("video", "image")]
    cells = table["observation.images.top"].to_pylist()
    for cell, e, f in zip(cells, table["episode_index"].to_pylist(), table["frame_index"].to_pylist()):
        assert cell["bytes"].startswith(b"\x89PNG\r\n\x1a\n") and cell["path"] == f"frame-{f:06d}.png"
        img = png_rgb(cell["bytes"])
        assert img.shape == (48, 64, 3)
        assert decode_frame_id(img, cam=cams.index("observation.images.top")) == (e, f)


def test_edge_video_frames_and_keyframes(edge: Path) -> None:
    spec = sample_spec("edge")
    assert check_frames_identify(edge) == 3 * sum(spec.episode_lengths)
    for key in spec.video_keys:
        for row in episodes(edge).to_pylist():
            kf, tb = packets(video_file(edge, row, key))
            starts_on_key = kf[round(row[f"videos/{key}/from_timestamp"] / tb)]
            assert starts_on_key == (row["episode_index"] not in spec.non_keyframe_episodes), (key, row)


def test_no_video_dataset(tmp_path: Path) -> None:
    root = write_v3_dataset(tmp_path / "novideo", sample_spec("novideo"))
    meta = info(root)
    assert meta["video_path"] is None and not (root / "videos").exists() and meta["fps"] == 50
    assert not any(ft["dtype"] == "video" for ft in meta["features"].values())
    assert not any(c.startswith("videos/") for c in episodes(root).column_names)
    bare = DatasetSpec(episode_lengths=(1, 2, 3), episode_tasks=(("a",), ("b",), ("a", "b")), fps=10)
    root = write_v3_dataset(tmp_path / "bare", bare)
    assert info(root)["video_path"] is None and len(data(root)) == 6


def test_demo_and_x264(demo_root: Path, tmp_path: Path) -> None:
    root = demo_root  # written once per run (tests/conftest.py)
    assert len(list(root.glob("data/chunk-*"))) >= 2 and len(list(root.glob("videos/*/chunk-*"))) >= 4
    spec = dataclasses.replace(sample_spec("edge"), codec="libx264", episode_lengths=(4, 1, 2, 3, 6, 5) * 2)
    root = write_v3_dataset(tmp_path / "x264", spec)
    assert {ft["info"]["video.codec"] for ft in info(root)["features"].values() if "info" in ft} == {"h264"}
    assert check_frames_identify(root) == 3 * 42
    with pytest.raises(FileExistsError, match="non-empty"):
        write_v3_dataset(root, spec)


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"episode_lengths": (3, 0)}, "(3, 0)"),
        ({"episode_tasks": (("a",), ("x", "y", "z"))}, "('x', 'y', 'z')"),
        ({"non_keyframe_episodes": (0,)}, "[0]"),
        ({"codec": "libvpx"}, "'libvpx'"),
        ({"cameras": (CameraSpec("c", 64, 64), CameraSpec("c", 32, 32))}, "['c', 'c']"),
    ],
)
def test_spec_validation_shows_the_bad_value(change: dict[str, Any], shown: str) -> None:
    base = {
        "episode_lengths": (3, 2),
        "episode_tasks": (("a",), ("b",)),
        "cameras": (CameraSpec("c", 64, 64),),
    }
    with pytest.raises(ValueError) as err:
        DatasetSpec(**{**base, **change})
    assert shown in str(err.value)
    with pytest.raises(ValueError, match="27x64"):
        CameraSpec("c", 27, 64)


@given(
    st.lists(st.integers(1, 50), min_size=1, max_size=40),
    st.one_of(st.none(), st.integers(1, 120)),
    st.integers(1, 4),
)
def test_layout_rolls_like_lerobot(lengths: list[int], limit: int | None, chunks_size: int) -> None:
    layout = _layout(lengths, limit, chunks_size)
    flat = [c * chunks_size + f for c, f in layout]
    assert flat[0] == 0 and all(b - a in (0, 1) for a, b in itertools.pairwise(flat))
    assert all(f < chunks_size for _, f in layout)
    for file_no in set(flat):
        sizes = [n for n, k in zip(lengths, flat) if k == file_no]
        assert limit is None or len(sizes) == 1 or sum(sizes) <= limit
