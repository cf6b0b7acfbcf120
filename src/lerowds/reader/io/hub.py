"""``hf://datasets/ORG/NAME[@REV][/subdir]`` sources: the Hub's resolve URLs, read with the user's token.

Online, files are read from ``{HF_ENDPOINT}/datasets/ORG/NAME/resolve/{REV}/{subdir}/{path}`` (which redirects
large files to a CDN that serves byte ranges); the revision is pinned to the commit the Hub reports with
``index.json`` (``X-Repo-Commit``), so every worker reads the same snapshot. With ``HF_HUB_OFFLINE=1`` the
dataset is read from the local Hub cache (a snapshot made by ``hf download`` / ``snapshot_download``).
Endpoint, offline mode, cache and token are ``huggingface_hub``'s own (its ``constants``, read when it is
imported, and its token lookup), never re-read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from lerowds.errors import ConfigError, RemoteError

_SPECIAL_REV = re.compile(r"^(refs/(?:pr|convert)/[^/]+)(?:/(.*))?$")


@dataclass(frozen=True, slots=True)
class HubPath:
    """A parsed ``hf://datasets/ORG/NAME[@REV][/subdir]``."""

    repo_id: str
    revision: str | None
    subdir: str

    @classmethod
    def parse(cls, url: str) -> HubPath:
        if not url.startswith("hf://"):
            raise ConfigError(f"not a Hub URL (hf://datasets/ORG/NAME[@REV][/subdir]): {url!r}")
        rest = url[len("hf://") :].strip("/")
        if not rest.startswith("datasets/"):
            raise ConfigError(
                f"{url!r}: a converted dataset lives in a dataset repository: "
                "use hf://datasets/ORG/NAME[@REV][/subdir]"
            )
        parts = rest[len("datasets/") :].split("/", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise ConfigError(f"{url!r}: expected hf://datasets/ORG/NAME[@REV][/subdir]")
        org, name = parts[0], parts[1]
        tail = parts[2] if len(parts) > 2 else ""
        revision = None
        if "@" in name:
            name, revision = name.split("@", 1)
            if revision.startswith("refs") and (m := _SPECIAL_REV.match(f"{revision}/{tail}".rstrip("/"))):
                revision, tail = m.group(1), m.group(2) or ""
            revision = unquote(revision)
            if not revision:
                raise ConfigError(f"{url!r}: empty revision after '@'")
            if revision in (".", ".."):
                raise ConfigError(f"{url!r}: {revision!r} is not a revision")
        if not name:
            raise ConfigError(f"{url!r}: expected hf://datasets/ORG/NAME[@REV][/subdir]")
        subdir = tail.strip("/")
        for part in (org, name, *(subdir.split("/") if subdir else ())):
            if unquote(part) in ("", ".", "..") or "\\" in part:
                raise ConfigError(f"{url!r}: {part!r} is not a folder name (no '.', '..' or empty parts)")
        return cls(f"{org}/{name}", revision, subdir)

    def __str__(self) -> str:
        rev = f"@{quote(self.revision, safe='')}" if self.revision else ""
        sub = f"/{self.subdir}" if self.subdir else ""
        return f"hf://datasets/{self.repo_id}{rev}{sub}"

    def resolve_base(self, endpoint: str, revision: str) -> str:
        """The URL below which the dataset's files are served at ``revision``."""
        sub = f"/{quote(self.subdir)}" if self.subdir else ""
        return f"{endpoint}/datasets/{self.repo_id}/resolve/{quote(revision, safe='')}{sub}"


def endpoint() -> str:
    """The Hub endpoint as ``huggingface_hub`` resolved it (``HF_ENDPOINT``, else huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def offline() -> bool:
    """``huggingface_hub``'s offline mode (``HF_HUB_OFFLINE``), as it resolved it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_headers() -> dict[str, str]:
    """Authorization (the user's token, if any) and user agent, built in each process, never pickled."""
    from huggingface_hub.utils import build_hf_headers

    from lerowds import __version__

    return dict(build_hf_headers(library_name="lerowds", library_version=__version__))


def local_snapshot(hub: HubPath) -> Path:
    """The dataset in the local Hub cache (for ``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import constants, snapshot_download

    cache = constants.HF_HUB_CACHE  # snapshot_download's own default (HF_HUB_CACHE, else $HF_HOME/hub)
    try:
        folder = snapshot_download(
            hub.repo_id, repo_type="dataset", revision=hub.revision, local_files_only=True
        )
    except Exception as e:  # huggingface_hub raises several types here (LocalEntryNotFoundError, ...)
        raise RemoteError(
            f"{hub}: HF_HUB_OFFLINE is set and the local Hub cache {cache} has no complete snapshot of "
            f"{hub.repo_id}@{hub.revision or 'main'} ({type(e).__name__}: {e}); download it first with "
            f"`hf download --repo-type dataset {hub.repo_id}`, or unset HF_HUB_OFFLINE to stream it"
        ) from e
    root = Path(folder) / hub.subdir if hub.subdir else Path(folder)
    if not root.is_dir():
        raise RemoteError(f"{hub}: the cached snapshot {folder} has no folder {hub.subdir!r}")
    return root
