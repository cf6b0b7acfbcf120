"""An episode table is published input: re-signed rows that point a member at the wrong bytes are refused,
naming the episode, locally and remotely (issue 21, items 2 and 4).

Each case rewrites ``episodes.parquet`` consistently, as a publisher could: the table's sha256 in
``index.json`` and the span CRC-32s are recomputed, so only the pointer itself is wrong. Pointers outside
a member's span or shard (or not integers) are refused when the table loads; pointers at a real member of
another episode or camera inside the span are refused when the episode is admitted, by its tar header.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lerowds import LeRobotWebDataset
from lerowds.convert import ConvertOptions, convert
from lerowds.errors import FormatError
from lerowds.format import (
    CRC32_COLUMN,
    EPISODES_FILE,
    INDEX_FILE,
    EpisodeTable,
    ShardWriter,
    check_member_headers,
    layout_problems,
    member_names,
    read_local_index,
    video_columns,
)
from lerowds.reader.io.integrity import Span
from lerowds.testing.v3writer import CameraSpec, DatasetSpec, write_v3_dataset

sys.path.insert(0, str(Path(__file__).parent))
from httpserver import LoopbackServer

FRONT, WRIST = "observation.images.front", "observation.images.wrist"
FAST = {
    "LEROWDS_CONNECT_TIMEOUT": "5",
    "LEROWDS_READ_TIMEOUT": "2",
    "LEROWDS_RETRIES": "3",
    "LEROWDS_BACKOFF": "0.01",
    "LEROWDS_BACKOFF_MAX": "0.05",
}

Columns = dict[str, np.ndarray]


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 episodes in one shard, two cameras of different frame sizes."""
    base = tmp_path_factory.mktemp("tampered")
    lengths = [5, 7, 6, 4]
    spec = DatasetSpec(
        repo_id="lerowds/tampered",
        fps=15,
        episode_lengths=lengths,
        episode_tasks=[["pick up the red cube"]] * len(lengths),
        cameras=(CameraSpec(FRONT, h=32, w=32), CameraSpec(WRIST, h=48, w=64)),
    )
    src = write_v3_dataset(base / "src", spec)
    out = base / "out"
    convert(
        ConvertOptions(repo_id="lerowds/tampered", root=src, output=out, shard_size=1 << 20, progress=False)
    )
    return out


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FAST.items():
        monkeypatch.setenv(k, v)


def resign(src: Path, out: Path, edit: Callable[[Columns], None], *, table: pa.Table | None = None) -> Path:
    """A copy of ``src`` whose episode table ``edit`` changed, re-signed: span CRC-32s recomputed where the
    span lies in its shard, the table's sha256 in ``index.json`` updated. ``table``: write this one instead."""
    shutil.copytree(src, out)
    index, parsed = read_local_index(out)
    columns = {k: np.array(v, dtype=np.int64) for k, v in parsed.columns.items()}
    edit(columns)
    if table is None:
        for row in range(len(parsed)):
            shard = (out / index.shards[int(columns["shard"][row])].name).read_bytes()
            start, size = int(columns["offset"][row]), int(columns["size"][row])
            if 0 <= start and 0 < size and start + size <= len(shard):
                columns[CRC32_COLUMN][row] = zlib.crc32(shard[start : start + size])
        data = EpisodeTable(columns, parsed.tasks).to_parquet_bytes()
    else:
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        data = buf.getvalue().to_pybytes()
    (out / EPISODES_FILE).write_bytes(data)
    index = dataclasses.replace(index, episodes_sha256=hashlib.sha256(data).hexdigest())
    (out / INDEX_FILE).write_bytes(index.to_bytes())
    return out


def _read_all(source: str | Path, tmp_path: Path, episodes: list[int] | None = None) -> list[dict]:
    ds = LeRobotWebDataset(
        source, episodes=episodes, shuffle=False, return_uint8=True, cache_dir=tmp_path / "c"
    )
    return list(ds)


def _point(row: int, col: str, from_row: int, from_col: str | None = None, span: bool = False):
    """An edit: row ``row``'s member ``col`` (a camera, or "parquet") takes the (offset, size) of row
    ``from_row``'s ``from_col``; with ``span``, the row's span grows to cover both (so that only the member's
    header can tell)."""

    def columns(c: str) -> tuple[str, str]:
        return ("parquet_offset", "parquet_size") if c == "parquet" else video_columns(c)

    off_col, size_col = columns(col)
    src_off, src_size = columns(from_col or col)

    def edit(c: Columns) -> None:
        c[off_col][row], c[size_col][row] = c[src_off][from_row], c[src_size][from_row]
        if span:
            lo = min(c["offset"][row], c["offset"][from_row])
            hi = max(c["offset"][row] + c["size"][row], c["offset"][from_row] + c["size"][from_row])
            c["offset"][row], c["size"][row] = lo, hi - lo

    return edit


def _set(**values: int):
    def edit(c: Columns) -> None:
        for name, value in values.items():
            c[name][1] = value

    return edit


def _shift(member: str, by: int):
    def edit(c: Columns) -> None:
        c[f"{member}_offset"][1] += by
        c[f"{member}_size"][1] -= by

    return edit


# ----------------------------------------------------------------------------------------------- item 2
ADMISSION = {  # refused when the episode is admitted: the member is a real one, of the wrong episode/camera
    "other episode's clip, span widened": (
        _point(1, FRONT, 2, span=True),
        f"clip of camera '{FRONT}'",
        f"episode_000002.{FRONT}.mp4",
    ),
    "same episode's other camera": (
        _point(1, FRONT, 1, WRIST),
        f"clip of camera '{FRONT}'",
        f"episode_000001.{WRIST}.mp4",
    ),
    "other episode's parquet, span widened": (
        _point(1, "parquet", 0, span=True),
        "parquet member",
        "episode_000000.parquet",
    ),
}


@pytest.mark.parametrize("case", sorted(ADMISSION))
def test_member_of_another_episode_or_camera_is_refused_at_admission_locally(
    two_cameras: Path, tmp_path: Path, case: str
) -> None:
    edit, what, found = ADMISSION[case]
    root = resign(two_cameras, tmp_path / "ds", edit)
    read_local_index(root)  # the table loads: every pointer lies inside its span and shard
    pattern = rf"episode 1 \(shards/shard-000000.tar .*{what}.*'{found}', not 'episode_000001"
    with pytest.raises(FormatError, match=pattern):
        _read_all(root, tmp_path, episodes=[1])
    assert len(_read_all(root, tmp_path, episodes=[0, 2, 3])) == 5 + 6 + 4  # the others read as before


@pytest.mark.parametrize("case", sorted(ADMISSION))
def test_member_of_another_episode_or_camera_is_refused_at_admission_remotely(
    two_cameras: Path, tmp_path: Path, fast: None, case: str
) -> None:
    edit, what, found = ADMISSION[case]
    root = resign(two_cameras, tmp_path / "ds", edit)
    pattern = rf"episode 1 \(shards/shard-000000.tar .*{what}.*'{found}', not 'episode_000001"
    with LoopbackServer(root) as srv:
        with pytest.raises(FormatError, match=pattern):
            _read_all(srv.url, tmp_path, episodes=[1])
        span_requests = sum(n for (path, start), n in srv.requests.items() if start is not None)
    assert span_requests == 1  # a bad table is not a bad download: no refetch


# ----------------------------------------------------------------------------------------------- item 4
AT_LOAD = {  # refused when the table loads, before any shard byte is read
    "other episode's clip": (_point(1, FRONT, 2), rf"clip of camera '{FRONT}' .*outside|not lie inside"),
    "huge parquet size": (_set(parquet_size=2**40), "parquet member offset=.* size=1099511627776"),
    "negative parquet size": (_set(parquet_size=-5), "parquet member .*size=-5"),
    "negative parquet offset": (_set(parquet_offset=-512), "parquet member offset=-512"),
    "huge clip size": (_set(**{video_columns(WRIST)[1]: 2**62}), f"clip of camera '{WRIST}'"),
    "negative json offset": (_set(json_offset=-(2**40)), "json member offset=-1099511627776"),
    "span past the shard": (_set(size=1 << 30), "span offset=.* size=1073741824 .*inside its shard"),
    "negative span": (_set(offset=-512), "span offset=-512"),
    "unaligned member": (_shift("parquet", 3), "parquet member offset="),
}


@pytest.mark.parametrize("case", sorted(AT_LOAD))
def test_pointer_outside_span_or_shard_is_refused_when_the_table_loads(
    two_cameras: Path, tmp_path: Path, fast: None, case: str
) -> None:
    edit, what = AT_LOAD[case]
    root = resign(two_cameras, tmp_path / "ds", edit)
    pattern = rf"{EPISODES_FILE}: episode 1 \(shards/shard-000000.tar\): .*({what})"
    with pytest.raises(FormatError, match=pattern):
        read_local_index(root)
    with pytest.raises(FormatError, match=pattern):
        LeRobotWebDataset(root)
    with LoopbackServer(root) as srv:
        with pytest.raises(FormatError, match=pattern):
            LeRobotWebDataset(srv.url, cache_dir=tmp_path / "c")
        assert not [path for path, _ in srv.requests if "shards/" in path]


def test_non_integer_column_is_refused(two_cameras: Path, tmp_path: Path) -> None:
    raw = pq.read_table(two_cameras / EPISODES_FILE)
    sizes = raw.column("parquet_size").to_numpy().astype(np.float64) + 0.5
    table = raw.set_column(raw.column_names.index("parquet_size"), "parquet_size", pa.array(sizes))
    root = resign(two_cameras, tmp_path / "ds", lambda c: None, table=table)
    with pytest.raises(FormatError, match=r"column 'parquet_size' must hold integers, it has type double"):
        read_local_index(root)


def test_decoded_frames_of_another_size_are_refused(
    two_cameras: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind the header check, the decoder checks frames against the features' frame size: with the
    header check switched off, the other camera's clip still never becomes a wrongly shaped sample."""
    root = resign(two_cameras, tmp_path / "ds", _point(1, FRONT, 1, WRIST))
    monkeypatch.setattr(Span, "check_headers", lambda self, read: None)
    with pytest.raises(
        FormatError, match=rf"episode 1, camera '{FRONT}': clip .*shard-000000.tar.* 48x64 .* 32x32"
    ):
        _read_all(root, tmp_path, episodes=[1])
    index, _ = read_local_index(root)
    assert (index.frame_size(FRONT), index.frame_size(WRIST)) == ((32, 32), (48, 64))


def test_member_headers_with_long_camera_names(tmp_path: Path) -> None:
    """Names over 100 bytes (GNU long names, UTF-8 included) are checked whole, never falsely refused."""
    keys = ["observation.images." + "x" * 60, "observation.images." + "é" * 50, "cam"]
    with ShardWriter(tmp_path / "s.tar") as writer:
        locs = [
            writer.add_episode([(n, bytes(100 + i)) for i, n in enumerate(member_names(e, keys))])
            for e in (3, 4)
        ]
        writer.commit()
    data = (tmp_path / "s.tar").read_bytes()

    def read(off: int, size: int) -> bytes:
        return data[off : off + size]

    for episode, loc in zip((3, 4), locs):
        members = [(m.offset, m.size) for m in loc.members]
        check_member_headers(read, episode, members, keys, f"episode {episode}")
        key = f"episode_{episode:06d}"
        swapped = [members[0], members[1], members[3], members[2], members[4]]
        with pytest.raises(
            FormatError,
            match=rf"episode {episode}: its clip of camera '{keys[0]}'.* is '{key}.{keys[1][:30]}",
        ):
            check_member_headers(read, episode, swapped, keys, f"episode {episode}")
    with pytest.raises(
        FormatError, match=r"json member .* is 'episode_000003.json', not 'episode_000004.json'"
    ):
        check_member_headers(read, 4, [(m.offset, m.size) for m in locs[0].members], keys, "episode 4")


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 16])
def test_layout_problems_count_rows_across_chunks(two_cameras: Path, tmp_path: Path, chunk: int) -> None:
    index, table = read_local_index(two_cameras)
    columns = {k: np.array(v, dtype=np.int64) for k, v in table.columns.items()}
    for row in (3, 1):
        columns["parquet_size"][row] = -1
    columns["size"][2] = 1 << 40
    bad = EpisodeTable(columns, table.tasks)
    sizes, names = [s.size for s in index.shards], [s.name for s in index.shards]
    problems = layout_problems(bad, sizes, names, index.video_keys, chunk=chunk)
    assert len(problems) == 2
    assert (
        problems[0].startswith("episode 2 (shards/shard-000000.tar): span offset=")
        and "rows like" not in problems[0]
    )
    assert problems[1].startswith("episode 1 (shards/shard-000000.tar): parquet member offset=")
    assert problems[1].endswith("(2 rows like it)")
    assert layout_problems(table, sizes, names, index.video_keys, chunk=chunk) == []


@pytest.mark.parametrize(("column", "value"), [("episode_index", -1), ("length", 0), ("length", -3)])
def test_negative_episode_or_empty_length_is_refused(
    two_cameras: Path, tmp_path: Path, column: str, value: int
) -> None:
    def edit(c: Columns) -> None:
        c[column][0] = value

    root = resign(two_cameras, tmp_path / "ds", edit)
    with pytest.raises(FormatError, match=rf"{EPISODES_FILE}: row 0 \(episode -?\d+\): {column} {value} < "):
        read_local_index(root)
