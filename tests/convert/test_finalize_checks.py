"""What the converter writes into ``index.json`` is strict JSON, and ``lerowds verify`` checks the index's
totals and member layout against the episode table (issue 21, item 6)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import run_convert

from lerowds.convert.verify import verify
from lerowds.format import INDEX_FILE, DatasetIndex, read_local_index
from lerowds.reader.meta import stats_as_arrays
from lerowds.testing.v3writer import DatasetSpec, write_v3_dataset


def _strict(text: bytes) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = DatasetSpec(
        repo_id="lerowds/stats", fps=15, episode_lengths=[4, 6, 5], episode_tasks=[["pick"]] * 3
    )
    return write_v3_dataset(tmp_path_factory.mktemp("stats") / "src", spec)


def test_nonfinite_stats_are_written_as_null_with_a_warning(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = Path(shutil.copytree(source, tmp_path / "src"))
    stats_path = src / "meta" / "stats.json"
    stats = json.loads(stats_path.read_text())
    feature = next(k for k, v in stats.items() if isinstance(v.get("std"), list) and len(v["std"]) > 1)
    stats[feature]["std"][1] = math.nan
    stats[feature]["max"] = [math.inf] * len(stats[feature]["max"])
    stats_path.write_text(json.dumps(stats))  # NaN and Infinity, as Python's json (and lerobot) write them
    with caplog.at_level(logging.WARNING, logger="lerowds.convert.finalize"):
        run_convert(src, "lerowds/stats", tmp_path / "out")
    warned = [r.getMessage() for r in caplog.records if r.name == "lerowds.convert.finalize"]
    assert any(f"statistic 'std' of feature '{feature}'" in m for m in warned), warned
    assert any(f"statistic 'max' of feature '{feature}'" in m for m in warned), warned
    written = _strict((tmp_path / "out" / INDEX_FILE).read_bytes())
    assert written["stats"][feature]["std"][1] is None  # type: ignore[index]
    assert written["stats"][feature]["max"] == [None] * len(stats[feature]["max"])  # type: ignore[index]
    index, _ = read_local_index(tmp_path / "out")
    arrays = stats_as_arrays(index.stats)  # as lerobot loads its own stats.json: NaN, float arrays
    std = arrays[feature]["std"]
    assert std.dtype.kind == "f" and math.isnan(std[1]) and np.isfinite(np.delete(std, 1)).all()
    assert np.array_equal(std[[0]], np.asarray(stats[feature]["std"][:1]))


def test_index_bytes_are_strict_json_whatever_the_stats() -> None:
    index = DatasetIndex(
        repo_id="x/y",
        revision=None,
        codebase_version="v3.0",
        fps=10,
        features={},
        tasks=(),
        stats={"a": {"mean": [1.0, math.nan], "min": -math.inf, "count": [3]}},
        total_episodes=0,
        total_frames=0,
        shards=(),
        episodes_sha256="0" * 64,
    )
    d = _strict(index.to_bytes())
    assert d["stats"] == {"a": {"mean": [1.0, None], "min": None, "count": [3]}}  # type: ignore[index]
    back = DatasetIndex.from_bytes(index.to_bytes()).stats["a"]
    assert back["mean"][0] == 1.0 and math.isnan(back["mean"][1]) and math.isnan(back["min"])


@pytest.mark.parametrize("deep", [False, True])
@pytest.mark.parametrize(("field", "delta"), [("total_frames", 3), ("total_episodes", -1)])
def test_verify_reports_wrong_totals(
    source: Path, tmp_path: Path, deep: bool, field: str, delta: int
) -> None:
    out = tmp_path / "out"
    run_convert(source, "lerowds/stats", out)
    assert verify(out, deep=deep).ok
    index, _ = read_local_index(out)
    wrong = getattr(index, field) + delta
    (out / INDEX_FILE).write_bytes(dataclasses.replace(index, **{field: wrong}).to_bytes())
    report = verify(out, deep=deep)
    assert any(f"says {field}={wrong}" in p for p in report.problems), report.problems
