"""The git adapter: list a remote's refs, resolve a ref, check a commit out into a folder,
with the real `git` client run through the one process runner (ansflow.engines.process).

Credentials never reach a URL, an argument, a log line or the checkout's `.git/config`:

- HTTPS: a 0600 git configuration file in a private 0700 folder, included through
  GIT_CONFIG_COUNT (only its path is in git's environment), sets the Authorization header for
  URLs under the remote's own scheme://host:port/ only (a submodule on another host gets
  nothing; no credential helper, no prompt: a refused token fails at once).
- SSH: GIT_SSH_COMMAND names a private key file and a known_hosts file holding only the
  pinned host key(s) (`StrictHostKeyChecking=yes`, no global or user files, batch mode).

The private folder is removed when the operation ends. git runs with a clean environment: no
system or global configuration, no terminal prompts, no user askpass.
"""

from __future__ import annotations

import base64
import difflib
import os
import re
import shlex
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ansflow.engines.git_urls import (  # noqa: F401 - the adapter's public names
    HEX_SHA,
    GitAuthError,
    GitError,
    GitRefNotFound,
    Remote,
    check_ref_text,
    parse_remote,
    public_url,
)
from ansflow.engines.lines import clean_line
from ansflow.engines.process import run_process

MAX_MESSAGE = 2000  # a failure message a user sees is bounded (as ansflow.errors.bounded)


def bounded(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit - 40]}... ({len(text) - limit + 40} more characters)"


_ABBREV = re.compile(r"^[0-9a-f]{7,63}$")
DEFAULT_TIMEOUT = 600.0
LS_REMOTE_TIMEOUT = 120.0
_KEEP_STDERR = 40  # lines of git's stderr kept for a failure message
_LOOPBACK = ("127.0.0.1", "::1", "localhost")
# git's and ssh's words for refused credentials (an HTTP 401/403 only as git reports it: a
# SHA in a message may hold the digits).
_AUTH_FAILED = re.compile(r"Permission denied \(publickey|Authentication failed|"
                          r"could not read (?:Username|Password)|returned error: 40[13]\b|"
                          r"HTTP 40[13]\b")


@dataclass(frozen=True)
class GitCredentials:
    """What authenticates to a remote (the values of a credentials block)."""

    username: str = ""
    token: str = ""  # HTTPS password or access token
    private_key: str = ""  # SSH: the private key text (OpenSSH or PEM)
    passphrase: str = ""
    known_hosts: tuple[str, ...] = ()  # SSH: the pinned host key lines

    @property
    def kind(self) -> str:
        if self.private_key:
            return "ssh"
        return "https" if self.token else "none"

    def secrets(self) -> list[str]:
        return [v for v in (self.token, self.private_key, self.passphrase) if v]


# -- the private folder holding credentials for one operation -------------------------------

def _write_private(path: str, text: str, mode: int = 0o600) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


@dataclass
class _Session:
    env: dict[str, str]
    secrets: list[str] = field(default_factory=list)


def _base_env(home: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GCM_INTERACTIVE": "never",
        # A stalled transfer (under 1 KiB/s for 60 s) fails instead of hanging.
        "GIT_HTTP_LOW_SPEED_LIMIT": "1024",
        "GIT_HTTP_LOW_SPEED_TIME": "60",
    }
    for name in ("TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY",
                 "HTTPS_PROXY", "NO_PROXY"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


def _config_env(items: list[tuple[str, str]]) -> dict[str, str]:
    env = {"GIT_CONFIG_COUNT": str(len(items))}
    for i, (key, value) in enumerate(items):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _known_hosts_lines(remote: Remote, creds: GitCredentials) -> str:
    """The pinned host keys as known_hosts lines under the name ssh looks the host up by."""
    from ansflow.engines.ssh_keys import host_keys, lookup_name  # noqa: PLC0415 - asyncssh

    port = remote.port or 22
    try:
        keys = host_keys(list(creds.known_hosts), remote.host, port)
    except ValueError as exc:
        raise GitAuthError(f"the SSH host key of {remote.host}: {exc}") from None
    name = lookup_name(remote.host, port)

    def text(key: object) -> str:
        return " ".join(key.export_public_key("openssh").decode().split()[:2])  # type: ignore[attr-defined]

    lines = [f"{name} {text(k)}" for k in keys.trusted]
    lines += [f"@revoked {name} {text(k)}" for k in keys.revoked]
    return "\n".join(lines) + "\n"


def _private_key_text(creds: GitCredentials) -> str:
    """The private key, decrypted (ssh then never asks for a passphrase)."""
    from ansflow.engines.ssh_keys import load_client_key  # noqa: PLC0415 - asyncssh

    try:
        key = load_client_key(creds.private_key, creds.passphrase or None)
    except ValueError as exc:
        raise GitAuthError(f"the SSH key: {exc}") from None
    return key.export_private_key("openssh").decode()


@contextmanager
def git_session(remote: Remote, creds: GitCredentials | None) -> Iterator[_Session]:
    """The environment git runs in for ``remote``, with the credentials in a private folder
    removed afterwards (even on failure or cancel)."""
    creds = creds or GitCredentials()
    private = tempfile.mkdtemp(prefix="ansflow-git-")  # 0700
    try:
        home = os.path.join(private, "home")
        os.mkdir(home, 0o700)
        env = _base_env(home)
        config: list[tuple[str, str]] = [("protocol.version", "2"),
                                         ("credential.helper", ""),
                                         ("core.askPass", "/bin/false"),
                                         ("advice.detachedHead", "false"),
                                         ("init.defaultBranch", "main"),
                                         # No template hooks or files copied into .git.
                                         ("init.templateDir", ""),
                                         ("protocol.ext.allow", "never")]
        session = _Session(env=env, secrets=creds.secrets())
        if creds.kind == "https":
            _https_helper(private, remote, creds, config)
        ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=30",
               "-o", "UpdateHostKeys=no", "-o", "CheckHostIP=no",
               "-o", "GlobalKnownHostsFile=/dev/null"]
        if creds.kind == "ssh" or creds.known_hosts:
            known = os.path.join(private, "known_hosts")
            _write_private(known, _known_hosts_lines(remote, creds) if remote.scheme == "ssh"
                           else "")
            ssh += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
        else:
            ssh += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
        if creds.kind == "ssh":
            key = os.path.join(private, "id")
            _write_private(key, _private_key_text(creds))
            ssh += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-i", key]
        env["GIT_SSH_COMMAND"] = " ".join(shlex.quote(a) for a in ssh)
        env["GIT_SSH_VARIANT"] = "ssh"
        env.update(_config_env(config))
        yield session
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _https_helper(private: str, remote: Remote, creds: GitCredentials,
                  config: list[tuple[str, str]]) -> None:
    if remote.scheme not in ("https", "http"):
        raise GitError(f"a token authenticates over https; the repository URL is "
                       f"{remote.scheme} (give an SSH key for ssh URLs)")
    if remote.scheme == "http" and remote.host not in _LOOPBACK:
        raise GitError("refusing to send a token over plain http to "
                       f"{remote.host}: use an https URL")
    for what, value in (("username", creds.username), ("token", creds.token)):
        if "\n" in value or "\r" in value or "\0" in value:
            raise GitError(f"the credentials' {what} holds a line break or NUL byte")
    host = remote.host if ":" not in remote.host else f"[{remote.host}]"
    if remote.port:
        host += f":{remote.port}"
    # Sent from the first request on (no 401 round per git process), and only to URLs under
    # the source's own scheme://host:port/ (git matches `http.<url>.*` by that prefix; curl
    # drops an Authorization header on a redirect to another host).
    basic = base64.b64encode(f"{creds.username or 'x-access-token'}:{creds.token}".encode())
    auth = os.path.join(private, "auth.gitconfig")
    _write_private(auth, f'[http "{remote.scheme}://{host}/"]\n'
                         f'\textraHeader = "Authorization: Basic {basic.decode()}"\n')
    config.append(("include.path", auth))


# -- running git ---------------------------------------------------------------------------

Emit = Callable[[str], None]


@dataclass
class _Result:
    code: int | None
    stdout: list[str]
    stderr: list[str]
    timed_out: bool = False
    cancelled: bool = False


def _mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "***")
    return text


def _git(args: list[str], session: _Session, *, cwd: str, timeout: float,
         cancelled: threading.Event | None, emit: Emit | None = None,
         keep_stdout: bool = False) -> _Result:
    out: list[str] = []
    err: list[str] = []

    def on_line(line: str, stream: str) -> None:
        line = _mask(clean_line(line), session.secrets)
        if stream == "stdout" and keep_stdout:
            out.append(line)
            return
        if stream == "stderr":
            err.append(line)
            del err[:-_KEEP_STDERR]
        if emit is not None and line.strip():
            emit(line)

    try:
        outcome = run_process(["git", *args], cwd=cwd, env=session.env, emit=on_line,
                              timeout=timeout, cancelled=cancelled)
    except FileNotFoundError:
        raise GitError("git is not installed on this worker (no `git` on PATH)") from None
    return _Result(outcome.exit_code, out, err, outcome.timed_out, outcome.cancelled)


def _failure(what: str, result: _Result, remote: Remote, kind: str = "none") -> GitError:
    if result.cancelled:
        return GitError(f"{what}: cancelled")
    if result.timed_out:
        return GitError(f"{what}: timed out")
    text = "\n".join(result.stderr)
    lines = [ln for ln in result.stderr if ln.strip()]
    detail = "; ".join(ln.removeprefix("fatal: ").removeprefix("error: ")
                       for ln in lines[-3:]) or f"git exited with {result.code}"
    where = public_url(remote.url)
    if "Host key verification failed" in text or "REMOTE HOST IDENTIFICATION" in text:
        return GitAuthError(f"{what}: the SSH server of {where} presented a host key that is "
                            "not the pinned one (Host key verification failed); refused")
    if kind == "https" and re.search(r"could not read (?:Username|Password)|"
                                     r"Authentication failed|returned error: 401", text):
        return GitAuthError(f"{what}: {where} refused the credentials (the token was "
                            "answered with HTTP 401; not retried)")
    if kind == "none" and "could not read Username" in text:
        return GitAuthError(f"{what}: {where} asks for credentials; name a GitCredentials "
                            "block in the source's `credentials:`")
    if _AUTH_FAILED.search(text):
        return GitAuthError(bounded(f"{what}: {where} refused the credentials ({detail})"))
    return GitError(bounded(f"{what}: {detail}"))


# -- refs ------------------------------------------------------------------------------------


@dataclass
class RemoteRefs:
    """A remote's refs as `git ls-remote --symref` lists them."""

    refs: dict[str, str]  # full ref name -> commit (annotated tags: the peeled commit)
    head: str | None = None  # the ref HEAD points at (the default branch)

    @property
    def branches(self) -> list[str]:
        return sorted(r.removeprefix("refs/heads/") for r in self.refs
                      if r.startswith("refs/heads/"))

    @property
    def tags(self) -> list[str]:
        return sorted(r.removeprefix("refs/tags/") for r in self.refs
                      if r.startswith("refs/tags/"))


def parse_ls_remote(lines: list[str]) -> RemoteRefs:
    refs: dict[str, str] = {}
    peeled: dict[str, str] = {}
    head = None
    for line in lines:
        if line.startswith("ref: ") and "\t" in line:
            target, name = line[5:].split("\t", 1)
            if name == "HEAD":
                head = target
            continue
        sha, _, name = line.partition("\t")
        if not HEX_SHA.match(sha) or not name:
            continue
        if name.endswith("^{}"):
            peeled[name[:-3]] = sha
        else:
            refs[name] = sha
    refs.update({k: v for k, v in peeled.items() if k in refs})
    return RemoteRefs(refs=refs, head=head)


def ls_remote(url: str, creds: GitCredentials | None = None, *, timeout: float = LS_REMOTE_TIMEOUT,
              cancelled: threading.Event | None = None) -> RemoteRefs:
    """The remote's branches, tags and HEAD. Raises GitError / GitAuthError."""
    remote = parse_remote(url)
    with git_session(remote, creds) as session:
        result = _git(["ls-remote", "--symref", "--", url], session,
                      cwd=session.env["HOME"], timeout=timeout, cancelled=cancelled,
                      keep_stdout=True)
    if result.code != 0 or result.timed_out or result.cancelled:
        raise _failure(f"cannot list the refs of {public_url(url)}", result, remote,
                       (creds or GitCredentials()).kind)
    return parse_ls_remote(result.stdout)


@dataclass(frozen=True)
class Resolved:
    """What a run checks out: the commit, and the ref it came from (None: a bare commit)."""

    commit: str
    ref: str | None  # full ref name: refs/heads/x, refs/tags/v1
    exact: bool = True  # False: `commit` is only known once fetched (a SHA not at any tip)

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref and \
            self.ref.startswith("refs/heads/") else ""

    @property
    def tag(self) -> str:
        return self.ref.removeprefix("refs/tags/") if self.ref and \
            self.ref.startswith("refs/tags/") else ""


def resolve_ref(refs: RemoteRefs, wanted: str | None, url: str = "") -> Resolved:
    """The commit ``wanted`` names among ``refs``: the default branch (None or empty), a full
    ref name, a branch (before a tag of the same name, as actions/checkout does), a tag, a full
    commit SHA, or the abbreviation of one tip's SHA.

    Raises:
        GitRefNotFound: naming the closest branches and tags.
    """
    if not wanted:
        if refs.head and refs.head in refs.refs:
            return Resolved(refs.refs[refs.head], refs.head)
        if "HEAD" in refs.refs:
            return Resolved(refs.refs["HEAD"], None)
        raise GitRefNotFound(f"{public_url(url) or 'the repository'} has no default branch "
                             "(empty repository?): give a ref")
    problem = check_ref_text(wanted)
    if problem:
        raise GitRefNotFound(problem)
    if wanted.startswith("refs/"):
        if wanted in refs.refs:
            return Resolved(refs.refs[wanted], wanted)
    else:
        for full in (f"refs/heads/{wanted}", f"refs/tags/{wanted}"):
            if full in refs.refs:
                return Resolved(refs.refs[full], full)
    lowered = wanted.lower()
    if HEX_SHA.match(lowered):
        tip = next((r for r, sha in refs.refs.items()
                    if sha == lowered and r.startswith("refs/heads/")), None)
        # A SHA at no tip is only known to exist once fetched.
        return Resolved(lowered, None, exact=tip is not None)
    if _ABBREV.match(lowered):
        found = {sha for sha in refs.refs.values() if sha.startswith(lowered)}
        if len(found) == 1:
            return Resolved(found.pop(), None)
        if len(found) > 1:
            raise GitRefNotFound(f"the abbreviated commit {wanted!r} is ambiguous among the "
                                 "repository's tips: give the full SHA")
    raise GitRefNotFound(not_found_message(refs, wanted, url))


def not_found_message(refs: RemoteRefs, wanted: str, url: str = "") -> str:
    names = list(dict.fromkeys(refs.branches + refs.tags))
    short = wanted.removeprefix("refs/heads/").removeprefix("refs/tags/")
    close = difflib.get_close_matches(short, names, n=5, cutoff=0.5)
    where = public_url(url) or "the repository"
    text = f"the ref {wanted[:200]!r} does not exist in {where}"
    if close:
        return f"{text}; closest refs: {', '.join(close)}"
    if _ABBREV.match(wanted.lower()):
        return (f"{text}: an abbreviated commit is resolved only against branch and tag tips; "
                "give the full 40-character SHA")
    listing = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"{text} (its refs: {listing or 'none'})"


# -- checkout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    """The commit a checkout left in the folder."""

    sha: str
    ref: str | None
    author: str
    message: str
    repository: str

    @property
    def short_sha(self) -> str:
        return self.sha[:7]

    @property
    def branch(self) -> str:
        return Resolved(self.sha, self.ref).branch

    @property
    def tag(self) -> str:
        return Resolved(self.sha, self.ref).tag


@dataclass(frozen=True)
class CheckoutOptions:
    depth: int | None = None  # None or 0: the whole history
    submodules: bool | str = False  # True, False or "recursive"
    lfs: bool = False
    timeout: float = DEFAULT_TIMEOUT


def checkout(url: str, dest: str, target: Resolved, *, creds: GitCredentials | None = None,
             options: CheckoutOptions | None = None, emit: Emit | None = None,
             cancelled: threading.Event | None = None) -> Commit:
    """Fetch ``target`` from ``url`` into the folder ``dest`` (missing or empty) and check it
    out, as actions/checkout does: init, a remote `origin` (URL only), one fetch of just that
    commit (``depth`` deep), checkout (a local branch for a branch ref, detached otherwise),
    then the submodules. Raises GitError / GitAuthError."""
    options = options or CheckoutOptions()
    remote = parse_remote(url)
    if os.path.isdir(dest) and os.listdir(dest):
        raise GitError(f"cannot check out into {dest}: the folder is not empty")
    os.makedirs(dest, exist_ok=True)
    deadline_left = _Deadline(options.timeout)
    what = f"cannot check out {public_url(url)} at {target.ref or target.commit}"
    kind = (creds or GitCredentials()).kind
    with git_session(remote, creds) as session:

        def git(args: list[str], keep: bool = False) -> _Result:
            result = _git(args, session, cwd=dest, timeout=deadline_left(), cancelled=cancelled,
                          emit=emit, keep_stdout=keep)
            if result.code != 0 or result.timed_out or result.cancelled:
                raise _failure(what, result, remote, kind)
            return result

        fmt = ["--object-format=sha256"] if len(target.commit) == 64 else []
        git(["init", "-q", *fmt, "."])
        git(["remote", "add", "origin", "--", url])
        local = (f"refs/remotes/origin/{target.branch}" if target.branch
                 else target.ref if target.tag else None)
        spec = f"+{target.commit}:{local}" if local else target.commit
        depth = ["--depth", str(options.depth)] if options.depth else []
        fetch = ["-c", "fetch.recurseSubmodules=false", "fetch", "--no-tags", "-q", *depth,
                 "origin", spec]
        result = _git(fetch, session, cwd=dest, timeout=deadline_left(), cancelled=cancelled)
        if result.code != 0 or result.timed_out or result.cancelled:
            error = _failure(what, result, remote, kind)
            if target.exact or isinstance(error, GitAuthError) or result.timed_out \
                    or result.cancelled:
                raise error
            raise GitRefNotFound(f"the commit {target.commit} is not in {public_url(url)} "
                                 "(or not reachable from its branches and tags)")
        if target.branch:
            git(["checkout", "-q", "--force", "-B", target.branch, local])
        else:
            git(["checkout", "-q", "--force", "--detach", target.commit])
        if options.submodules:
            git(["submodule", "sync", "--recursive"] if options.submodules == "recursive"
                else ["submodule", "sync"])
            update = ["-c", "protocol.file.allow=never", "submodule", "update", "--init",
                      "--force", *depth]
            if options.submodules == "recursive":
                update.append("--recursive")
            git(update)
        if options.lfs:
            if shutil.which("git-lfs", path=session.env["PATH"]) is None:
                raise GitError("lfs: true needs git-lfs on the worker, which is not installed")
            git(["lfs", "install", "--local"])
            git(["lfs", "pull"])
        shown = git(["log", "-1", "--no-show-signature", "--format=%H%n%an <%ae>%n%B"],
                    keep=True)
    # Each line cleaned as any log line is (ANSI codes dropped, controls replaced): the
    # message and author are the committer's data, shown and templated as such.
    sha, author, *message = [*shown.stdout, "", ""]
    message_text = "\n".join(message).strip("\n")
    return Commit(sha=sha.strip(), ref=target.ref, author=author, message=message_text,
                  repository=public_url(url))


class _Deadline:
    def __init__(self, seconds: float) -> None:
        import time  # noqa: PLC0415

        self._time = time.monotonic
        self.end = self._time() + seconds

    def __call__(self) -> float:
        return max(self.end - self._time(), 0.001)
