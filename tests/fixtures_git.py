"""Git fixtures: bare repositories made with the real git, served over HTTP by git's own
`git http-backend` (as CGI, behind a small loopback server that checks a Basic-auth token)
and over SSH by the test sshd (tests/fixtures_ssh.py).

The HTTP server records every request (path, whether it carried credentials and which), so
tests can assert that a token went only where it belongs.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
COMMIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Tester", "GIT_AUTHOR_EMAIL": "ada@example.test",
    "GIT_COMMITTER_NAME": "Ada Tester", "GIT_COMMITTER_EMAIL": "ada@example.test",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
}


def git(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None,
        check: bool = True) -> str:
    """Run the real git (outside ansflow) and return its stdout."""
    full = {**os.environ, **COMMIT_ENV, **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout.strip()


@dataclass
class Repo:
    """A bare repository and a work tree that pushes to it."""

    bare: Path
    work: Path

    def commit(self, files: dict[str, str | bytes], message: str = "change",
               branch: str = "main") -> str:
        """Commit ``files`` on ``branch`` and push it; the new commit's SHA."""
        current = git("branch", "--show-current", cwd=self.work)
        if current != branch:
            exists = git("rev-parse", "--verify", "-q", f"refs/heads/{branch}", cwd=self.work,
                         check=False)
            git("checkout", "-q", *([] if exists else ["-b"]), branch, cwd=self.work)
        for name, content in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        git("add", "-A", cwd=self.work)
        _commit(self.work, message)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def tag(self, name: str, message: str | None = None) -> str:
        args = ["tag", "-a", name, "-m", message] if message else ["tag", name]
        git(*args, cwd=self.work)
        git("push", "-q", "origin", f"refs/tags/{name}", cwd=self.work)
        return git("rev-parse", f"{name}^{{commit}}", cwd=self.work)


def _commit(work: Path, message: str) -> None:
    proc = subprocess.run(["git", "commit", "-q", "--allow-empty", "--cleanup=verbatim",
                           "-F", "-"], cwd=work, input=message.encode(),
                          env={**os.environ, **COMMIT_ENV}, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"git commit failed:\n{proc.stderr.decode(errors='replace')}")


def make_repo(root: Path, name: str, files: dict[str, str | bytes] | None = None,
              message: str = "first commit") -> Repo:
    """A bare repository ``root/name.git`` with one commit on main."""
    bare = root / f"{name}.git"
    work = root / f"{name}-work"
    git("init", "-q", "--bare", "-b", "main", str(bare))
    git("init", "-q", "-b", "main", str(work))
    git("remote", "add", "origin", str(bare), cwd=work)
    repo = Repo(bare=bare, work=work)
    repo.commit(files or {"README.md": f"# {name}\n"}, message)
    return repo


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    user: str | None  # the Basic-auth user when the token matched


@dataclass
class GitHttpServer:
    """`git http-backend` behind a loopback HTTP server with a Basic-auth check."""

    root: Path
    user: str
    token: str
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    public: set[str] = field(default_factory=set)  # repository names readable without auth
    _server: ThreadingHTTPServer | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def authorized(self) -> list[Request]:
        return [r for r in self.requests if r.authorization]

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # noqa: ANN002 - quiet
                return

            def do_GET(self) -> None:  # noqa: N802
                self._serve()

            def do_POST(self) -> None:  # noqa: N802
                self._serve()

            def _serve(self) -> None:
                auth = self.headers.get("Authorization")
                path, _, query = self.path.partition("?")
                repo_name = path.lstrip("/").split(".git", 1)[0]
                user = owner._check(auth)
                owner.requests.append(Request(self.command, self.path, auth, user))
                if user is None and repo_name not in owner.public:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="ansflow-test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(owner.root),
                    "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
                    "PATH_INFO": path, "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                    "REMOTE_USER": user or "", "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": str(owner.root),
                }
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                proc = subprocess.run([HTTP_BACKEND], input=body, env=env,
                                      capture_output=True, timeout=300)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode("latin-1").split("\r\n"):
                    if not line:
                        continue
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    else:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="git-http-test").start()

    def _check(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        ok = hmac.compare_digest(user, self.user) & hmac.compare_digest(token, self.token)
        return user if ok else None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@pytest.fixture(scope="session")
def git_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("git-repos")


@pytest.fixture(scope="session")
def git_http(git_root):
    """The HTTP git server over ``git_root``; user ``ci``, a random token."""
    server = GitHttpServer(root=git_root, user="ci", token=f"tok-{uuid.uuid4().hex}")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def new_repo(git_root):
    """Make a fresh bare repository under the served root: ``new_repo(files, message)``."""

    def make(files: dict[str, str | bytes] | None = None, message: str = "first commit",
             name: str | None = None) -> Repo:
        return make_repo(git_root, name or f"r{uuid.uuid4().hex[:10]}", files, message)

    return make


def ssh_url(sshd, repo: Repo) -> str:
    """The ssh:// URL of ``repo`` on the test sshd (its bare folder's absolute path)."""
    return f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{repo.bare}"


def wipe(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
