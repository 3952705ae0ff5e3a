"""A small Hugging Face Hub-compatible HTTP server for the tests (standard library only).

The real huggingface_hub client talks to it through HF_ENDPOINT: it creates model repos, takes commits (regular
files only: every file is answered `uploadMode: "regular"`, so neither LFS nor Xet is involved), keeps every commit
readable by its sha, keeps branches as refs, and serves files the way `hf_hub_download` / `snapshot_download`
expect them (`X-Repo-Commit`, `ETag`, `Content-Length`, `X-Error-Code`). It counts the requests it receives, so a
test can prove that an offline load made none.

Endpoints (the subset huggingface_hub 2.x uses for pushing and downloading a model repo):

    POST /api/repos/create                          409 (with `url`) when the repo exists
    POST /api/validate-yaml
    POST /api/models/{repo}/preupload/{rev}
    POST /api/models/{repo}/commit/{rev}            NDJSON: header, then `file` / `deletedFile` / `deletedFolder`
    POST /api/models/{repo}/branch/{branch}         409 when the branch exists
    GET  /api/models/{repo}[/revision/{rev}]        `sha`, `siblings`, `private`
    GET  /api/models/{repo}/tree/{rev}[/{path}]
    HEAD/GET /{repo}/resolve/{rev}/{path}

Write requests need `Authorization: Bearer <token>` (any token, or one of `valid_tokens`); private repos are
invisible (404 RepoNotFound) without one. Repos live in `root` as one JSON file each plus content-addressed blobs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
SEGMENT = r"[^/?]+"
REPO = rf"(?P<repo>{SEGMENT}/{SEGMENT})"


def git_blob_oid(data: bytes) -> str:
    """The git blob sha1 of `data`: what the Hub calls a regular file's oid (and what the client compares it to)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class ErrorAnswer(Exception):
    """An HTTP error answer: status, message and the Hub's `X-Error-Code` (RepoNotFound, EntryNotFound, ...)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class HubStore:
    """Repos on disk: `repos/{org}/{name}.json` (private flag, refs, commits) and `blobs/{oid}`. Thread-safe."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.commit_counter = 0

    # --- repos ----------------------------------------------------------------------------------------------
    def _path(self, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_id}.json"

    def load(self, repo_id: str) -> dict[str, Any]:
        path = self._path(repo_id)
        if not path.is_file():
            raise ErrorAnswer(404, f"Repository Not Found for {repo_id}", "RepoNotFound")
        return json.loads(path.read_text())

    def _save(self, repo_id: str, repo: dict[str, Any]) -> None:
        path = self._path(repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(repo, indent=1))

    def exists(self, repo_id: str) -> bool:
        return self._path(repo_id).is_file()

    def create_repo(self, repo_id: str, private: bool) -> bool:
        """Create the repo with an initial commit holding .gitattributes (as the Hub does); False if it exists."""
        with self.lock:
            if self.exists(repo_id):
                return False
            repo = {"private": private, "refs": {}, "commits": {}}
            self._commit_into(repo, "main", "initial commit", {".gitattributes": GITATTRIBUTES}, [])
            self._save(repo_id, repo)
            return True

    # --- revisions ------------------------------------------------------------------------------------------
    @staticmethod
    def resolve(repo: dict[str, Any], revision: str) -> str:
        if revision in repo["refs"]:
            return repo["refs"][revision]
        if revision in repo["commits"]:
            return revision
        raise ErrorAnswer(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def files_at(self, repo_id: str, revision: str) -> tuple[str, dict[str, str]]:
        """(commit sha, {path: blob oid}) of `revision` (a branch or a commit sha)."""
        with self.lock:
            repo = self.load(repo_id)
            sha = self.resolve(repo, revision)
            return sha, dict(repo["commits"][sha]["files"])

    def blob(self, oid: str) -> bytes:
        return (self.root / "blobs" / oid).read_bytes()

    # --- writes ---------------------------------------------------------------------------------------------
    def create_branch(self, repo_id: str, branch: str, starting_point: str | None) -> None:
        with self.lock:
            repo = self.load(repo_id)
            if branch in repo["refs"]:
                raise ErrorAnswer(409, f"Reference already exists: refs/heads/{branch}")
            repo["refs"][branch] = self.resolve(repo, starting_point or "main")
            self._save(repo_id, repo)

    def commit(self, repo_id: str, branch: str, summary: str, additions: dict[str, bytes], deletions: list[str],
               parent: str | None) -> str:
        with self.lock:
            repo = self.load(repo_id)
            if branch not in repo["refs"]:
                raise ErrorAnswer(404, f"Invalid rev id: {branch} (commits go to a branch)", "RevisionNotFound")
            if parent is not None and parent != repo["refs"][branch]:
                raise ErrorAnswer(412, "A commit has happened since. Please refresh and try again.")
            sha = self._commit_into(repo, branch, summary, additions, deletions)
            self._save(repo_id, repo)
            return sha

    def _commit_into(self, repo: dict[str, Any], branch: str, summary: str, additions: dict[str, bytes],
                     deletions: list[str]) -> str:
        parent = repo["refs"].get(branch)
        files = dict(repo["commits"][parent]["files"]) if parent else {}
        for path in deletions:
            doomed = [p for p in files if p == path.rstrip("/") or p.startswith(path.rstrip("/") + "/")]
            if not doomed:
                raise ErrorAnswer(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        for path, data in additions.items():
            oid = git_blob_oid(data)
            (self.root / "blobs" / oid).write_bytes(data)
            files[path] = oid
        # A new sha per commit, even for identical trees, like git (the parent and a counter are hashed in).
        self.commit_counter += 1
        record = json.dumps([parent, summary, sorted(files.items()), self.commit_counter]).encode()
        sha = hashlib.sha1(record).hexdigest()
        repo["commits"][sha] = {"parent": parent, "summary": summary, "files": files}
        repo["refs"][branch] = sha
        return sha


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: huggingface_hub's client pools connections
    timeout = 30  # idle keep-alive connections are closed eventually
    server: _Server

    # --- plumbing -------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass  # the request log is kept in memory (HubServer.log), not printed

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        hub = self.server.hub
        path, _, query = self.path.partition("?")
        hub.record(self.command, path)
        body = self._read_body()
        if hub.echo_headers_status is not None:  # a server whose error pages quote the request (headers included)
            echoed = "; ".join(f"{key}: {value}" for key, value in self.headers.items())
            self._send_json(hub.echo_headers_status, {"error": f"refused request with headers {echoed}"},
                            {"X-Error-Message": f"refused request with headers {echoed}"})
            return
        try:
            for method, pattern, handler in ROUTES:
                match = pattern.fullmatch(path)
                if method == self.command and match:
                    args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                    handler(self, body=body, query=parse_qs(query), **args)
                    return
            raise ErrorAnswer(404, f"no route for {self.command} {path}")
        except ErrorAnswer as e:
            self._send_json(e.status, {"error": e.message}, {**e.headers, **self._error_headers(e)})
        except Exception as e:  # a bug in this server: answer 500 with the reason rather than drop the connection
            self._send_json(500, {"error": f"{type(e).__name__}: {e}"}, {"X-Error-Message": f"{type(e).__name__}: {e}"})

    @staticmethod
    def _error_headers(e: ErrorAnswer) -> dict[str, str]:
        headers = {"X-Error-Message": e.message}
        if e.code:
            headers["X-Error-Code"] = e.code
        return headers

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers or {}, "application/json")

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    def _require_writer(self) -> None:
        token = self._token()
        if token is None:
            raise ErrorAnswer(401, "Invalid username or password.")
        if not self.server.hub.token_ok(token):
            raise ErrorAnswer(401, "Invalid credentials in Authorization header")

    def _readable(self, repo_id: str) -> dict[str, Any]:
        repo = self.server.hub.store.load(repo_id)
        token = self._token()
        if repo["private"] and (token is None or not self.server.hub.token_ok(token)):
            raise ErrorAnswer(404, f"Repository Not Found for {repo_id}", "RepoNotFound")
        return repo

    # --- API ------------------------------------------------------------------------------------------------
    def create_repo(self, *, body: bytes, query: dict, **_: str) -> None:
        self._require_writer()
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") != "model":
            raise ErrorAnswer(400, f"this test server only hosts model repos, not {payload.get('type')!r}")
        if not payload.get("organization"):
            raise ErrorAnswer(400, "this test server needs an explicit namespace (org/name)")
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"{self.server.hub.url}/{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.server.hub.store.create_repo(repo_id, private):
            self._send_json(409, {"error": "You already created this model repo", "url": url},
                            {"X-Error-Message": "You already created this model repo"})
            return
        self._send_json(200, {"url": url, "name": repo_id})

    def validate_yaml(self, *, body: bytes, **_: Any) -> None:
        content = json.loads(body or b"{}").get("content", "")
        if content.startswith("---") and "\n---" not in content[3:]:
            raise ErrorAnswer(400, "README.md: the YAML front matter is not closed by '---'")
        self._send_json(200, {"errors": [], "warnings": []})

    def preupload(self, *, body: bytes, repo: str, rev: str, **_: Any) -> None:
        self._require_writer()
        self._readable(repo)
        sha, files = self.server.hub.store.files_at(repo, rev)
        answers = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": files.get(f["path"])}
                   for f in json.loads(body)["files"]]
        self._send_json(200, {"files": answers, "commitOid": sha})

    def commit(self, *, body: bytes, repo: str, rev: str, **_: Any) -> None:
        self._require_writer()
        self._readable(repo)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise ErrorAnswer(400, "the commit payload must start with a header line")
        header = lines[0]["value"]
        additions: dict[str, bytes] = {}
        deletions: list[str] = []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deletions.append(value["path"] + ("/" if key == "deletedFolder" else ""))
            else:
                raise ErrorAnswer(400, f"unsupported commit operation {key!r} (this server stores regular files only)")
        sha = self.server.hub.store.commit(repo, rev, header.get("summary", ""), additions, deletions,
                                           header.get("parentCommit"))
        self._send_json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.server.hub.url}/{repo}/commit/{sha}"})

    def create_branch(self, *, body: bytes, repo: str, branch: str, **_: Any) -> None:
        self._require_writer()
        self._readable(repo)
        self.server.hub.store.create_branch(repo, branch, json.loads(body or b"{}").get("startingPoint"))
        self._send_json(200, {})

    def repo_info(self, *, repo: str, rev: str = "main", **_: Any) -> None:
        record = self._readable(repo)
        sha, files = self.server.hub.store.files_at(repo, rev)
        self._send_json(200, {"id": repo, "modelId": repo, "sha": sha, "private": record["private"],
                              "siblings": [{"rfilename": p} for p in sorted(files)]})

    def tree(self, *, repo: str, rev: str, query: dict, path: str = "", **_: Any) -> None:
        self._readable(repo)
        _, files = self.server.hub.store.files_at(repo, rev)
        recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path else ""
        if path and not any(p.startswith(prefix) for p in files):
            raise ErrorAnswer(404, f"{path} does not exist at {rev}", "EntryNotFound")
        entries: dict[str, dict[str, Any]] = {}
        for file_path, oid in sorted(files.items()):
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix):].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                                "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                entries[file_path] = {"type": "file", "path": file_path, "oid": oid,
                                      "size": (self.server.hub.store.root / "blobs" / oid).stat().st_size}
        self._send_json(200, list(entries.values()))

    def resolve(self, *, repo: str, rev: str, path: str, **_: Any) -> None:
        self._readable(repo)
        sha, files = self.server.hub.store.files_at(repo, rev)
        if path not in files:
            raise ErrorAnswer(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        oid = files[path]
        data = self.server.hub.store.blob(oid)
        self._send(200, data, {"X-Repo-Commit": sha, "ETag": f'"{oid}"'}, "application/octet-stream")


ROUTES = [
    ("POST", re.compile(r"/api/repos/create"), _Handler.create_repo),
    ("POST", re.compile(r"/api/validate-yaml"), _Handler.validate_yaml),
    ("POST", re.compile(rf"/api/models/{REPO}/preupload/(?P<rev>{SEGMENT})"), _Handler.preupload),
    ("POST", re.compile(rf"/api/models/{REPO}/commit/(?P<rev>{SEGMENT})"), _Handler.commit),
    ("POST", re.compile(rf"/api/models/{REPO}/branch/(?P<branch>{SEGMENT})"), _Handler.create_branch),
    ("GET", re.compile(rf"/api/models/{REPO}(?:/revision/(?P<rev>{SEGMENT}))?"), _Handler.repo_info),
    ("GET", re.compile(rf"/api/models/{REPO}/tree/(?P<rev>{SEGMENT})(?:/(?P<path>.+))?"), _Handler.tree),
    ("HEAD", re.compile(rf"/{REPO}/resolve/(?P<rev>{SEGMENT})/(?P<path>.+)"), _Handler.resolve),
    ("GET", re.compile(rf"/{REPO}/resolve/(?P<rev>{SEGMENT})/(?P<path>.+)"), _Handler.resolve),
]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class HubServer:
    """Start with `with HubServer(tmp_dir) as hub:`; point clients at `hub.url` (HF_ENDPOINT)."""

    def __init__(self, root: str | Path, valid_tokens: set[str] | None = None, echo_headers_status: int | None = None):
        self.store = HubStore(Path(root))
        self.valid_tokens = valid_tokens
        # When set, every request is answered with this status and an error body echoing its headers.
        self.echo_headers_status = echo_headers_status
        self.tokens_seen: set[str] = set()  # kept in memory only, for asserting what the client sent
        self.log: list[str] = []
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def requests(self) -> int:
        """How many requests reached the server so far."""
        with self._lock:
            return len(self.log)

    def record(self, method: str, path: str) -> None:
        with self._lock:
            self.log.append(f"{method} {path}")

    def token_ok(self, token: str) -> bool:
        with self._lock:
            self.tokens_seen.add(token)
        return self.valid_tokens is None or token in self.valid_tokens

    def start(self) -> HubServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.hub = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: later connections are refused."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=10)
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
