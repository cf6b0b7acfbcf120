"""Helpers the train tests share (imported by name, like tests/convert/convert_helpers.py)."""

from __future__ import annotations

from pathlib import Path

from lerowds.convert import ConvertOptions, convert
from lerowds.testing.v3writer import DatasetSpec, write_v3_dataset


def convert_tabular(base: Path, repo_id: str, lengths: list[int]) -> Path:
    """A converted tabular dataset (no cameras) with episodes of ``lengths`` frames, small shards."""
    spec = DatasetSpec(
        repo_id=repo_id,
        fps=15,
        episode_lengths=lengths,
        episode_tasks=[["open the top drawer"]] * len(lengths),
    )
    options = ConvertOptions(
        repo_id=repo_id,
        root=write_v3_dataset(base / "src", spec),
        output=base / "out",
        progress=False,
        shard_size=4 * 1024,
    )
    convert(options)
    return base / "out"
