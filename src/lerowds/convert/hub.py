"""Open a LeRobot v3 source: from a local root, or from the Hugging Face Hub fetching only what is selected."""

from __future__ import annotations

import dataclasses
import glob
from collections.abc import Callable, Sequence
from pathlib import Path

from lerowds.convert.fetch import hub_files
from lerowds.convert.source import SourceDataset, load_local
from lerowds.errors import SourceError


def hub_snapshot(repo_id: str, revision: str | None, allow_patterns: Sequence[str]) -> Path:
    """Download (or find in the HF cache) the files of ``repo_id`` matching ``allow_patterns``.

    Goes through ``huggingface_hub.snapshot_download``: its cache, ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and
    ``HF_HUB_CACHE`` work as Hub users expect.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    # Offline, say so: huggingface_hub 1.x otherwise lists the repo tree for a commit-hash revision and fails.
    offline = {"local_files_only": True} if constants.HF_HUB_OFFLINE else {}
    try:
        path = snapshot_download(
            repo_id=repo_id, repo_type="dataset", revision=revision, allow_patterns=list(allow_patterns),
            **offline,
        )  # fmt: skip
    except LocalEntryNotFoundError as e:
        raise SourceError(
            f"{repo_id} (revision {revision or 'main'}) is not in the local Hugging Face cache and the Hub "
            f"cannot be reached ({e}); connect, unset HF_HUB_OFFLINE, or pass --root DIR"
        ) from e
    except HfHubHTTPError as e:
        raise SourceError(f"{repo_id} (revision {revision or 'main'}): Hub error: {e}") from e
    except (OSError, ValueError) as e:
        raise SourceError(f"{repo_id} (revision {revision or 'main'}): download failed: {e}") from e
    return Path(path)


def open_source(
    repo_id: str,
    *,
    root: str | Path | None = None,
    revision: str | None = None,
    select: Callable[[SourceDataset], Sequence[int]] | None = None,
    on_demand: bool = False,
) -> tuple[SourceDataset, tuple[int, ...]]:
    """Open a v3 dataset and choose its episodes; check that their data and video files are present.

    With ``root`` the dataset is read from disk. Without it, ``meta/`` is fetched from the Hub first, then only
    the data and video files of the selected episodes; ``on_demand``: none of them, only their sizes and content
    ids (``source.remote_files``), for ``fetch.SourceFetcher``. The returned revision is the resolved commit.
    """
    if root is not None:
        source = load_local(root, repo_id, revision)
    else:
        snapshot = hub_snapshot(repo_id, revision, ["meta/*", "meta/**", "README.md"])
        source = load_local(snapshot, repo_id, snapshot.name)
    selected = (
        tuple(select(source)) if select is not None else tuple(e.episode_index for e in source.episodes)
    )
    if root is None and on_demand:
        from huggingface_hub import constants

        files = hub_files(
            repo_id, str(source.revision), source.files_for(selected), offline=constants.HF_HUB_OFFLINE
        )
        source = dataclasses.replace(source, remote_files=files)
    elif root is None:
        if len(selected) == len(source.episodes):  # everything: cheaper for huggingface_hub to match
            patterns = ["data/*", "videos/*"]
        else:
            patterns = [glob.escape(f) for f in source.files_for(selected)]  # exact names, "[" and all
        hub_snapshot(repo_id, source.revision, patterns)
    source.check_files(selected)
    return source, selected
