"""The pure part of the git adapter: repository URLs and ref names checked, the adapter's
errors (no process, no SSH library: the pipeline language imports this)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ansflow.engines.errors import EngineError, EnginePermanent

HEX_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_HOST = re.compile(r"^[A-Za-z0-9._-]+$|^[0-9a-fA-F:.]+$")


class GitError(EngineError):
    """A git operation failed; the message is fit for a user (no credential in it)."""


class GitAuthError(GitError, EnginePermanent):
    """Credentials or a host key were refused: retrying cannot help."""


class GitRefNotFound(GitError):
    """The ref asked for is not in the repository."""


@dataclass(frozen=True)
class Remote:
    """A repository URL taken apart: scheme (https, http, ssh, file), host, port, path."""

    url: str
    scheme: str
    host: str = ""
    port: int | None = None
    user: str = ""


_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[A-Za-z0-9.\-_]+|\[[0-9a-fA-F:.]+\]):"
                       r"(?!//)(?P<path>.+)$")


def parse_remote(url: str) -> Remote:
    """``url`` checked and taken apart. Raises GitError: not a URL git should be given (a
    password in it, an option-like value, controls, a transport other than https, http,
    ssh or file)."""
    if not isinstance(url, str) or not url.strip():
        raise GitError("the repository URL is empty")
    if len(url) > 2048:
        raise GitError("the repository URL is longer than 2048 characters")
    if url.startswith("-"):
        raise GitError(f"the repository URL {url[:80]!r} starts with '-' (git would read an "
                       "option)")
    if any(ord(c) < 32 or ord(c) == 127 for c in url) or " " in url:
        raise GitError("the repository URL holds a space or a control character")
    if "::" in url.split("/", 1)[0]:
        raise GitError(f"the repository URL {url[:80]!r} names a remote helper "
                       "(`transport::address`); use an https, http, ssh or file URL")
    if "://" in url:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh", "file"):
            raise GitError(f"the repository URL's scheme {scheme!r} is not supported (https, "
                           "http, ssh or file)")
        if parts.password is not None:
            raise GitError("the repository URL holds a password: put the token in a "
                           "GitCredentials block (`credentials:`), never in the URL")
        try:
            port = parts.port
        except ValueError:
            raise GitError(f"the repository URL {url[:80]!r} has a bad port") from None
        if scheme != "file" and not parts.hostname:
            raise GitError(f"the repository URL {url[:80]!r} names no host")
        if parts.hostname and not _HOST.match(parts.hostname):
            raise GitError(f"the repository URL's host {parts.hostname[:80]!r} is not a host "
                           "name or address")
        return Remote(url=url, scheme=scheme, host=parts.hostname or "", port=port,
                      user=parts.username or "")
    match = _SCP_LIKE.match(url)
    if match:  # user@host:path, as ssh takes it
        host = match["host"].strip("[]")
        return Remote(url=url, scheme="ssh", host=host, port=None, user=match["user"] or "")
    if url.startswith("/"):
        return Remote(url=url, scheme="file")
    raise GitError(f"{url[:80]!r} is not a repository URL (https://host/path.git, "
                   "ssh://user@host/path.git, user@host:path.git or /path/to/repo.git)")


def public_url(url: str) -> str:
    """``url`` as it may be shown: without a user name's password (parse_remote refuses
    those anyway), query or fragment."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def check_ref_text(ref: str) -> str | None:
    """Why ``ref`` cannot be a git ref, branch, tag or commit (None: it can)."""
    if not ref:
        return "the ref is empty"
    if len(ref) > 1024:
        return "the ref is longer than 1024 characters"
    if ref.startswith("-"):
        return f"the ref {ref[:60]!r} starts with '-'"
    if any(ord(c) < 32 or ord(c) == 127 for c in ref) or any(c in ref for c in " ~^:?*[\\"):
        return (f"the ref {ref[:60]!r} holds a character no git ref may hold (space, control, "
                "~ ^ : ? * [ \\)")
    if ".." in ref or "@{" in ref or ref.endswith((".", "/", ".lock")) or "//" in ref:
        return f"the ref {ref[:60]!r} is not a valid git ref name"
    return None
