"""What a shard was built from: the identity of each source file it read, and of its episodes' metadata.

Recorded in the shard's done-record, so that a rerun converts again exactly the shards whose sources changed
(an edited, restored or replaced mp4 or data parquet, or another source with the same file sizes) instead of
keeping shards built from other bytes. A file's identity is its size, ``st_mtime_ns`` and ``st_ctime_ns``:
one ``stat`` per file, so a rerun stays cheap. Every write changes mtime and ctime, and no tool can set
ctime back (``touch -r`` and ``cp -p`` restore mtime only). Hashing the source bytes instead would make
every rerun read the whole source again, which costs as much as converting it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lerowds.convert.source import SourceEpisode
from lerowds.errors import SourceError

FileId = tuple[int, int, int]  # size, mtime_ns, ctime_ns


def shard_files(episodes: Sequence[SourceEpisode]) -> list[str]:
    """The data and video files (relative to the source root) that these episodes are read from, sorted."""
    files = {e.data_path for e in episodes}
    files.update(ref.path for e in episodes for _, ref in e.videos)
    return sorted(files)


def file_ids(root: Path, rels: Sequence[str], seen: dict[str, FileId] | None = None) -> dict[str, FileId]:
    """The identity of each file ``rels`` under ``root`` (``seen``: a cache over calls, one ``stat`` per file
    and run); a missing file is a SourceError naming it."""
    seen = {} if seen is None else seen
    for rel in rels:
        if rel in seen:
            continue
        try:
            st = os.stat(root / rel)
        except FileNotFoundError:
            raise SourceError(f"{root / rel}: missing") from None
        seen[rel] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    return {rel: seen[rel] for rel in rels}


def episodes_digest(episodes: Sequence[SourceEpisode]) -> str:
    """A digest of the episodes' source metadata (data file, segments, length, tasks)."""
    body = json.dumps([asdict(e) for e in episodes], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def source_id(
    root: Path, episodes: Sequence[SourceEpisode], seen: dict[str, FileId] | None = None
) -> dict[str, Any]:
    """What a shard of ``episodes`` is built from, as its done-record stores it."""
    return {"episodes": episodes_digest(episodes), "files": file_ids(root, shard_files(episodes), seen)}


def source_changes(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """How ``current`` differs from ``recorded``, in words (empty when the shard's sources are unchanged)."""
    if not recorded:
        return ["its done-record does not say which source files it was built from (an older lerowds)"]
    changes = []
    if recorded.get("episodes") != current["episodes"]:
        changes.append("the episodes' metadata (data file, video segments, length or tasks) changed")
    old = recorded.get("files")
    old = old if isinstance(old, Mapping) else {}
    new = current["files"]
    for rel in sorted(set(old) | set(new)):
        a, b = old.get(rel), new.get(rel)
        if a is None or b is None:
            changes.append(f"{rel} is {'no longer' if b is None else 'newly'} one of its sources")
        elif tuple(a) != tuple(b):
            what = "size" if a[0] != b[0] else "modification time" if a[1] != b[1] else "status change time"
            changes.append(f"{rel} changed since (its {what} differs: {list(a)} then, {list(b)} now)")
    return changes
