"""``lerowds info``: a converted dataset's totals, features, cameras, shards and sizes, as text tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lerowds.format import DatasetIndex, EpisodeTable, read_local_index, video_columns


def _table(rows: Sequence[Sequence[object]], indent: str = "  ") -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n / 1e3:,.1f} kB"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def describe(root: str | Path) -> str:
    """A human-readable summary of the converted dataset at ``root`` (reads only its index and table)."""
    index, table = read_local_index(root)
    return format_info(index, table, Path(root))


def format_info(index: DatasetIndex, table: EpisodeTable, root: Path) -> str:
    sizes = np.array([s.size for s in index.shards], dtype=np.int64)
    lengths = table["length"]
    src = f"{index.repo_id}" + (f" @ {index.revision}" if index.revision else "")
    lines = [f"lerowds dataset {root}"]
    episodes = f"{index.total_episodes} (length min {lengths.min()}, median {int(np.median(lengths))}, max {lengths.max()})"
    frames = f"{index.total_frames} ({_duration(index.total_frames / index.fps)} at {index.fps} fps)"
    shards = (
        f"{len(index.shards)}, {_mb(int(sizes.sum()))} (min {_mb(sizes.min())}, "
        f"median {_mb(float(np.median(sizes)))}, max {_mb(sizes.max())})"
    )
    lines += _table(
        [
            ["source", f"{src} (LeRobot {index.codebase_version}, robot {index.robot_type or '-'})"],
            ["episodes", episodes],
            ["frames", frames],
            ["tasks", len(index.tasks)],
            ["shards", shards],
            ["options", ", ".join(f"{k}={v}" for k, v in index.options.items()) or "-"],
        ]
    )
    lines += ["", "features:"]
    rows: list[list[object]] = [["name", "dtype", "shape", "kind"]]
    for name, f in index.features.items():
        kind = {"video": "camera (mp4 per episode)", "image": "camera (images in the parquet)"}.get(
            f.get("dtype"), ""
        )
        rows.append([name, f.get("dtype"), tuple(f.get("shape") or ()), kind])
    lines += _table(rows)
    if index.camera_keys:
        lines += ["", "cameras:"]
        rows = [["name", "storage", "h x w", "codec", "bytes/frame"]]
        frames = max(index.total_frames, 1)
        for name in index.camera_keys:
            f = index.features[name]
            info = f.get("info") or {}
            shape = f.get("shape") or []
            hw = f"{shape[0]} x {shape[1]}" if len(shape) >= 2 else "?"
            per_frame = "-"
            if name in index.video_keys:
                per_frame = f"{int(table[video_columns(name)[1]].sum()) / frames:,.0f}"
            codec = f"{info.get('video.codec', '?')} {info.get('video.pix_fmt', '')}".strip()
            rows.append([name, f.get("dtype"), hw, codec if f.get("dtype") == "video" else "-", per_frame])
        lines += _table(rows)
    return "\n".join(lines) + "\n"
