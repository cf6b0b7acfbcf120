"""A loopback Hugging Face Hub for the converter's tests: the upload API as ``huggingface_hub`` calls it (create
repo, create branch, validate-yaml, preupload, commit) and the download API (repo info, tree, ``resolve`` with
HEAD, ranges and the ``X-Repo-Commit`` / ``ETag`` headers ``hf_hub_download`` needs). Repositories live in
memory, one dict of files per commit; every commit and every resolve is recorded.

Preupload answers ``regular`` for every file, so commits carry the files' bytes base64-encoded in the NDJSON
body (the real Hub asks for LFS / Xet above ~10 MB; that transfer is huggingface_hub's own code, not ours).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from typing_extensions import Self

_API = re.compile(
    r"^/api/datasets/([^/]+/[^/]+)/(preupload|commit|revision|tree|branch|paths-info)/([^/]+)(?:/(.*))?$"
)
_RESOLVE = re.compile(r"^/datasets/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    """One commit as the server applied it: the branch, the paths added and deleted (in body order)."""

    oid: str
    branch: str
    message: str
    added: list[str]
    deleted: list[str]


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit oid -> files

    def tree(self, rev: str) -> dict[str, bytes] | None:
        oid = self.branches.get(rev, rev)
        return self.trees.get(oid)

    def commit_oid(self, rev: str) -> str | None:
        oid = self.branches.get(rev, rev)
        return oid if oid in self.trees else None


class HubServer:
    """``with HubServer() as hub: hub.endpoint`` is an ``HF_ENDPOINT`` on 127.0.0.1 until the block ends."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token  # if set, every request needs ``Authorization: Bearer <token>``
        self.repos: dict[str, Repo] = {}
        self.commits: list[Commit] = []
        self.resolves: Counter[str] = Counter()  # GET (not HEAD) resolves per path
        self.lock = threading.Lock()
        self.on_resolve: Callable[[str], None] | None = None  # called before a GET resolve is answered
        self.fail_commit: Callable[[int], bool] = lambda n: False  # answer commit number n with HTTP 500
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def seed(self, repo_id: str, root: Path) -> str:
        """Create ``repo_id`` with every file under ``root`` in one commit on main; return the commit oid."""
        files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        with self.lock:
            repo = self.repos.setdefault(repo_id, Repo())
            return self._apply(repo, "main", "seed", files, [])

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        tree = self.repos[repo_id].tree(rev)
        return dict(tree or {})

    def _apply(
        self, repo: Repo, branch: str, message: str, added: Mapping[str, bytes], deleted: list[str]
    ) -> str:
        parent = repo.branches.get(branch)
        files = dict(repo.trees[parent]) if parent else {}
        for path in deleted:
            files.pop(path, None)
        files.update(added)
        oid = hashlib.sha1(f"{parent}:{message}:{len(self.commits)}".encode()).hexdigest()
        repo.trees[oid] = files
        repo.branches[branch] = oid
        self.commits.append(Commit(oid, branch, message, list(added), list(deleted)))
        return oid


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str) -> None:
        self._json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        if self.hub.token is None or self.headers.get("Authorization") == f"Bearer {self.hub.token}":
            return True
        self._body()
        self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
        return False

    # --------------------------------------------------------------------------------------- download
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._authorized():
            return
        url = urlsplit(self.path)
        path = unquote(url.path)
        if m := _RESOLVE.match(url.path):
            return self._resolve(unquote(m.group(1)), unquote(m.group(2)), unquote(m.group(3)))
        m = _API.match(url.path)
        if m is None or m.group(2) not in ("revision", "tree"):
            return self._error(404, "EntryNotFound", f"no route {path}")
        repo = self.hub.repos.get(m.group(1))
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        rev = unquote(m.group(3))
        with self.hub.lock:
            oid, tree = repo.commit_oid(rev), repo.tree(rev)
        if oid is None or tree is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if m.group(2) == "revision":
            siblings = [{"rfilename": p} for p in sorted(tree)]
            return self._json({"id": m.group(1), "sha": oid, "private": repo.private, "siblings": siblings})
        under = unquote(m.group(4) or "").strip("/")
        recursive = parse_qs(url.query).get("recursive", ["false"])[0] in ("true", "True", "1")
        entries: dict[str, dict[str, Any]] = {}
        for p, data in sorted(tree.items()):
            if under and not p.startswith(under + "/"):
                continue
            rest = p[len(under) + 1 :] if under else p
            if "/" in rest and not recursive:
                d = (under + "/" if under else "") + rest.split("/", 1)[0]
                entries[d] = {"type": "directory", "path": d, "oid": "0" * 40, "size": 0}
            else:
                entries[p] = {"type": "file", "path": p, "oid": git_oid(data), "size": len(data)}
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    d = "/".join(([under] if under else []) + parts[:i])
                    entries.setdefault(d, {"type": "directory", "path": d, "oid": "0" * 40, "size": 0})
        return self._json(list(entries.values()))

    def _resolve(self, repo_id: str, rev: str, rel: str) -> None:
        hub = self.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        with hub.lock:
            oid, tree = repo.commit_oid(rev), repo.tree(rev)
        if oid is None or tree is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if rel not in tree:
            return self._error(
                404,
                "EntryNotFound",
                f"{rel} does not exist on {rev}",
            )
        data = tree[rel]
        if self.command == "GET":
            with hub.lock:
                hub.resolves[rel] += 1
            if hub.on_resolve is not None:
                hub.on_resolve(rel)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{git_oid(data)}"', "Accept-Ranges": "bytes"}
        rng = self.headers.get("Range")
        if rng and (m := _RANGE.match(rng)) and int(m.group(1)) < len(data):
            start = int(m.group(1))
            end = min(int(m.group(2)), len(data) - 1) if m.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return self._send(206, data[start : end + 1], headers)
        return self._send(200, data, headers)

    # ----------------------------------------------------------------------------------------- upload
    def do_POST(self) -> None:
        if not self._authorized():
            return
        url = urlsplit(self.path)
        hub = self.hub
        if url.path == "/api/repos/create":
            req = json.loads(self._body())
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            with hub.lock:
                if repo_id in hub.repos:  # the Hub's 409 carries the url too
                    msg = "You already created this dataset repo"
                    url = f"{hub.endpoint}/datasets/{repo_id}"
                    return self._json({"error": msg, "url": url}, 409, {"X-Error-Message": msg})
                hub.repos[repo_id] = repo = Repo(
                    private=bool(req.get("private")) or req.get("visibility") == "private"
                )
                hub._apply(repo, "main", "initial commit", {".gitattributes": b"*.tar filter=lfs\n"}, [])
            return self._json({"url": f"{hub.endpoint}/datasets/{repo_id}", "name": repo_id})
        if url.path == "/api/validate-yaml":
            self._body()
            return self._json({"errors": [], "warnings": []})
        m = _API.match(url.path)
        if m is None or m.group(2) not in ("preupload", "commit", "branch", "paths-info"):
            self._body()
            return self._error(404, "EntryNotFound", f"no route {url.path}")
        repo_id, what, rev = m.group(1), m.group(2), unquote(m.group(3))
        body = self._body()
        repo = hub.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        with hub.lock:
            if what == "branch":
                if rev in repo.branches:
                    return self._error(409, "BranchExists", f"Reference already exists: refs/heads/{rev}")
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                repo.branches[rev] = repo.branches[start]
                return self._json({})
            tree = repo.tree(rev)
            if tree is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if what == "paths-info":
                paths = parse_qs(body.decode()).get("paths", [])
                found = [p for p in paths if p in tree]
                return self._json(
                    [
                        {"type": "file", "path": p, "oid": git_oid(tree[p]), "size": len(tree[p])}
                        for p in found
                    ]
                )
            if what == "preupload":
                files = json.loads(body)["files"]
                modes = [
                    {
                        "path": f["path"],
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": git_oid(tree[f["path"]]) if f["path"] in tree else None,
                    }
                    for f in files
                ]
                return self._json({"files": modes, "commitOid": repo.commit_oid(rev)})
            header: dict[str, Any] = {}
            added: dict[str, bytes] = {}
            deleted: list[str] = []
            for line in body.splitlines():
                item = json.loads(line)
                value = item["value"]
                if item["key"] == "header":
                    header = value
                elif item["key"] == "file":
                    added[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] in ("deletedFile", "deletedFolder"):
                    deleted.append(value["path"])
                else:
                    return self._error(400, "BadRequest", f"unsupported commit item {item['key']!r}")
            if hub.fail_commit(len(hub.commits)):
                return self._error(500, "InternalError", "Internal Error - We're working hard to fix this")
            missing = [p for p in deleted if p not in tree]
            if missing:
                return self._error(404, "EntryNotFound", f"A file with this name doesn't exist: {missing[0]}")
            oid = hub._apply(repo, rev, header.get("summary", ""), added, deleted)
        return self._json(
            {
                "commitUrl": f"{hub.endpoint}/datasets/{repo_id}/commit/{oid}",
                "commitOid": oid,
                "success": True,
            }
        )
