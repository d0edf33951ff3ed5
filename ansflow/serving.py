"""What `ansflow serve` serves: pipeline files found, their run-form schema, the served map.

Pure Python (no Prefect import): finding and validating the files, turning a plan's
`variables` into the JSON schema of a deployment's parameters, and the small per-machine map
from a served deployment's name to its pipeline file (a served run reads its file through it,
so every machine runs its own copy of the file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansflow.errors import SpecError, UsageError
from ansflow.plan import Plan
from ansflow.spec.validate import load_plan
from ansflow.store import ansflow_home, ensure_home
from ansflow.variables import CONSTRAINTS, variable_type

PIPELINE_SUFFIXES = (".yaml", ".yml")
SERVED_MAP = "served-pipelines.json"
# Signs ansflow's own state files: kept 0600 under ANSFLOW_HOME (never passed to steps).
STATE_KEY = "state.key"


@dataclass
class Discovery:
    """The outcome of looking at the paths given to `ansflow serve`."""

    plans: dict[str, tuple[Path, Plan]] = field(default_factory=dict)  # name -> (file, plan)
    problems: list[str] = field(default_factory=list)  # FILE:LINE:COL: message lines


def pipeline_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Files named by ``paths`` (folders: their *.yaml / *.yml, recursively), plus problems."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix in PIPELINE_SUFFIXES and not p.name.startswith("."))
            if not found:
                problems.append(f"{path}: no pipeline files (*.yaml, *.yml) in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or folder")
    return files, problems


def discover(paths: list[str]) -> Discovery:
    """Validate every pipeline file under ``paths``; invalid ones are reported and skipped."""
    found = Discovery()
    files, found.problems = pipeline_files(paths)
    for file in files:
        try:
            plan = load_plan(file)
        except SpecError as exc:
            found.problems.extend(str(p) for p in exc.problems)
            continue
        except UsageError as exc:
            found.problems.append(str(exc))
            continue
        if plan.name in found.plans:
            other = found.plans[plan.name][0]
            found.problems.append(f"{file}: pipeline name {plan.name!r} is already served from "
                                 f"{other}; skipped (names must be unique)")
            continue
        found.plans[plan.name] = (file.resolve(), plan)
    return found


_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number",
               "boolean": "boolean"}


def parameter_schema(plan: Plan) -> dict[str, Any]:
    """The JSON schema of a deployment's parameters: one field per pipeline variable.

    Unknown names are refused (`additionalProperties: false`), so the server rejects a run
    with a misspelled or undeclared variable before it starts.
    """
    properties: dict[str, Any] = {}
    for position, (name, spec) in enumerate(form_variables(plan).items()):
        prop: dict[str, Any] = {"title": name, "position": position}
        kind = _JSON_TYPES.get(variable_type(spec) or "")
        if kind:
            prop["type"] = kind
        if spec.get("description"):
            prop["description"] = spec["description"]
        if spec.get("default") is not None:
            prop["default"] = spec["default"]
        for key in CONSTRAINTS:  # the server checks them before a run is created
            if spec.get(key) is not None:
                prop[key] = spec[key]
        properties[name] = prop
    properties.update(git_parameters(plan, len(properties)))
    return {"title": "Parameters", "type": "object", "properties": properties,
            "required": [], "definitions": {}, "additionalProperties": False}


def git_parameters(plan: Plan, position: int) -> dict[str, Any]:
    """The run form's `ref` and `sha` fields of a pipeline with a git `source:` (none
    without): `ref` defaults to the source's ref (the deployment's default); `sha` is the
    exact commit a push trigger passes."""
    source = plan.git_source
    if source is None:
        return {}
    ref: dict[str, Any] = {
        "title": "ref", "type": "string", "position": position, "maxLength": 1024,
        "description": "Branch, tag, full ref name (refs/heads/...) or commit SHA to build"
                       + ("" if source.get("ref") else
                          " (empty: the repository's default branch)") + "."}
    if source.get("ref"):
        ref["default"] = source["ref"]
    sha = {"title": "sha", "type": "string", "position": position + 1,
           "pattern": "^([0-9a-fA-F]{40}|[0-9a-fA-F]{64})?$",
           "description": "The exact commit to build (full SHA), as push triggers pass it; "
                          "`ref` then only names where it came from. Empty: the tip of `ref`."}
    return {"ref": ref, "sha": sha}


def form_variables(plan: Plan) -> dict[str, dict[str, Any]]:
    """The variables that can be deployment parameters (Python identifiers: Prefect binds
    parameters to a function signature); the others keep their defaults when served."""
    return {k: v for k, v in plan.variables.items() if k.isidentifier()}


def flow_parameters(plan: Plan) -> list[str]:
    """The keyword parameters of a served pipeline's flow: its form variables, and `ref`
    and `sha` when it has a git source (the spec keeps the two sets apart)."""
    return [*form_variables(plan), *(("ref", "sha") if plan.git_source is not None else ())]


PUSH_TRIGGER_PARAMETERS = {"ref": "{{ event.payload.ref }}", "sha": "{{ event.payload.after }}"}
MAX_REGISTRATION_CHARS = 4900  # a Prefect Variable's value holds at most 5000


def push_registration(plan: Plan) -> dict[str, Any] | None:
    """What `ansflow serve` publishes of the pipeline's `on.push` (a Prefect Variable read by
    the git hook and the webhook receiver), or None without `on.push`.

    Raises:
        UsageError: the repository URL has no identity, or the filters are too long to
            publish.
    """
    from ansflow.gitpush.events import registration  # noqa: PLC0415 - stdlib only

    if not plan.on_push:
        return None
    try:
        value = registration(plan.name, plan.on_push["repository"], plan.on_push["filters"])
    except ValueError as exc:
        raise UsageError(f"pipeline {plan.name!r}: on.push: {exc}") from None
    if len(json.dumps(value)) > MAX_REGISTRATION_CHARS:
        raise UsageError(f"pipeline {plan.name!r}: the on.push filters are longer than "
                         f"{MAX_REGISTRATION_CHARS} characters once published; use fewer "
                         "or shorter patterns")
    return value


def push_trigger(plan: Plan) -> dict[str, Any] | None:
    """The keyword arguments of the served deployment's trigger (Prefect's
    DeploymentEventTrigger) for the pipeline's `on.push`, or None.

    It fires on every `ansflow.git.push` event (``within`` 0: two pushes a second apart
    are two runs) whose resource is the pipeline's repository and that lists the pipeline
    as a related resource (the emitter put it there after GitHub's filters selected it);
    the run gets ``ref`` and ``sha`` = the event's ``after``, so it checks out exactly the
    pushed commit.
    """
    from ansflow.gitpush.events import (  # noqa: PLC0415 - stdlib only
        EVENT,
        PIPELINE_ROLE,
        pipeline_resource,
    )
    from ansflow.gitpush.repos import RESOURCE_PREFIX, fnmatch_literal  # noqa: PLC0415

    value = push_registration(plan)
    if value is None:
        return None
    return {
        "name": f"ansflow push: {plan.name}"[:200],
        "description": f"Runs pipeline {plan.name!r} at the pushed commit when a push to "
                       f"{value['repository']} passes its on.push filters "
                       f"({json.dumps(value['filters'])[:500]}).",
        "expect": [EVENT],
        "match": {"prefect.resource.id": fnmatch_literal(RESOURCE_PREFIX + value["repository"])},
        "match_related": {"prefect.resource.role": PIPELINE_ROLE,
                          "prefect.resource.id": fnmatch_literal(pipeline_resource(plan.name))},
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        "parameters": dict(PUSH_TRIGGER_PARAMETERS),
    }


def served_map_path() -> Path:
    return ansflow_home() / SERVED_MAP


def state_key() -> bytes:
    """The machine's key for ansflow's state files (created 0600 on first use).

    Raises:
        UsageError: the key file is readable or writable by others, or not a regular file.
    """
    path = ansflow_home() / STATE_KEY
    ensure_home()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ansflow's state key: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as key_file:
        info = os.fstat(key_file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise UsageError(f"{path}: ansflow's state key must be a regular file only its "
                             "owner can read (chmod 600); refused")
        key = key_file.read(256).strip()
    if len(key) < 32:
        raise UsageError(f"{path}: ansflow's state key is truncated; delete it and serve "
                         "again")
    return key


def _signature(key: bytes, name: str, entry: dict[str, Any]) -> str:
    body = json.dumps({"name": name, "file": entry.get("file"),
                       "variables": entry.get("variables")}, sort_keys=True)
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def _verified(key: bytes, name: str, entry: Any) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("sig"), str)
            and hmac.compare_digest(entry["sig"], _signature(key, name, entry)))


def record_served(plans: dict[str, tuple[Path, Plan]]) -> None:
    """Remember each served pipeline's file and variable names (merged, signed with the
    machine's state key, written atomically)."""
    path = served_map_path()
    ensure_home()
    key = state_key()
    current = read_served()  # verified entries only: a tampered one is dropped
    for name, (file, plan) in plans.items():
        entry: dict[str, Any] = {"file": str(file), "variables": flow_parameters(plan)}
        entry["sig"] = _signature(key, name, entry)
        current[name] = entry
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".served-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(current, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _read_raw() -> dict[str, Any]:
    try:
        data = json.loads(served_map_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_served() -> dict[str, Any]:
    """The served map's entries whose signature checks out."""
    raw = _read_raw()
    if not raw:
        return {}
    key = state_key()
    return {name: entry for name, entry in raw.items() if _verified(key, name, entry)}


def served_entry(name: str) -> dict[str, Any]:
    """What this machine serves as pipeline ``name``: its file and variable names.

    Raises:
        UsageError: ``name`` is not served here, or its entry was tampered with.
    """
    entry = _read_raw().get(name)
    if entry is not None and not _verified(state_key(), name, entry):
        raise UsageError(f"the entry of pipeline {name!r} in {served_map_path()} was changed "
                         "outside `ansflow serve` (its signature does not match); refused. "
                         "Serve the pipeline again with `ansflow serve FILE`")
    if not isinstance(entry, dict) or not entry.get("file"):
        raise UsageError(f"pipeline {name!r} is not served on this machine (no entry in "
                         f"{served_map_path()}); serve it with `ansflow serve FILE`")
    return entry
