"""Load a pipeline file, validate it completely, and resolve it into a Plan.

Every problem is collected (not just the first) and reported as FILE:LINE:COL: message.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from ansflow.errors import SpecError, UsageError
from ansflow.plan import Plan
from ansflow.spec.messages import problem_from_error, suggest
from ansflow.spec.models import Pipeline
from ansflow.spec.resolve import derive_id, resolve_plan
from ansflow.spec.yaml_loader import Located, Path, Problem, YamlError, decode_text, load_located
from ansflow.steptypes import STEP_TYPES
from ansflow.templating import has_template

MAX_FILE_BYTES = 5 * 1024 * 1024
# A templated number is checked once rendered: 1 satisfies every bound a field has (a
# k8s_rollback `revision` is 1 or more).
_PLACEHOLDERS = {"int": 1, "float": 0.0, "bool": False}
_TOP_KEYS = ("pipeline", "steps", "stages")


def load_plan(path: str | FsPath) -> Plan:
    """Read, validate and resolve a pipeline file. Raises SpecError or UsageError."""
    file = FsPath(path)
    try:
        if file.is_dir():
            raise UsageError(f"{file}: is a directory, not a pipeline file")
        if file.stat().st_size > MAX_FILE_BYTES:
            raise UsageError(f"{file}: larger than {MAX_FILE_BYTES // 1024 // 1024} MiB; refused")
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(f"{file}: no such file") from exc
    except PermissionError as exc:
        raise UsageError(f"{file}: permission denied") from exc
    except OSError as exc:
        raise UsageError(f"{file}: cannot read: {exc.strerror or exc}") from exc
    # The plan's workspace is the pipeline's folder: what each run's own workspace is filled
    # from (ansflow.workspaces; the run swaps in its directory before the first step) and
    # what static path checks are made against.
    return plan_from_bytes(raw, str(file), workspace=str(file.resolve().parent),
                           default_name=file.stem)


def plan_from_bytes(raw: bytes, file: str, *, workspace: str, default_name: str) -> Plan:
    with _collection_paused():
        try:
            located = load_located(decode_text(raw))
        except YamlError as exc:
            raise SpecError([Problem(file, exc.position, str(exc))]) from None
        plan = plan_from_located(located, file, workspace=workspace, default_name=default_name)
    plan.source_sha256 = hashlib.sha256(raw).hexdigest()
    return plan


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """Python's cycle collector paused while a file is turned into a plan: it builds no
    cycles worth collecting, only many objects, and a 50,000-step file spent two thirds of
    its time (10 of 15 s) in collections triggered by those allocations."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan_from_located(located: Located, file: str, *, workspace: str, default_name: str) -> Plan:
    data = located.data
    if not isinstance(data, dict):
        raise SpecError([Problem(file, located.value_pos(()),
                                 "expected a mapping with `pipeline:` or `steps:` at the top, "
                                 f"got {type(data).__name__}")])
    if "pipeline" in data:
        extra = [k for k in data if k != "pipeline"]
        if extra:
            raise SpecError([Problem(file, located.key_pos((k,)), f"unknown top-level key {k!r} "
                                     "beside `pipeline:`") for k in extra])
        base: Path = ("pipeline",)
        body = data["pipeline"]
        if not isinstance(body, dict):
            raise SpecError([Problem(file, located.value_pos(base),
                                     f"`pipeline:` must be a mapping, got {_kind(body)}")])
    else:
        base = ()
        body = data
        if not any(k in data for k in _TOP_KEYS):
            unknown = next(iter(data), "")
            raise SpecError([Problem(file, located.key_pos((unknown,)),
                                     f"expected `pipeline:` or `steps:` at the top"
                                     f"{suggest(str(unknown), _TOP_KEYS)}")])
    body = dict(body)
    body.setdefault("name", default_name)
    pipeline, problems = _validate_model(body, located, file, base)
    if pipeline is None:
        # Go on with the broken steps replaced by placeholders, so that problems elsewhere
        # (needs, cycles, templates) are reported in the same pass.
        patched = _patch_broken_steps(body, problems_locs := _error_locs(body))
        pipeline = _quiet_validate(patched) if patched is not None else None
        if pipeline is None:
            raise SpecError(problems)
        body = patched
        _ = problems_locs
    plan, more = resolve_plan(pipeline, body, located, file, base, workspace)
    problems.extend(more)
    if problems:
        raise SpecError(sorted(problems, key=_problem_key))
    return plan


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "nothing"}.get(type(value),
                                                                       type(value).__name__)


def _problem_key(p: Problem) -> tuple[int, int]:
    return (p.position.line, p.position.col) if p.position else (0, 0)


def _validate_model(body: dict, located: Located, file: str, base: Path):
    """Validate with pydantic; template strings in typed fields are checked after rendering."""
    work = copy.deepcopy(body)
    for _ in range(5):
        try:
            return Pipeline.model_validate(work), []
        except ValidationError as exc:
            errors = exc.errors()
        deferred = False
        for err in errors:
            kind = err["type"].split("_")[0]
            if has_template(err["input"]) and "config" in err["loc"] and (
                kind in _PLACEHOLDERS or err["type"] == "value_error"
            ):
                _set(work, err["loc"], _PLACEHOLDERS.get(kind, 0.0))
                deferred = True
        if not deferred:
            break
    problems = [problem_from_error(file, e, located, base) for e in errors]
    # "unknown key 'comand'; did you mean 'command'?" already says the key is missing.
    suggested = {(p.position, m) for p in problems for m in re.findall(r"did you mean '(\w+)'",
                                                                          p.message)}
    return None, [p for p in problems if not (
        p.message.startswith("missing required key")
        and any(p.message.endswith(f"{k!r}") for pos, k in suggested if pos == p.position))]


def _error_locs(body: dict) -> list[tuple]:
    try:
        Pipeline.model_validate(body)
    except ValidationError as exc:
        return [tuple(e["loc"]) for e in exc.errors()]
    return []


def _quiet_validate(body: dict) -> Pipeline | None:
    try:
        return Pipeline.model_validate(body)
    except ValidationError:
        return None


def _patch_broken_steps(body: dict, locs: list[tuple]) -> dict | None:
    """A copy of ``body`` with every step that has an error replaced by a placeholder that
    keeps its name, id and needs; None when an error lies outside any step."""
    patched = copy.deepcopy(body)
    for loc in locs:
        cut = next((i for i in range(len(loc) - 1)
                    if loc[i] in ("steps", "finally", "finally_") and isinstance(loc[i + 1], int)),
                   None)
        if cut is None:
            return None
        parent: Any = patched
        for part in loc[:cut]:
            if _has(parent, part):
                parent = parent[part]
        key = "finally" if loc[cut] == "finally_" else loc[cut]
        steps = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(steps, list) or not _has(steps, loc[cut + 1]):
            return None
        old = steps[loc[cut + 1]]
        keep = {k: old[k] for k in ("name", "id", "needs")
                if isinstance(old, dict) and isinstance(old.get(k), (str, list))}
        steps[loc[cut + 1]] = {**keep, "type": "command", "config": {"command": "true"}}
    return patched


def _set(data: Any, loc: tuple, value: Any) -> None:
    target = data
    for part in loc[:-1]:
        if _has(target, part):  # parts that are not in the data are union tags
            target = target[part]
    if _has(target, loc[-1]):
        target[loc[-1]] = value


def _has(container: Any, key: Any) -> bool:
    if isinstance(container, dict):
        return key in container
    return isinstance(container, list) and isinstance(key, int) and 0 <= key < len(container)


__all__ = ["load_plan", "plan_from_bytes", "derive_id", "STEP_TYPES"]
