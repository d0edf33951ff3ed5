"""What `ansflow serve` serves: pipeline files found, their run-form schema, the served map.

Pure Python (no Prefect import): finding and validating the files, turning a plan's
`variables` into the JSON schema of a deployment's parameters, and the small per-machine map
from a served deployment's name to its pipeline file (a served run reads its file through it,
so every machine runs its own copy of the file).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ansflow.errors import SpecError, UsageError
from ansflow.plan import Plan
from ansflow.spec.validate import load_plan
from ansflow.store import ansflow_home
from ansflow.variables import variable_type

PIPELINE_SUFFIXES = (".yaml", ".yml")
SERVED_MAP = "served-pipelines.json"


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
        properties[name] = prop
    return {"title": "Parameters", "type": "object", "properties": properties,
            "required": [], "definitions": {}, "additionalProperties": False}


def form_variables(plan: Plan) -> dict[str, dict[str, Any]]:
    """The variables that can be deployment parameters (Python identifiers: Prefect binds
    parameters to a function signature); the others keep their defaults when served."""
    return {k: v for k, v in plan.variables.items() if k.isidentifier()}


def served_map_path() -> Path:
    return ansflow_home() / SERVED_MAP


def record_served(plans: dict[str, tuple[Path, Plan]]) -> None:
    """Remember each served pipeline's file and variable names (merged, written atomically)."""
    path = served_map_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    current = read_served()
    current.update({name: {"file": str(file), "variables": list(form_variables(plan))}
                    for name, (file, plan) in plans.items()})
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".served-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(current, out, indent=2, sort_keys=True)
    os.replace(tmp, path)


def read_served() -> dict[str, str]:
    try:
        data = json.loads(served_map_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def served_entry(name: str) -> dict[str, Any]:
    """What this machine serves as pipeline ``name``: its file and variable names.

    Raises:
        UsageError: ``name`` is not served here.
    """
    entry = read_served().get(name)
    if not isinstance(entry, dict) or not entry.get("file"):
        raise UsageError(f"pipeline {name!r} is not served on this machine (no entry in "
                         f"{served_map_path()}); serve it with `ansflow serve FILE`")
    return entry
