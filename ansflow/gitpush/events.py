"""The `ansflow.git.push` event: which served pipelines a push selects, and its emission.

A push becomes one event whose resource is the repository
(``ansflow.git.repo.<host/path>``) and whose payload carries the ref, ``before``, ``after``
and the changed paths. The pipelines the push selects (GitHub's `on.push` rules, evaluated
here with :func:`ansflow.spec.globs.selects`) are the event's related resources
``ansflow.pipeline.<name>`` (role ``ansflow-pipeline``); each served pipeline's deployment
trigger matches its own repository and its own related resource, so a push starts exactly
the pipelines it selects, once each, and nothing else. Prefect's trigger labels are fnmatch
patterns (``*`` crosses ``/``, a ``!`` value in a list matches almost everything), so they
cannot express GitHub's ordered branch and path lists: the filter runs here, where the push
is known, and the server only routes.

The filters of the served pipelines are published by `ansflow serve` as Prefect Variables
tagged ``ansflow-push-trigger`` (:func:`registration`), so a hook on the git host and a
webhook receiver elsewhere read the same filters from the server.

Standard library only: the REST API is spoken with urllib (`import prefect` costs ~2.5 s,
which a post-receive hook would add to every push).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ansflow.gitpush.repos import RESOURCE_PREFIX, repository_key
from ansflow.spec.globs import PatternError, check_patterns, ref_kind, selects

EVENT = "ansflow.git.push"
PIPELINE_PREFIX = "ansflow.pipeline."
PIPELINE_ROLE = "ansflow-pipeline"
REGISTRATION_TAG = "ansflow-push-trigger"
REGISTRATION_PREFIX = "ansflow_push_"
ZERO = "0" * 40
MAX_PAYLOAD_PATHS = 1000  # all changed paths are filtered on; the event lists this many
MAX_RELATED = 50  # Prefect refuses events with more than 100 related resources
FILTER_KEYS = ("branches", "branches_ignore", "tags", "tags_ignore", "paths", "paths_ignore")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_TIMEOUT = float(os.environ.get("ANSFLOW_PUSH_API_TIMEOUT", "5"))


class PushError(ValueError):
    """A push that cannot be an event (bad ref, bad SHA, no repository)."""


class ApiError(RuntimeError):
    """The Prefect server did not take a request (the message names the URL, no secret)."""


@dataclass
class Push:
    """One ref update, as a hook or a webhook saw it."""

    repositories: list[str]  # clone URLs naming the repository (the first is shown)
    ref: str
    before: str
    after: str
    paths: list[str] | None  # changed paths; None: not known (all path filters pass)
    source: str  # git-hook, github, gitlab, gitea
    delivery: str | None = None
    pusher: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.after == ZERO or (len(self.after) == 64 and not self.after.strip("0"))

    @property
    def created(self) -> bool:
        return not self.before.strip("0")

    def check(self) -> None:
        """Raise PushError when a field cannot be trusted into an event."""
        if not (self.ref.startswith("refs/") and 5 < len(self.ref) <= 1024
                and self.ref.isprintable() and " " not in self.ref and ".." not in self.ref):
            raise PushError(f"ref {self.ref[:80]!r} is not a full ref name (refs/...)")
        for name in ("before", "after"):
            if not _SHA.match(getattr(self, name)):
                raise PushError(f"{name} {getattr(self, name)[:80]!r} is not a commit SHA")
        if not self.repositories:
            raise PushError("no repository URL")
        keys = []
        for url in self.repositories:
            try:
                keys.append(repository_key(url))
            except ValueError as exc:
                raise PushError(str(exc)) from None
        if self.paths is not None and not all(isinstance(p, str) for p in self.paths):
            raise PushError("changed paths must be strings")


def registration_name(pipeline: str) -> str:
    """The Prefect Variable that holds ``pipeline``'s push filter."""
    return REGISTRATION_PREFIX + hashlib.sha256(pipeline.encode("utf-8")).hexdigest()[:32]


def registration(pipeline: str, repository: str, filters: dict[str, list[str]]) -> dict:
    """The published form of one pipeline's `on.push` (the Variable's value)."""
    return {"pipeline": pipeline, "repository": repository_key(repository),
            "filters": {k: list(v) for k, v in filters.items()}}


def pipeline_resource(pipeline: str) -> str:
    return PIPELINE_PREFIX + pipeline


def _short(value: Any, limit: int = 256) -> Any:
    return value[:limit] if isinstance(value, str) else value


def build_events(push: Push, registrations: list[dict], *,
                 now: datetime | None = None) -> tuple[list[dict], list[str]]:
    """The events of ``push`` and the names of the pipelines it selects.

    One event per repository identity the selected pipelines name (usually one), each
    listing its pipelines as related resources (chunks of 50); a push that selects nothing
    still gives one event, with no related pipeline, so it shows in the event feed and
    starts nothing. A deleted ref selects nothing.
    """
    push.check()
    keys = [repository_key(u) for u in push.repositories]
    selected: dict[str, list[str]] = {}
    for reg in registrations:
        if reg["repository"] in keys and selects(reg["filters"], push.ref, push.paths,
                                                 deleted=push.deleted):
            selected.setdefault(reg["repository"], []).append(reg["pipeline"])
    occurred = (now or datetime.now(timezone.utc)).isoformat()
    kind, name = ref_kind(push.ref)
    paths = push.paths or []
    payload = {
        "ref": push.ref, "before": push.before, "after": push.after,
        "branch": name if kind == "branch" else None, "tag": name if kind == "tag" else None,
        "created": push.created, "deleted": push.deleted,
        "paths": [p for p in paths[:MAX_PAYLOAD_PATHS] if len(p) <= 1024],
        "paths_truncated": push.paths is None or len(paths) > MAX_PAYLOAD_PATHS,
        "repository": _short(push.repositories[0], 2048), "source": push.source,
        "delivery": _short(push.delivery), "pusher": _short(push.pusher),
        **{k: _short(v) for k, v in push.extra.items()},
    }
    events = []
    for key, names in (selected or {keys[0]: []}).items():
        chunks = [sorted(names)[i:i + MAX_RELATED] for i in range(0, len(names), MAX_RELATED)]
        for chunk in chunks or [[]]:
            events.append({
                "id": str(uuid.uuid4()), "occurred": occurred, "event": EVENT,
                "resource": {"prefect.resource.id": RESOURCE_PREFIX + key,
                             "prefect.resource.name": key},
                "related": [{"prefect.resource.id": pipeline_resource(n),
                             "prefect.resource.role": PIPELINE_ROLE,
                             "prefect.resource.name": n} for n in chunk],
                "payload": {**payload, "pipelines": chunk},
            })
    return events, sorted(n for names in selected.values() for n in names)


class PrefectApi:
    """The few REST calls a push needs: read the published filters, post events."""

    def __init__(self, url: str | None = None) -> None:
        url = url or os.environ.get("PREFECT_API_URL", "")
        if not url.startswith(("http://", "https://")):
            raise ApiError("PREFECT_API_URL is not set (or not an http(s) URL): set it to the "
                           "Prefect server that serves the pipelines, e.g. "
                           "http://127.0.0.1:4200/api")
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        auth = os.environ.get("PREFECT_API_AUTH_STRING")
        key = os.environ.get("PREFECT_API_KEY")
        if auth:
            self.headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
        elif key:
            self.headers["Authorization"] = f"Bearer {key}"

    def _post(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                         headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                data = response.read(50 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            raise ApiError(f"{self.url}{path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"{self.url}{path}: {reason}") from None
        return json.loads(data) if data else None

    def registrations(self) -> list[dict]:
        """Every published push filter (Variables tagged ``ansflow-push-trigger``)."""
        found: list[dict] = []
        offset = 0
        while True:
            page = self._post("/variables/filter", {
                "variables": {"tags": {"all_": [REGISTRATION_TAG]}},
                "limit": 200, "offset": offset})
            if not isinstance(page, list):
                raise ApiError(f"{self.url}/variables/filter: unexpected answer")
            for variable in page:
                value = variable.get("value") if isinstance(variable, dict) else None
                if _valid_registration(value) and variable.get("name") == registration_name(
                        value["pipeline"]):
                    found.append(value)
            if len(page) < 200:
                return found
            offset += len(page)

    def emit(self, events: list[dict]) -> None:
        if events:
            self._post("/events", events)


def _valid_registration(value: Any) -> bool:
    """A published filter this version can evaluate (a hand-edited or foreign Variable with
    the tag is skipped, never fatal to the push)."""
    if not (isinstance(value, dict) and isinstance(value.get("pipeline"), str)
            and isinstance(value.get("repository"), str)
            and isinstance(value.get("filters"), dict)):
        return False
    filters = value["filters"]
    if not set(filters) <= set(FILTER_KEYS):
        return False
    try:
        for patterns in filters.values():
            if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                return False
            check_patterns(patterns)
    except PatternError:
        return False
    return True


def deliver(push: Push, api: PrefectApi) -> list[str]:
    """Emit the events of ``push``; the pipelines it selects. Raises PushError, ApiError."""
    push.check()
    events, selected = build_events(push, api.registrations())
    api.emit(events)
    return selected
