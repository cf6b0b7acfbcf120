"""Sources that contradict their ``meta/info.json`` (a declared column missing, ``task_index`` missing, another
dtype or shape, videos at another fps or frame size) are named errors at conversion, and a converted
dataset whose index contradicts its episodes fails ``verify --deep``."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from convert_helpers import run_convert

from lerowds.convert.verify import verify
from lerowds.errors import SourceError
from lerowds.format import INDEX_FILE
from lerowds.testing.v3writer import CameraSpec, DatasetSpec, write_v3_dataset

REPO = "lerowds/contract"
CAMERA = "observation.images.front"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = DatasetSpec(
        repo_id=REPO,
        fps=15,
        episode_lengths=(3, 4, 5),
        episode_tasks=(("pick",), ("place",), ("pick",)),
        cameras=(CameraSpec(CAMERA, h=32, w=32),),
    )
    return write_v3_dataset(tmp_path_factory.mktemp("contract") / "src", spec)


@pytest.fixture(scope="module")
def converted(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_convert(source, REPO, tmp_path_factory.mktemp("contract_out") / "out").output


def _edit_info(root: Path, edit: Callable[[dict], None]) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    edit(info)
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))


def _drop_column(root: Path, column: str) -> None:
    for f in sorted((root / "data").glob("*/*.parquet")):
        table = pq.read_table(f)
        pq.write_table(table.drop_columns([column]).replace_schema_metadata(table.schema.metadata), f)


def _set(key: str, field: str, value: object) -> Callable[[dict], None]:
    def edit(info: dict) -> None:
        info["features"][key][field] = value

    return edit


def _fps(info: dict) -> None:
    info["fps"] = 30


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing feature column": (
        lambda r: _drop_column(r, "observation.state"),
        r"episode 0: .*file-000\.parquet: no column 'observation.state', which meta/info.json declares",
    ),
    "missing task_index": (
        lambda r: _drop_column(r, "task_index"),
        r"episode 0: .*no column 'task_index', which meta/info.json declares",
    ),
    "dtype": (
        lambda r: _edit_info(r, _set("observation.state", "dtype", "int64")),
        r"column 'observation.state' holds float values, but meta/info.json declares dtype 'int64'",
    ),
    "shape": (
        lambda r: _edit_info(r, _set("action", "shape", [7])),
        r"column 'action' is fixed_size_list<.*>\[6\], but meta/info.json declares dtype 'float32', shape \[7\]",
    ),
    "scalar shape": (
        lambda r: _edit_info(r, _set("timestamp", "shape", [2])),
        r"column 'timestamp' holds one value per frame, but meta/info.json declares .*shape \[2\]",
    ),
    "fps": (
        lambda r: _edit_info(r, _fps),
        rf"episode 0, camera '{CAMERA}': .*\.mp4: its frames are 15 per second, but meta/info.json says fps=30",
    ),
    "frame size": (
        lambda r: _edit_info(r, _set(CAMERA, "shape", [48, 64, 3])),
        rf"camera '{CAMERA}': .*its frames are 32x32 \(height x width\), but meta/info.json declares shape",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_source_contradicting_info_json_is_a_named_error(source: Path, tmp_path: Path, case: str) -> None:
    src = shutil.copytree(source, tmp_path / "src")
    mutate, pattern = CASES[case]
    mutate(src)
    with pytest.raises(SourceError, match=pattern):
        run_convert(src, REPO, tmp_path / "out")
    assert not (tmp_path / "out/index.json").exists()


VERIFY_CASES: dict[str, tuple[Callable[[dict], None], str]] = {
    "feature column": (
        lambda i: i["features"].update({"observation.effort": {"dtype": "float32", "shape": [6]}}),
        r"no column 'observation.effort', which index.json declares",
    ),
    "dtype": (_set("action", "dtype", "float64"), r"column 'action' holds float values, but index.json"),
    "fps": (_fps, r"\.mp4: its frames are 15 per second, but index.json says fps=30"),
    "frame size": (
        _set(CAMERA, "shape", [3, 48, 64]),
        r"\.mp4: its frames are 32x32 \(height x width\), but index.json declares shape \[3, 48, 64\]",
    ),
}


@pytest.mark.parametrize("case", sorted(VERIFY_CASES))
def test_verify_deep_finds_an_index_contradicting_the_episodes(
    converted: Path, tmp_path: Path, case: str
) -> None:
    out = shutil.copytree(converted, tmp_path / "out")
    assert verify(out, deep=True).ok
    edit, pattern = VERIFY_CASES[case]
    index = json.loads((out / INDEX_FILE).read_text())
    edit(index)
    (out / INDEX_FILE).write_text(json.dumps(index))
    report = verify(out, deep=True)
    assert not report.ok and len(report.problems) == 3  # one per episode
    assert all(p.startswith(f"episode {e} (shards/") for e, p in enumerate(report.problems))
    assert all(__import__("re").search(pattern, p) for p in report.problems), report.problems


def test_declared_shapes_against_nested_and_variable_lists() -> None:
    import pyarrow as pa

    from lerowds.convert.contract import row_problems, schema_problems

    schema = pa.schema(
        [
            ("grid", pa.list_(pa.list_(pa.float32(), 3), 2)),
            ("joints", pa.list_(pa.float32())),
            ("t", pa.float32()),
        ]
    )
    ok = {
        "grid": {"dtype": "float32", "shape": [2, 3]},
        "joints": {"dtype": "float32", "shape": [2]},
        "t": {"dtype": "float32", "shape": [1]},
    }
    assert schema_problems(schema, ok) == []
    assert schema_problems(schema, {**ok, "grid": {"dtype": "float32", "shape": [3, 3]}})[0].startswith(
        "column 'grid'"
    )
    table = pa.table(
        {
            "grid": pa.array([[[0.0] * 3] * 2] * 3, schema.field("grid").type),
            "joints": [[1.0, 2.0], [1.0], [1.0, 2.0]],
        },
    )
    assert row_problems(table, ok) == [
        "column 'joints': row 1 holds 1 values, but meta/info.json declares dtype 'float32', shape [2] (1 such rows)"
    ]
