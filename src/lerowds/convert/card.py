"""The dataset card of a converted dataset: what the source's card said, recorded at convert time, and the
``README.md`` (YAML metadata + a short page) that ``lerowds push`` uploads."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lerowds.format import FORMAT_VERSION, INDEX_FILE, DatasetIndex, atomic_write_bytes

log = logging.getLogger(__name__)

CARD_FILE = "README.md"
SOURCE_RECORD = ".lerowds/source.json"  # repo id, revision and card metadata of the source, at convert time
CARD_FIELDS = ("license", "license_name", "license_link", "tags", "task_categories", "language")


def source_card_metadata(root: Path) -> dict[str, Any]:
    """The metadata of ``root/README.md`` that also describes the converted dataset (license, tags, ...).

    Never ``configs`` or sizes: those describe the source's files. A card whose YAML does not parse is logged
    (naming the file) and contributes nothing; the card is description, not data.
    """
    path = root / CARD_FILE
    if not path.is_file():
        return {}
    import yaml  # a dependency of huggingface_hub
    from huggingface_hub.repocard import metadata_load

    try:
        meta = metadata_load(path) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:  # the card is optional
        log.warning("%s: unreadable dataset card metadata (%s); the converted card will lack it", path, e)
        return {}
    if not isinstance(meta, dict):
        log.warning("%s: card metadata is a %s, not a mapping; ignored", path, type(meta).__name__)
        return {}
    return {k: meta[k] for k in CARD_FIELDS if meta.get(k) not in (None, "", [])}


def record_source(output: Path, repo_id: str, revision: str | None, card: dict[str, Any]) -> None:
    """Write ``.lerowds/source.json`` (atomically): the source's repo id, revision and card metadata."""
    record = {"repo_id": repo_id, "revision": revision, "card": card}
    atomic_write_bytes(
        output / SOURCE_RECORD, json.dumps(record, indent=1, ensure_ascii=False).encode() + b"\n"
    )


def read_source_record(output: Path) -> dict[str, Any]:
    """``.lerowds/source.json``, or ``{}`` for an output converted before lerowds recorded it."""
    path = output / SOURCE_RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable (%s); the card will lack the source's license and tags", path, e)
        return {}
    return record if isinstance(record, dict) else {}


def dataset_card(output: str | Path, repo_id: str | None = None) -> str:
    """The ``README.md`` of a finished output (to be published as ``repo_id``): YAML metadata, then what it is,
    its features and how to read it."""
    from huggingface_hub import DatasetCard, DatasetCardData

    output = Path(output)
    index = DatasetIndex.from_bytes((output / INDEX_FILE).read_bytes(), str(output / INDEX_FILE))
    record = read_source_record(output)
    card = dict(record.get("card") or {}) if record.get("repo_id") == index.repo_id else {}
    tags = [str(t) for t in card.pop("tags", []) or []]
    tags += [t for t in ("LeRobot", "lerowds", "webdataset") if t not in tags]
    card.setdefault("task_categories", ["robotics"])
    data = DatasetCardData(
        **card,
        tags=tags,
        source_datasets=[index.repo_id],
        lerowds={
            "format_version": FORMAT_VERSION,
            "source_repo_id": index.repo_id,
            "source_revision": index.revision,
            "codebase_version": index.codebase_version,
            "fps": index.fps,
            "robot_type": index.robot_type,
            "total_episodes": index.total_episodes,
            "total_frames": index.total_frames,
            "shards": len(index.shards),
        },
    )
    return str(DatasetCard(f"---\n{data.to_yaml()}\n---\n{_body(index, repo_id or 'ORG/NAME')}"))


def _body(index: DatasetIndex, repo_id: str) -> str:
    revision = f" at revision `{index.revision}`" if index.revision else ""
    size = sum(s.size for s in index.shards)
    rows = "\n".join(
        f"| `{k}` | {f.get('dtype')} | {list(f.get('shape') or [])} |" for k, f in index.features.items()
    )
    first = next(iter(index.camera_keys or list(index.features)), "action")
    return f"""
# {index.repo_id} as lerowds shards

[{index.repo_id}](https://huggingface.co/datasets/{index.repo_id}){revision} (LeRobot {index.codebase_version}),
converted by lerowds (`pip install lerowds`) into WebDataset tar shards with one whole episode
per sample (lerowds format version {FORMAT_VERSION}): {index.total_episodes} episodes, {index.total_frames} frames
at {index.fps} fps, {len(index.shards)} shards ({size / 1e9:.2f} GB). `index.json` lists the shards and their
sha256; `episodes.parquet` says where each episode lies.

## How to read

```python
from lerowds import LeRobotWebDataset

ds = LeRobotWebDataset("hf://datasets/{repo_id}", delta_timestamps={{"{first}": [0.0]}})
```

Streams the episodes it needs with ranged reads (no full download). `lerowds verify DIR` checks a
downloaded copy against the index.

## Features

| key | dtype | shape |
|---|---|---|
{rows}
"""
