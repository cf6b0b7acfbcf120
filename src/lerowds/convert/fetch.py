"""Bounded-disk conversion from the Hub: fetch the source files each shard reads just before it is converted,
free them once no later shard of this task reads them, and never hold more than ``--max-source-disk`` bytes.

Files go through ``huggingface_hub.hf_hub_download`` (``HF_TOKEN``, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``) into
a directory of the task's own; a file already in the user's Hugging Face cache is read from there. Files
this task downloads count from the start of their download until they are deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from lerowds.convert.source import SourceDataset
from lerowds.convert.state import STATE_DIR
from lerowds.errors import ConfigError, SourceError

log = logging.getLogger(__name__)

# of the limit, for huggingface_hub's own files in a cache dir (CACHEDIR.TAG; its locks are empty)
RESERVE = 4096
DOWNLOAD_THREADS = 8  # a shard's files are downloaded in parallel, as snapshot_download does
RemoteFile = tuple[int, str]  # size, the Hub's content id (LFS sha256, else the git blob id)


@contextlib.contextmanager
def _quiet_hub() -> Iterator[None]:
    """No huggingface_hub progress bars while downloading: one bar per file would clutter lerowds' own, and
    tqdm's monitor thread would outlive the download into the worker processes forked later."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def hub_files(repo_id: str, commit: str, rels: Iterable[str], *, offline: bool) -> dict[str, RemoteFile]:
    """The size and content id of each of ``rels`` at ``commit``, without downloading them: from the Hub's
    tree listing, or offline from the local cache (where every file must then be)."""
    wanted = sorted(set(rels))
    if offline:
        return _cached_files(repo_id, commit, wanted)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    found: dict[str, RemoteFile] = {}
    folders = sorted({rel.split("/", 1)[0] for rel in wanted})
    try:
        for folder in folders:
            for entry in HfApi().list_repo_tree(
                repo_id, path_in_repo=folder, recursive=True, repo_type="dataset", revision=commit
            ):
                if isinstance(entry, RepoFile):  # not a folder
                    oid = entry.lfs.sha256 if entry.lfs else entry.blob_id
                    found[entry.path] = (int(entry.size), str(oid))
    except HfHubHTTPError as e:
        raise SourceError(f"{repo_id} (revision {commit}): listing its files failed: {e}") from e
    missing = [rel for rel in wanted if rel not in found]
    if missing:
        raise SourceError(
            f"{repo_id} (revision {commit}): the episodes' metadata names file(s) the repository does not "
            f"have: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return {rel: found[rel] for rel in wanted}


def _cached_files(repo_id: str, commit: str, rels: Sequence[str]) -> dict[str, RemoteFile]:
    from huggingface_hub import try_to_load_from_cache

    out: dict[str, RemoteFile] = {}
    for rel in rels:
        path = try_to_load_from_cache(repo_id, rel, revision=commit, repo_type="dataset")
        if not isinstance(path, str):
            raise SourceError(
                f"{repo_id} (revision {commit}): {rel} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                "is set: connect and unset HF_HUB_OFFLINE, or download the dataset first"
            )
        out[rel] = (os.stat(path).st_size, Path(path).resolve().name)
    return out


class SourceFetcher:
    """The source files of one task of a conversion, within ``limit`` bytes, in a Hugging Face cache of its own.

    ``root`` (``OUT/.lerowds/source/task-I-of-N``) is this task's alone: files are downloaded there with
    ``hf_hub_download(cache_dir=root)`` (blobs and snapshot links, nothing else that takes bytes), so no other
    task or process reads a file this one deletes. A file already in the user's Hugging Face cache is linked
    instead (read in place: not counted, never deleted). Files a killed run left are taken over (counted,
    freed as usual); its partial downloads are deleted.
    """

    def __init__(
        self, repo_id: str, commit: str, files: Mapping[str, RemoteFile], limit: int, root: Path
    ) -> None:
        if limit <= RESERVE:
            raise ConfigError(f"--max-source-disk must be more than {RESERVE} bytes, got {limit}")
        self.repo_id, self.commit, self.files, self.root = repo_id, commit, dict(files), root
        self.limit = limit - RESERVE  # what the source files may take
        self.snapshot = root / f"datasets--{repo_id.replace('/', '--')}" / "snapshots" / commit
        self.held: dict[str, Path] = {}  # downloaded by this task and present: rel -> its blob
        self.present: set[str] = set()  # held, or linked from the user's cache
        self.fetched = 0  # downloads, refetches included
        for rel, (size, _) in self.files.items():  # take over what a killed run left
            link = self.snapshot / rel
            if link.is_symlink():
                blob = link.resolve()
                if blob.is_relative_to(root.resolve()) and blob.is_file() and blob.stat().st_size == size:
                    self.held[rel] = blob
                    self.present.add(rel)
                else:
                    link.unlink()
        kept = set(self.held.values())
        for blob in root.glob("*/blobs/*"):  # partial downloads, blobs no link points to
            if blob.resolve() not in kept:
                blob.unlink()
        self.peak = self.held_bytes

    @property
    def held_bytes(self) -> int:
        return sum(self.files[rel][0] for rel in self.held)

    def need(self, rels: Iterable[str]) -> int:
        """At most the bytes that fetching ``rels`` would add."""
        return sum(self.files[r][0] for r in set(rels) if r not in self.present)

    def fetch(self, rels: Iterable[str]) -> None:
        """Make ``rels`` present under ``snapshot`` (downloads in parallel threads, all joined on return);
        the caller made room first (``need`` fits the limit)."""
        from huggingface_hub import try_to_load_from_cache

        todo = []
        for rel in sorted(set(rels) - self.present):
            link = self.snapshot / rel
            cached = try_to_load_from_cache(self.repo_id, rel, revision=self.commit, repo_type="dataset")
            if isinstance(cached, str):
                link.parent.mkdir(parents=True, exist_ok=True)
                link.unlink(missing_ok=True)
                link.symlink_to(cached)
                self.present.add(rel)
            else:
                todo.append(rel)
                self.held[rel] = link  # counted from the start of its download
        if self.held_bytes > self.limit:
            raise AssertionError(f"{todo}: fetching them would exceed --max-source-disk")  # a scheduler bug
        self.peak = max(self.peak, self.held_bytes)
        with _quiet_hub(), ThreadPoolExecutor(min(DOWNLOAD_THREADS, len(todo) or 1)) as pool:
            outcomes = list(pool.map(self._download, todo))
        failed = [(rel, e) for rel, e in zip(todo, outcomes) if e is not None]
        for rel, e in zip(todo, outcomes):
            if e is None:
                self.held[rel] = (self.snapshot / rel).resolve()
                self.present.add(rel)
                self.fetched += 1
            else:
                del self.held[rel]
        if failed:
            rel, e = failed[0]
            raise SourceError(
                f"{self.repo_id} (revision {self.commit}): downloading {rel} failed: {e}"
            ) from e
        log.debug("fetched %d files (%s held)", len(todo), _size(self.held_bytes))

    def _download(self, rel: str) -> Exception | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            path = hf_hub_download(
                self.repo_id, rel, repo_type="dataset", revision=self.commit, cache_dir=self.root
            )
        except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as e:
            return e
        if Path(path) != self.snapshot / rel:
            return SourceError(f"huggingface_hub put it at {path}, expected {self.snapshot / rel}")
        return None

    def free(self, rels: Iterable[str]) -> None:
        """Unlink the given files, and delete the blobs this task downloaded that no other held file shares."""
        for rel in sorted(set(rels) & self.present):
            (self.snapshot / rel).unlink(missing_ok=True)
            blob = self.held.pop(rel, None)
            if blob is not None and blob not in self.held.values():
                blob.unlink(missing_ok=True)
            self.present.discard(rel)
            log.debug("freed %s (%s held)", rel, _size(self.held_bytes))

    def close(self) -> None:
        """Free everything and remove ``root``."""
        self.free(list(self.present))
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last task out removes .lerowds/source/
            self.root.parent.rmdir()


def task_fetcher(
    source: SourceDataset, limit: int | None, output: Path, task_index: int, num_tasks: int
) -> SourceFetcher | None:
    """The fetcher of one task of a conversion with ``--max-source-disk`` (None without it)."""
    if limit is None:
        return None
    root = output / STATE_DIR / "source" / f"task-{task_index}-of-{num_tasks}"
    return SourceFetcher(source.repo_id, str(source.revision), source.remote_files, limit, root)


def check_fits(fetcher: SourceFetcher, needs: Sequence[tuple[int, Sequence[str]]]) -> None:
    """Refuse, before downloading anything, a file or a shard's files larger than the limit."""
    limit = fetcher.limit
    given = f"--max-source-disk {limit + RESERVE} bytes"
    for rel, (size, _) in sorted(fetcher.files.items()):
        if size > limit:
            raise ConfigError(
                f"{given}: {fetcher.repo_id}'s {rel} alone is {size} bytes ({_size(size)}); raise the limit to "
                f"at least {size + RESERVE} bytes"
            )
    for shard, rels in needs:
        total = sum(fetcher.files[r][0] for r in set(rels))
        if total > limit:
            raise ConfigError(
                f"{given}: shard {shard} reads {len(set(rels))} source files of {total} bytes in all "
                f"({', '.join(sorted(set(rels))[:4])} ...); raise the limit to at least {total + RESERVE} bytes "
                "or lower --shard-size"
            )


def ran(fn: Callable[..., object], *args: object) -> Future[object]:
    """``fn(*args)`` run here and now, as a finished future (its result or its exception)."""
    future: Future[object] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as e:  # noqa: BLE001 - handed to whoever waits on the future
        future.set_exception(e)
    return future


def run_fetched(
    needs: Sequence[Sequence[str]],
    fetcher: SourceFetcher | None,
    submit: Callable[[int], Future[object]],
    slots: int,
    *,
    poll: Callable[[], None] = lambda: None,
) -> None:
    """Run jobs ``0..len(needs)-1`` in order, at most ``slots`` at once, each once its files are present
    (``fetcher`` None: the files are all here).

    Job ``i``'s missing files are fetched before it starts, or while earlier jobs run (one job ahead) when they
    fit. If they do not fit, held files that no running job, fetched-ahead job or job ``i`` reads are freed
    (the one read again latest first: fetched again when needed), then running jobs are waited for. After a
    job ends, the files no running or later job reads are freed.
    """
    last = {rel: i for i, rels in enumerate(needs) for rel in rels}
    running: dict[Future[object], int] = {}
    nxt = ready = 0  # jobs [0, nxt) were submitted; the files of jobs [0, ready) were fetched

    def keep() -> set[str]:
        return {r for j in [*running.values(), *range(nxt, ready)] for r in needs[j]}

    def next_use(rel: str) -> int:
        return next((j for j in range(nxt, len(needs)) if rel in needs[j]), len(needs))

    def fetch_next() -> bool:
        """Fetch the files of job ``ready`` if they fit (after freeing spare files); whether it did."""
        nonlocal ready
        if fetcher is not None:
            short = fetcher.held_bytes + fetcher.need(needs[ready]) - fetcher.limit
            wanted = keep() | set(needs[ready])
            for rel in sorted((r for r in fetcher.held if r not in wanted), key=next_use, reverse=True):
                if short <= 0:
                    break
                short -= fetcher.files[rel][0]
                fetcher.free([rel])
            if short > 0:
                return False
            fetcher.fetch(needs[ready])
        ready += 1
        return True

    try:
        while nxt < len(needs) or running:
            while nxt < len(needs) and len(running) < slots and (ready > nxt or fetch_next()):
                running[submit(nxt)] = nxt
                nxt += 1
            if ready == nxt < len(needs) and running and fetcher is not None:
                fetch_next()  # one job ahead, while the running ones convert
            if not running:  # no room with nothing running: check_fits rules this out
                raise AssertionError("bounded fetch: no room and nothing running")
            done, _ = wait(running, timeout=0.25, return_when=FIRST_COMPLETED)
            poll()
            for future in done:
                running.pop(future)
                future.result()  # re-raises a worker's error here
            if fetcher is not None:
                used = keep()
                fetcher.free([r for r in list(fetcher.held) if last[r] < nxt and r not in used])
    except BaseException:
        for future in running:
            future.cancel()
        raise
