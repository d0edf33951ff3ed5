"""GitHub, GitLab and Gitea push webhooks: their signatures and payloads (pure).

Each provider's own documented names:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``, ``X-GitHub-Event``
  (``push``, ``ping``), ``X-GitHub-Delivery``; payload ``ref``, ``before``, ``after``,
  ``deleted``, ``repository.clone_url`` / ``ssh_url`` / ``html_url``, ``repository.pushed_at``
  (the push time, in the signed body: a delivery older than the receiver's max age is stale),
  ``commits[].added/removed/modified`` (at most 2048 commits), ``head_commit.id``,
  ``pusher.name``.
- GitLab: ``X-Gitlab-Token`` (the secret token itself, compared in constant time), or the
  newer signing token (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``,
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, key = the base64
  after ``whsec_``); ``X-Gitlab-Event`` (``Push Hook``, ``Tag Push Hook``),
  ``X-Gitlab-Event-UUID``; payload ``ref``, ``before``, ``after``, ``checkout_sha``,
  ``project.git_http_url`` / ``git_ssh_url`` / ``web_url``, ``commits`` (at most 20) and
  ``total_commits_count``, ``user_username``.
- Gitea: ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``, ``X-Gitea-Event`` (``push``),
  ``X-Gitea-Delivery``; payload ``ref``, ``before``, ``after``, ``repository.clone_url`` /
  ``ssh_url`` / ``html_url``, ``commits`` and ``total_commits``, ``head_commit.id``,
  ``pusher.login``.

When a payload lists fewer commits than were pushed, the changed paths are not known and
path filters pass (GitHub runs a workflow when it cannot compute the diff).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from ansflow.gitpush.events import Push

PROVIDERS = ("github", "gitlab", "gitea")
GITHUB_MAX_COMMITS = 2048
GITLAB_SIGNATURE_TOLERANCE = 300  # seconds either way, Standard Webhooks' default


class Refused(Exception):
    """A delivery refused with an HTTP status and a message safe to send back and log."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass
class Secrets:
    """The receiver's secrets (bytes, never logged); a provider without one is disabled."""

    github: bytes | None = None
    gitlab_token: bytes | None = None
    gitlab_signing: bytes | None = None  # the decoded key of a whsec_ signing token
    gitea: bytes | None = None

    def enabled(self, provider: str) -> bool:
        if provider == "gitlab":
            return bool(self.gitlab_token or self.gitlab_signing)
        return bool(getattr(self, provider, None))


def signing_key(token: str) -> bytes:
    """The HMAC key of a GitLab signing token (``whsec_<base64>``). Raises ValueError."""
    body = token.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a GitLab signing token is whsec_ followed by base64") from None
    if len(key) < 16:
        raise ValueError("a GitLab signing token's key is too short")
    return key


def _hex_hmac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def _header(headers: dict[str, str], name: str) -> str | None:
    value = headers.get(name.lower())
    return value.strip() if isinstance(value, str) else None


def verify(provider: str, secrets: Secrets, headers: dict[str, str], body: bytes, *,
           now: float | None = None) -> None:
    """Refuse (401) a delivery whose signature or token is missing or wrong; compares in
    constant time. ``headers`` are keyed by lowercase name."""
    if not secrets.enabled(provider):
        raise Refused(404, f"{provider} webhooks are not enabled on this receiver")
    if provider == "github":
        given = _header(headers, "X-Hub-Signature-256") or ""
        expected = "sha256=" + _hex_hmac(secrets.github or b"", body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused(401, "missing or wrong X-Hub-Signature-256")
        return
    if provider == "gitea":
        given = _header(headers, "X-Gitea-Signature") or ""
        expected = _hex_hmac(secrets.gitea or b"", body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused(401, "missing or wrong X-Gitea-Signature")
        return
    if secrets.gitlab_signing:
        _verify_gitlab_signature(secrets.gitlab_signing, headers, body, now)
        if not secrets.gitlab_token:
            return
    given = _header(headers, "X-Gitlab-Token") or ""
    if not hmac.compare_digest(given.encode(), (secrets.gitlab_token or b"")):
        raise Refused(401, "missing or wrong X-Gitlab-Token")


def _verify_gitlab_signature(key: bytes, headers: dict[str, str], body: bytes,
                             now: float | None) -> None:
    ident = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    if not ident or not stamp or not signatures:
        raise Refused(401, "missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit() or len(stamp) > 12:
        raise Refused(401, "webhook-timestamp is not a number of seconds")
    signed = ident.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    ok = False
    for part in signatures.split()[:8]:
        version, _, value = part.partition(",")
        if version == "v1":
            ok |= hmac.compare_digest(value.encode(), expected)
    if not ok:
        raise Refused(401, "wrong webhook-signature")
    if abs((now or time.time()) - int(stamp)) > GITLAB_SIGNATURE_TOLERANCE:
        raise Refused(400, "stale delivery: webhook-timestamp is more than "
                           f"{GITLAB_SIGNATURE_TOLERANCE} s away from now")


def event_kind(provider: str, headers: dict[str, str]) -> str:
    """``push``, ``ping`` or ``other`` for the delivery's event header."""
    name = {"github": "X-GitHub-Event", "gitlab": "X-Gitlab-Event",
            "gitea": "X-Gitea-Event"}[provider]
    value = (_header(headers, name) or "").lower()
    if value in ("push", "push hook", "tag push hook"):
        return "push"
    if value in ("ping",):
        return "ping"
    return "other"


def delivery_id(provider: str, headers: dict[str, str]) -> str:
    """The delivery's unique id (refused, 400, when missing or not a short token)."""
    names = {"github": ["X-GitHub-Delivery"],
             "gitlab": ["X-Gitlab-Event-UUID", "webhook-id", "Idempotency-Key"],
             "gitea": ["X-Gitea-Delivery"]}[provider]
    for name in names:
        value = _header(headers, name)
        if value:
            if len(value) > 200 or not value.isprintable() or not value.isascii():
                raise Refused(400, f"{name} is not a delivery id")
            return value
    raise Refused(400, f"no delivery id ({names[0]}): a delivery without one cannot be "
                       "told from a replay")


def _dict(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise Refused(400, f"{what} is missing or not an object")
    return value


def _text(data: dict, key: str, what: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise Refused(400, f"{what or key} is missing or not a string")
    return value


def _urls(repo: dict, keys: tuple[str, ...]) -> list[str]:
    urls = [repo[k] for k in keys if isinstance(repo.get(k), str) and repo[k]]
    if not urls:
        raise Refused(400, f"the repository has none of {', '.join(keys)}")
    return urls


def _paths(commits: Any, complete: bool) -> list[str] | None:
    if not isinstance(commits, list):
        raise Refused(400, "commits is not a list")
    if not complete:
        return None
    paths: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict):
            raise Refused(400, "a commit is not an object")
        for key in ("added", "removed", "modified"):
            names = commit.get(key) or []
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise Refused(400, f"a commit's {key} is not a list of paths")
            paths.update(names)
    return sorted(paths)


def parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON") from None
    return _dict(data, "the body")


def parse_push(provider: str, data: dict, delivery: str, *, max_age: float | None = None,
               now: float | None = None) -> Push:
    """The push a verified delivery's payload describes. Raises Refused (400)."""
    ref = _text(data, "ref")
    before = _text(data, "before")
    after = _text(data, "after")
    head = data.get("head_commit") if isinstance(data.get("head_commit"), dict) else {}
    extra: dict[str, Any] = {}
    if provider == "github":
        repo = _dict(data.get("repository"), "repository")
        urls = _urls(repo, ("clone_url", "ssh_url", "git_url", "html_url"))
        commits = data.get("commits") or []
        paths = _paths(commits, len(commits) < GITHUB_MAX_COMMITS)
        pusher = (data.get("pusher") or {}).get("name") if isinstance(data.get("pusher"),
                                                                       dict) else None
        pushed_at = repo.get("pushed_at")
        if max_age and isinstance(pushed_at, (int, float)) and not isinstance(pushed_at, bool):
            if (now or time.time()) - pushed_at > max_age:
                raise Refused(400, f"stale delivery: pushed more than {int(max_age)} s ago")
        extra["forced"] = bool(data.get("forced"))
    elif provider == "gitlab":
        project = data.get("project") if isinstance(data.get("project"), dict) else None
        repo = project or _dict(data.get("repository"), "project")
        urls = _urls(repo, ("git_http_url", "git_ssh_url", "web_url", "url", "homepage"))
        commits = data.get("commits") or []
        total = data.get("total_commits_count")
        paths = _paths(commits, not isinstance(total, int) or total <= len(commits))
        pusher = data.get("user_username")
        head = {"id": data["checkout_sha"]} if isinstance(data.get("checkout_sha"), str) else {}
    else:
        repo = _dict(data.get("repository"), "repository")
        urls = _urls(repo, ("clone_url", "ssh_url", "html_url"))
        commits = data.get("commits") or []
        total = data.get("total_commits")
        paths = _paths(commits, not isinstance(total, int) or total <= len(commits))
        pusher_obj = data.get("pusher") if isinstance(data.get("pusher"), dict) else {}
        pusher = pusher_obj.get("login") or pusher_obj.get("username")
    deleted = not after.strip("0")
    if ref.startswith("refs/tags/") and not deleted and isinstance(head.get("id"), str):
        if head["id"] != after:
            extra["tag_object"] = after
            after = head["id"]  # an annotated tag: check out the commit it tags
    if ref.startswith("refs/tags/"):
        paths = []
    return Push(repositories=urls, ref=ref, before=before, after=after, paths=paths,
                source=provider, delivery=delivery,
                pusher=pusher if isinstance(pusher, str) else None, extra=extra)
