"""``lerowds push``: publish a finished, verified output to a Hub dataset repository, ``index.json`` last.

Only what the index names is uploaded (its shards, ``episodes.parquet``), plus the dataset card; never
``.lerowds/`` or stray files. Shards go in commits of at most ``files_per_commit`` files, then the table and the
card, then ``index.json`` alone: a repository whose push stopped half-way has no ``index.json`` (an older one
is deleted in the first commit), so no reader takes it for complete. A rerun skips the files already there
(huggingface_hub compares each file's oid with the Hub's) and finishes the push.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lerowds.checks import check_int
from lerowds.convert.card import CARD_FILE, dataset_card
from lerowds.convert.verify import verify
from lerowds.errors import ConfigError, ConversionError
from lerowds.format import EPISODES_FILE, INDEX_FILE, DatasetIndex

log = logging.getLogger(__name__)

FILES_PER_COMMIT = 100


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did: the repository, the revision pushed to, and the commits made (oids, in order)."""

    repo_id: str
    revision: str
    commits: tuple[str, ...]
    url: str


def push_to_hub(
    output_dir: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    files_per_commit: int = FILES_PER_COMMIT,
) -> PushResult:
    """Upload the finished dataset in ``output_dir`` to the dataset repository ``repo_id`` (created if absent).

    Refuses an unfinished output (no ``index.json``) and one whose shards fail ``verify`` (size, sha256).
    ``revision``: a branch (created from main if absent); ``private``: for a repository created here;
    ``token``: default huggingface_hub's (``HF_TOKEN``, ``hf auth login``).
    """
    output = Path(output_dir)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or repo_id.strip() != repo_id:
        raise ConfigError(f"push: the repository must be ORG/NAME, got {repo_id!r}")
    check_int("push: files_per_commit", files_per_commit, 1)
    index = _finished_and_verified(output)
    card = dataset_card(output, repo_id).encode()
    shards = [s.name for s in index.shards]
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    branch = revision or "main"
    where = f"{repo_id} (revision {branch})"
    commits: list[str] = []

    def commit(message: str, operations: Sequence[object]) -> None:
        info = api.create_commit(
            repo_id=repo_id, repo_type="dataset", revision=branch, operations=list(operations),  # type: ignore[arg-type]
            commit_message=message,
        )  # fmt: skip
        commits.append(str(info.oid))
        log.info("%s: %s (%s)", where, message, info.oid)

    try:
        url = str(api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True))
        if branch != "main" and not branch.startswith("refs/"):
            api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
        stale = bool(api.get_paths_info(repo_id, [INDEX_FILE], repo_type="dataset", revision=branch))
        for start in range(0, len(shards), files_per_commit):
            batch = shards[start : start + files_per_commit]
            ops: list[object] = [CommitOperationDelete(INDEX_FILE)] if stale and start == 0 else []
            ops += [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(output / n)) for n in batch]
            commit(f"lerowds push: shards {start + 1}-{start + len(batch)} of {len(shards)}", ops)
        commit(
            "lerowds push: episode table and dataset card",
            [
                CommitOperationAdd(path_in_repo=EPISODES_FILE, path_or_fileobj=str(output / EPISODES_FILE)),
                CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card),
            ],
        )
        commit(
            "lerowds push: index.json (the dataset is complete)",
            [CommitOperationAdd(path_in_repo=INDEX_FILE, path_or_fileobj=str(output / INDEX_FILE))],
        )
    except HfHubHTTPError as e:
        raise ConversionError(
            f"push {output} -> {where}: Hub error: {e}; check the token (HF_TOKEN / `hf auth login`) has write "
            "access, then rerun: files already uploaded are skipped"
        ) from e
    except Exception as e:
        if not isinstance(e, OSError) and not type(e).__module__.startswith(
            ("httpx", "httpcore", "requests")
        ):
            raise
        raise ConversionError(f"push {output} -> {where}: {e!r}; rerun to finish the push") from e
    return PushResult(repo_id, branch, tuple(commits), url)


def _finished_and_verified(output: Path) -> DatasetIndex:
    if not output.is_dir():
        raise ConversionError(f"push: {output}: no such directory")
    if not (output / INDEX_FILE).is_file():
        raise ConversionError(
            f"push: {output} is not a finished lerowds dataset (no {INDEX_FILE}): finish the conversion first "
            "(rerun `lerowds convert` with the same arguments; with --num-tasks, add --finalize once all tasks "
            "are done)"
        )
    report = verify(output)
    if not report.ok:
        raise ConversionError(f"push: {output} fails verification, nothing was uploaded:\n{report.format()}")
    return DatasetIndex.from_bytes((output / INDEX_FILE).read_bytes(), str(output / INDEX_FILE))
