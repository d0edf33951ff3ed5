"""One identity per repository, whichever URL names it (pure)."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

RESOURCE_PREFIX = "ansflow.git.repo."
_SCP = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!//).*)$")


def repository_key(url: str) -> str:
    """``host/path`` of a clone URL, lowercased, without scheme, user, password, port,
    trailing ``/`` or ``.git``: ``https://github.com/Org/App.git``,
    ``git@github.com:org/app`` and ``ssh://git@github.com:22/org/app.git`` are all
    ``github.com/org/app``; a local path or ``file://`` URL is ``file/<absolute path>``.

    Raises:
        ValueError: not a URL or path a repository can have.
    """
    text = url.strip()
    if not text or len(text) > 2048 or not text.isprintable() or " " in text:
        raise ValueError("a repository URL is one line of at most 2048 characters without "
                         "spaces")
    if "://" in text:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        path = unquote(parts.path)
        if parts.scheme.lower() == "file":
            host = ""
    elif text.startswith("/"):
        host, path = "", text
    else:
        match = _SCP.match(text)
        if not match:
            raise ValueError(f"{text[:80]!r} is not a repository URL (https://, ssh://, "
                             "user@host:path or an absolute path)")
        host, path = match["host"].lower(), match["path"]
    segments = [s for s in path.split("/") if s and s != "."]
    if any(s == ".." for s in segments) or not segments:
        raise ValueError(f"{text[:80]!r}: no repository path (or '..' in it)")
    last = segments[-1]
    segments[-1] = last[:-4] if last.lower().endswith(".git") and len(last) > 4 else last
    return ("file" if not host else host) + "/" + "/".join(segments).lower()


def resource_id(url: str) -> str:
    """The `prefect.resource.id` of a repository: ``ansflow.git.repo.<key>``."""
    return RESOURCE_PREFIX + repository_key(url)


def fnmatch_literal(text: str) -> str:
    """``text`` as an fnmatch pattern that matches only itself (Prefect's trigger `match`
    values are fnmatch patterns)."""
    return re.sub(r"([*?\[])", r"[\1]", text)
