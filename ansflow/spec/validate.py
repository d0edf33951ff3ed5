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
from ansflow.plan import Plan, PlannedStage, PlannedStep, find_cycle, stage_step_deps
from ansflow.spec.matrix import expand_step
from ansflow.spec.messages import problem_from_error, suggest
from ansflow.spec.models import Pipeline
from ansflow.spec.plan_checks import (
    ansible_env,
    not_implemented,
    paths_outside,
    pod_without_image_or_cluster,
    remote_without_host,
)
from ansflow.spec.references import check_templates
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
    plan, more = _resolve(pipeline, body, located, file, base, workspace)
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


def derive_id(name: str | None, step_type: str, taken: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", (name or "").lower()).strip("_")
    if not slug or slug[0].isdigit() or len(slug) > 40:
        slug = step_type
    candidate, n = slug, 2
    while candidate in taken:
        candidate = f"{slug}_{n}"
        n += 1
    return candidate


def _resolve(pipeline: Pipeline, body: dict, located: Located, file: str, base: Path,
             workspace: str) -> tuple[Plan, list[Problem]]:
    problems: list[Problem] = []
    if pipeline.stages is not None:
        raw_stages = [(s.name, s.needs, s.parallel, s.steps, s.env, base + ("stages", i))
                      for i, s in enumerate(pipeline.stages)]
    else:
        raw_stages = [("main", None, False, pipeline.steps or [], {}, base)]
    # Ids: explicit ones first, so derived ids never steal them.
    entries: list[tuple[Any, Path, str, dict]] = []
    for sname, _, _, steps, senv, spath in raw_stages:
        for j, step in enumerate(steps):
            entries.append((step, spath + ("steps", j), sname, senv))
    for j, step in enumerate(pipeline.finally_):
        entries.append((step, base + ("finally", j), "finally", {}))
    taken: set[str] = set()
    for step, path, _, _ in entries:
        if step.id is not None:
            if step.id in taken:
                problems.append(Problem(file, located.value_pos(path + ("id",)),
                                        f"duplicate step id {step.id!r}"))
            taken.add(step.id)
    if problems:  # duplicate ids make every later graph check meaningless
        return Plan(name=pipeline.name, type=pipeline.type, source=file,
                    workspace=workspace), problems
    ids: list[str] = []
    for step, _, _, _ in entries:
        sid = step.id or derive_id(step.name, step.type, taken)
        taken.add(sid)
        ids.append(sid)
    id_of = {id(e[0]): sid for e, sid in zip(entries, ids)}
    path_of = {sid: e[1] for e, sid in zip(entries, ids)}

    plan = Plan(
        name=pipeline.name, type=pipeline.type, source=file, workspace=workspace,
        description=pipeline.description,
        variables={k: v.model_dump() for k, v in pipeline.variable_specs().items()},
        schedule=(pipeline.schedule.model_dump() if hasattr(pipeline.schedule, "model_dump")
                  else ({"cron": pipeline.schedule, "timezone": "UTC"}
                        if pipeline.schedule else None)),
        env=dict(pipeline.env), env_passthrough=list(pipeline.env_passthrough),
        defaults=pipeline.defaults.model_dump(),
        timeout=pipeline.timeout, max_parallel=pipeline.max_parallel,
    )
    if pipeline.workspace:
        plan.workspace = str((FsPath(workspace) / pipeline.workspace).resolve())
    stage_names = [s[0] for s in raw_stages]
    stage_set = set(stage_names)
    seen_stages: set[str] = set()
    for i, (sname, sneeds, parallel, steps, _, spath) in enumerate(raw_stages):
        if sname in seen_stages:
            problems.append(Problem(file, located.value_pos(spath + ("name",)),
                                    f"duplicate stage name {sname!r}"))
        seen_stages.add(sname)
        needs = sneeds if sneeds is not None else ([stage_names[i - 1]] if i else [])
        for k, need in enumerate(sneeds or []):
            if need not in stage_set:
                problems.append(Problem(file, located.value_pos(spath + ("needs", k)),
                                        f"stage {sname!r} needs unknown stage {need!r}"
                                        f"{suggest(need, stage_names)}"))
        plan.stages.append(PlannedStage(sname, [n for n in needs if n in stage_set],
                                        parallel, [id_of[id(s)] for s in steps]))
    cycle = find_cycle({s.name: s.needs for s in plan.stages})
    if cycle:
        at = base + ("stages", stage_names.index(cycle[0]), "needs")
        problems.append(Problem(file, located.value_pos(at),
                                f"stages form a cycle: {' -> '.join(cycle)}"))
        return plan, problems

    main_ids = {sid for st in plan.stages for sid in st.steps}
    id_set = set(ids)
    step_needs: dict[str, list[str]] = {}
    for step, path, sname, _ in entries:
        sid = id_of[id(step)]
        for k, need in enumerate(step.needs):
            if need == sid:
                problems.append(Problem(file, located.value_pos(path + ("needs", k)),
                                        f"step {sid!r} needs itself"))
            elif need not in id_set:
                problems.append(Problem(file, located.value_pos(path + ("needs", k)),
                                        f"step {sid!r} needs unknown step {need!r}"
                                        f"{suggest(need, ids)}"))
            elif (need in main_ids) != (sid in main_ids):
                problems.append(Problem(file, located.value_pos(path + ("needs", k)),
                                        f"step {sid!r}: `needs` cannot cross between the "
                                        "main steps and `finally`"))
        step_needs[sid] = [n for n in step.needs if n in id_set and n != sid]
    deps = stage_step_deps(plan.stages, step_needs)
    cycle = find_cycle(deps)
    if cycle:
        problems.append(Problem(file, located.value_pos(path_of[cycle[0]]),
                                f"steps form a cycle: {' -> '.join(cycle)}"))
        return plan, problems

    from ansflow.spec.defaults import (  # noqa: PLC0415 - avoids a cycle
        apply_docker_defaults,
        apply_kubernetes_defaults,
        apply_remote_defaults,
        apply_step_defaults,
    )

    for step, path, sname, senv in entries:
        sid = id_of[id(step)]
        runs_on = step.runs_on or _runs_on_default(pipeline.type)
        planned = PlannedStep(
            id=sid, name=step.name or sid, type=step.type, stage=sname,
            config=copy.deepcopy(_raw_config(body, path, base)),
            needs=deps.get(sid, step_needs.get(sid, [])), when=step.when,
            retries=step.retries or (pipeline.defaults.step.retries or 0),
            retry_delay=step.retry_delay or (pipeline.defaults.step.retry_delay or 0.0),
            retry_on_exit_codes=step.retry_on_exit_codes,
            timeout=step.timeout if step.timeout is not None else pipeline.defaults.step.timeout,
            allow_failure=step.allow_failure, env={**senv, **step.env}, runs_on=runs_on,
            is_finally=sname == "finally",
        )
        problems.extend(not_implemented(planned, located, file, path))
        problems.extend(paths_outside(planned, located, file, path, plan.workspace))
        problems.extend(ansible_env(planned, located, file, path))
        if step.matrix is not None:
            combos, info, wrong = expand_step(planned, step.matrix, located, file, path)
            problems.extend(wrong)
            if info is None:  # reported: go on with the step itself for the other checks
                planned.matrix = {}
                (plan.finally_steps if planned.is_finally else plan.steps).append(planned)
                continue
            plan.matrices[sid] = info
            for combo in combos:
                path_of[combo.id] = path
            plan.steps.extend(combos)
            continue
        (plan.finally_steps if planned.is_finally else plan.steps).append(planned)
    if pipeline.stages is None:
        plan.stages[0].steps = [s.id for s in plan.steps]
    elif plan.matrices:
        for st in plan.stages:
            st.steps = _expand_ids(st.steps, plan.matrices)
    if plan.matrices:  # waiting for a matrix step is waiting for all its combinations
        for s in plan.steps:
            s.needs = _expand_ids(s.needs, plan.matrices)
        deps = {s.id: s.needs for s in plan.steps + plan.finally_steps}
    problems.extend(apply_step_defaults(plan, located, file, path_of, deps))
    apply_docker_defaults(plan)
    apply_remote_defaults(plan)
    apply_kubernetes_defaults(plan)
    problems.extend(remote_without_host(plan, located, file, path_of))
    problems.extend(pod_without_image_or_cluster(plan, located, file, path_of))
    problems.extend(check_templates(plan, located, file, path_of, deps))
    return plan, problems


def _expand_ids(ids: list[str], matrices: dict[str, dict]) -> list[str]:
    out: list[str] = []
    for sid in ids:
        out.extend(matrices[sid]["combinations"].values() if sid in matrices else [sid])
    return out


def _runs_on_default(pipeline_type: str) -> str:
    return {"docker": "docker", "kubernetes": "kubernetes", "remote": "remote"}.get(
        pipeline_type, "local")


def _raw_config(body: dict, path: Path, base: Path) -> dict:
    node: Any = body
    for part in path[len(base):]:
        node = node[part]
    return node.get("config", {}) if isinstance(node, dict) else {}


__all__ = ["load_plan", "plan_from_bytes", "derive_id", "STEP_TYPES"]
