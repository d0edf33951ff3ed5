"""Resolve a validated pipeline model into a Plan: step ids, the stage and step graphs, matrices,
defaults, and the checks that need the whole plan."""

from __future__ import annotations

import copy
import re
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from ansflow.plan import Plan, PlannedStage, PlannedStep, find_cycle, stage_step_deps
from ansflow.spec.matrix import expand_step
from ansflow.spec.messages import suggest
from ansflow.spec.models import Pipeline
from ansflow.spec.plan_checks import (
    ansible_env,
    not_implemented,
    paths_outside,
    pod_without_image_or_cluster,
    remote_without_host,
)
from ansflow.spec.references import check_templates
from ansflow.spec.yaml_loader import Located, Path, Problem


class _StageRow(NamedTuple):
    """A stage as written, or the one implicit stage of a pipeline with `steps:`."""

    name: str
    needs: list[str] | None
    parallel: bool
    steps: list[Any]
    env: dict[str, str]
    path: Path


class _Entry(NamedTuple):
    """A step, where it is written, and the stage (or `finally`) it belongs to."""

    step: Any
    path: Path
    stage: str
    env: dict[str, str]


def resolve_plan(pipeline: Pipeline, body: dict, located: Located, file: str, base: Path,
                 workspace: str) -> tuple[Plan, list[Problem]]:
    """The plan of a validated pipeline and the problems found on the way; ``body`` is the
    validated data (a step's config is taken from it as written), ``base`` its path in the
    file."""
    rows = _stage_rows(pipeline, base)
    entries = _step_entries(pipeline, rows, base)
    taken, problems = _explicit_ids(entries, located, file)
    if problems:  # duplicate ids make every later graph check meaningless
        return Plan(name=pipeline.name, type=pipeline.type, source=file,
                    workspace=workspace), problems
    ids = _assign_ids(entries, taken)
    id_of = {id(e.step): sid for e, sid in zip(entries, ids)}
    path_of = {sid: e.path for e, sid in zip(entries, ids)}

    plan = _empty_plan(pipeline, file, workspace)
    problems.extend(_plan_stages(plan, rows, id_of, located, file))
    cycle = _stage_cycle(plan, rows, located, file, base)
    if cycle:
        problems.append(cycle)
        return plan, problems

    step_needs, wrong = _step_needs(entries, id_of, ids, plan, located, file)
    problems.extend(wrong)
    deps = stage_step_deps(plan.stages, step_needs)
    cycle = _step_cycle(deps, path_of, located, file)
    if cycle:
        problems.append(cycle)
        return plan, problems

    for entry in entries:
        sid = id_of[id(entry.step)]
        planned = _planned_step(pipeline, entry, sid, deps.get(sid, step_needs.get(sid, [])),
                                body, base)
        problems.extend(_add_step(plan, planned, entry, path_of, located, file))
    _fill_stages(plan, pipeline)
    deps = _expand_matrix_needs(plan, deps)
    problems.extend(_apply_defaults_and_check(plan, located, file, path_of, deps))
    return plan, problems


def _stage_rows(pipeline: Pipeline, base: Path) -> list[_StageRow]:
    if pipeline.stages is not None:
        return [_StageRow(s.name, s.needs, s.parallel, s.steps, s.env, base + ("stages", i))
                for i, s in enumerate(pipeline.stages)]
    return [_StageRow("main", None, False, pipeline.steps or [], {}, base)]


def _step_entries(pipeline: Pipeline, rows: list[_StageRow], base: Path) -> list[_Entry]:
    entries = [_Entry(step, row.path + ("steps", j), row.name, row.env)
               for row in rows for j, step in enumerate(row.steps)]
    entries.extend(_Entry(step, base + ("finally", j), "finally", {})
                   for j, step in enumerate(pipeline.finally_))
    return entries


def _explicit_ids(entries: list[_Entry], located: Located,
                  file: str) -> tuple[set[str], list[Problem]]:
    """The ids written in the file, taken first so that derived ids never steal them."""
    taken: set[str] = set()
    problems: list[Problem] = []
    for entry in entries:
        if entry.step.id is not None:
            if entry.step.id in taken:
                problems.append(Problem(file, located.value_pos(entry.path + ("id",)),
                                        f"duplicate step id {entry.step.id!r}"))
            taken.add(entry.step.id)
    return taken, problems


def _assign_ids(entries: list[_Entry], taken: set[str]) -> list[str]:
    ids: list[str] = []
    for entry in entries:
        sid = entry.step.id or derive_id(entry.step.name, entry.step.type, taken)
        taken.add(sid)
        ids.append(sid)
    return ids


def derive_id(name: str | None, step_type: str, taken: set[str]) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", (name or "").lower()).strip("_")
    if not slug or slug[0].isdigit() or len(slug) > 40:
        slug = step_type
    candidate, n = slug, 2
    while candidate in taken:
        candidate = f"{slug}_{n}"
        n += 1
    return candidate


def _empty_plan(pipeline: Pipeline, file: str, workspace: str) -> Plan:
    plan = Plan(
        name=pipeline.name, type=pipeline.type, source=file, workspace=workspace,
        description=pipeline.description,
        variables={k: v.model_dump() for k, v in pipeline.variable_specs().items()},
        schedule=_schedule(pipeline),
        env=dict(pipeline.env), env_passthrough=list(pipeline.env_passthrough),
        defaults=pipeline.defaults.model_dump(),
        timeout=pipeline.timeout, max_parallel=pipeline.max_parallel,
        git_source=pipeline.source.model_dump() if pipeline.source else None,
        on_push=_on_push(pipeline),
    )
    if pipeline.workspace:
        plan.workspace = str((FsPath(workspace) / pipeline.workspace).resolve())
    return plan


def _on_push(pipeline: Pipeline) -> dict | None:
    push = pipeline.on.push if pipeline.on else None
    if push is None:
        return None
    repository = push.repository or (pipeline.source.git if pipeline.source else None)
    return {"repository": repository, "filters": push.filters()}


def _schedule(pipeline: Pipeline) -> dict | None:
    if hasattr(pipeline.schedule, "model_dump"):
        return pipeline.schedule.model_dump()
    return {"cron": pipeline.schedule, "timezone": "UTC"} if pipeline.schedule else None


def _plan_stages(plan: Plan, rows: list[_StageRow], id_of: dict[int, str], located: Located,
                 file: str) -> list[Problem]:
    """Adds the stages to ``plan``; returns the problems of their names and needs."""
    names = [row.name for row in rows]
    known = set(names)
    seen: set[str] = set()
    problems: list[Problem] = []
    for i, row in enumerate(rows):
        if row.name in seen:
            problems.append(Problem(file, located.value_pos(row.path + ("name",)),
                                    f"duplicate stage name {row.name!r}"))
        seen.add(row.name)
        # Without `needs`, a stage follows the one written before it.
        needs = row.needs if row.needs is not None else ([names[i - 1]] if i else [])
        for k, need in enumerate(row.needs or []):
            if need not in known:
                problems.append(Problem(file, located.value_pos(row.path + ("needs", k)),
                                        f"stage {row.name!r} needs unknown stage {need!r}"
                                        f"{suggest(need, names)}"))
        plan.stages.append(PlannedStage(row.name, [n for n in needs if n in known],
                                        row.parallel, [id_of[id(s)] for s in row.steps]))
    return problems


def _stage_cycle(plan: Plan, rows: list[_StageRow], located: Located, file: str,
                 base: Path) -> Problem | None:
    cycle = find_cycle({s.name: s.needs for s in plan.stages})
    if not cycle:
        return None
    at = base + ("stages", [row.name for row in rows].index(cycle[0]), "needs")
    return Problem(file, located.value_pos(at), f"stages form a cycle: {' -> '.join(cycle)}")


def _step_needs(entries: list[_Entry], id_of: dict[int, str], ids: list[str], plan: Plan,
                located: Located, file: str) -> tuple[dict[str, list[str]], list[Problem]]:
    """Each step's valid `needs`, and the problems of the others."""
    main_ids = {sid for st in plan.stages for sid in st.steps}
    known = set(ids)
    step_needs: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for entry in entries:
        sid = id_of[id(entry.step)]
        for k, need in enumerate(entry.step.needs):
            message = _wrong_need(sid, need, ids, known, main_ids)
            if message:
                problems.append(Problem(file, located.value_pos(entry.path + ("needs", k)),
                                        message))
        step_needs[sid] = [n for n in entry.step.needs if n in known and n != sid]
    return step_needs, problems


def _wrong_need(sid: str, need: str, ids: list[str], known: set[str],
                main_ids: set[str]) -> str | None:
    if need == sid:
        return f"step {sid!r} needs itself"
    if need not in known:
        return f"step {sid!r} needs unknown step {need!r}{suggest(need, ids)}"
    if (need in main_ids) != (sid in main_ids):
        return f"step {sid!r}: `needs` cannot cross between the main steps and `finally`"
    return None


def _step_cycle(deps: dict[str, list[str]], path_of: dict[str, Path], located: Located,
                file: str) -> Problem | None:
    cycle = find_cycle(deps)
    if not cycle:
        return None
    return Problem(file, located.value_pos(path_of[cycle[0]]),
                   f"steps form a cycle: {' -> '.join(cycle)}")


def _planned_step(pipeline: Pipeline, entry: _Entry, sid: str, needs: list[str], body: dict,
                  base: Path) -> PlannedStep:
    step, step_defaults = entry.step, pipeline.defaults.step
    return PlannedStep(
        id=sid, name=step.name or sid, type=step.type, stage=entry.stage,
        config=copy.deepcopy(_raw_config(body, entry.path, base)),
        needs=needs, when=step.when,
        retries=step.retries or (step_defaults.retries or 0),
        retry_delay=step.retry_delay or (step_defaults.retry_delay or 0.0),
        retry_on_exit_codes=step.retry_on_exit_codes,
        timeout=step.timeout if step.timeout is not None else step_defaults.timeout,
        allow_failure=step.allow_failure, env={**entry.env, **step.env},
        runs_on=step.runs_on or _runs_on_default(pipeline.type),
        is_finally=entry.stage == "finally",
    )


def _add_step(plan: Plan, planned: PlannedStep, entry: _Entry, path_of: dict[str, Path],
              located: Located, file: str) -> list[Problem]:
    """Checks the step and adds it to ``plan``: as its combinations when it has a matrix."""
    path = entry.path
    problems = [*not_implemented(planned, located, file, path),
                *paths_outside(planned, located, file, path, plan.workspace),
                *ansible_env(planned, located, file, path)]
    if entry.step.matrix is not None:
        combos, info, wrong = expand_step(planned, entry.step.matrix, located, file, path)
        problems.extend(wrong)
        if info is not None:
            plan.matrices[planned.id] = info
            for combo in combos:
                path_of[combo.id] = path
            plan.steps.extend(combos)
            return problems
        planned.matrix = {}  # reported: go on with the step itself for the other checks
    (plan.finally_steps if planned.is_finally else plan.steps).append(planned)
    return problems


def _fill_stages(plan: Plan, pipeline: Pipeline) -> None:
    """The stages' step lists as planned: the one stage of a pipeline with `steps:` gets every
    main step, and a matrix step is replaced by its combinations."""
    if pipeline.stages is None:
        plan.stages[0].steps = [s.id for s in plan.steps]
    elif plan.matrices:
        for st in plan.stages:
            st.steps = _expand_ids(st.steps, plan.matrices)


def _expand_matrix_needs(plan: Plan, deps: dict[str, list[str]]) -> dict[str, list[str]]:
    """Waiting for a matrix step is waiting for all its combinations; returns the new deps."""
    if not plan.matrices:
        return deps
    for s in plan.steps:
        s.needs = _expand_ids(s.needs, plan.matrices)
    return {s.id: s.needs for s in plan.steps + plan.finally_steps}


def _apply_defaults_and_check(plan: Plan, located: Located, file: str,
                              path_of: dict[str, Path],
                              deps: dict[str, list[str]]) -> list[Problem]:
    from ansflow.spec.defaults import (  # noqa: PLC0415 - avoids a cycle
        apply_docker_defaults,
        apply_kubernetes_defaults,
        apply_remote_defaults,
        apply_step_defaults,
    )

    problems = list(apply_step_defaults(plan, located, file, path_of, deps))
    apply_docker_defaults(plan)
    apply_remote_defaults(plan)
    apply_kubernetes_defaults(plan)
    problems.extend(remote_without_host(plan, located, file, path_of))
    problems.extend(pod_without_image_or_cluster(plan, located, file, path_of))
    problems.extend(check_templates(plan, located, file, path_of, deps))
    return problems


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
