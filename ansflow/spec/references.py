"""Static checks of every template in a plan: syntax, sandbox escapes, and names that can
never resolve (unknown variables, steps that do not run before the referencing step)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from ansflow.plan import Plan, PlannedStep, RunsBefore
from ansflow.shellquote import shell_fields
from ansflow.spec.messages import suggest
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.stepenv import reachable
from ansflow.steptypes import REGISTRY
from ansflow.templating import (
    GIT_KEYS,
    PIPELINE_KEYS,
    ROOT_NAMES,
    RUN_KEYS,
    Reference,
    TemplateError,
    check_shell_template,
    condition_source,
    has_template,
    make_environment,
    references,
)
from ansflow.yamltemplate import check_yaml_template, yaml_fields

_JINJA_GLOBALS = {"range", "dict", "loop", "namespace", "cycler", "joiner"}
STEP_FIELDS = ("outputs", "status")


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        if has_template(value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, path + (i,))


def check_templates(plan: Plan, located: Located, file: str, path_of: dict[str, Path],
                    deps: dict[str, list[str]]) -> list[Problem]:
    problems: list[Problem] = []
    before = RunsBefore(deps)
    env = make_environment()
    main_ids = {s.id for s in plan.steps}
    types = {s.id: s.type for s in plan.steps + plan.finally_steps}
    # A matrix step is referred to by its own id; it runs before a step when its first
    # combination does (they all have the same needs).
    firsts = {sid: next(iter(m["combinations"].values())) for sid, m in plan.matrices.items()}
    types.update({sid: types[first] for sid, first in firsts.items()})
    # The outputs each step publishes: its type's, or an approval's own declared fields.
    outputs = {s.id: declared_outputs(s.type, s.config) for s in plan.steps + plan.finally_steps}
    outputs.update({sid: outputs[first] for sid, first in firsts.items()})
    checked: set[str] = set()
    for step in plan.steps + plan.finally_steps:
        if step.matrix_of:  # the combinations share their templates: check them once
            if step.matrix_of in checked:
                continue
            checked.add(step.matrix_of)
        base = path_of[step.id]
        runs_before: Callable[[str], bool] = (
            main_ids.__contains__ if step.is_finally else partial(before, later=step.id))
        if firsts:
            runs_before = partial(_via_first, runs_before, firsts)
        shell = shell_fields(step.type, step.config)
        yaml_text = yaml_fields(step.type, step.config)
        sources: list[tuple[Path, str, bool]] = [
            (base + ("config",) + p, s, False) for p, s in _strings(step.config, ())
        ] + [(base + ("env",) + p, s, False) for p, s in _strings(step.env, ())]
        if isinstance(step.when, str):
            sources.append((base + ("when",), condition_source(step.when), True))
        for path, source, is_expr in sources:
            pos = located.value_pos(path)
            try:
                refs = references(source, expression=is_expr, env=env)
                dialect = shell.get(path[len(base) + 1:]) if path[len(base)] == "config" else None
                if dialect:
                    check_shell_template(source, dialect)
                if path[len(base)] == "config" and path[len(base) + 1:] in yaml_text:
                    check_yaml_template(source, str(path[-1]))
            except TemplateError as exc:
                problems.append(Problem(file, pos, f"step {step.matrix_of or step.id!r}: {exc}"))
                continue
            for ref in refs:
                message = (_check_matrix_reference(ref, plan, step) if ref.parts[0] == "matrix"
                           else _check_reference(ref, plan, step, runs_before, types,
                                                 plan.matrices, outputs))
                if message:
                    problems.append(Problem(file, pos, f"step {step.matrix_of or step.id!r}: "
                                                       f"{message}"))
    return problems


def declared_outputs(step_type: str, config: Any) -> frozenset[str] | None:
    """The outputs a step publishes: its type's (None: free-form); an approval's are
    approved, comment and its declared fields."""
    if step_type == "approval":
        fields = config.get("fields") if isinstance(config, dict) else None
        return frozenset(("approved", "comment", *(fields if isinstance(fields, dict) else ())))
    return REGISTRY[step_type].outputs


def _via_first(runs_before: Callable[[str], bool], firsts: dict[str, str],
               target: str) -> bool:
    return runs_before(firsts.get(target, target))


def _check_matrix_reference(ref: Reference, plan: Plan, step: PlannedStep) -> str | None:
    if step.matrix is not None and not step.matrix_of:
        return None  # its `matrix:` itself is wrong, and was reported
    if not step.matrix_of:
        return f"{ref.dotted!r}: this step has no `matrix:` (matrix.* is its combination's values)"
    keys = plan.matrices[step.matrix_of]["keys"]
    if len(ref.parts) >= 2 and ref.parts[1] not in keys:
        return (f"unknown matrix key {ref.dotted!r}{suggest(ref.parts[1], keys)} "
                f"(matrix keys: {', '.join(keys)})")
    return None


def _check_reference(ref: Reference, plan: Plan, step: PlannedStep,
                     runs_before: Callable[[str], bool], types: dict[str, str],
                     matrices: dict[str, dict],
                     outputs: dict[str, frozenset[str] | None]) -> str | None:
    parts = ref.parts
    root = parts[0]
    if root == "<private>":
        return f"access to private attribute {parts[1]!r} is not allowed in a template"
    if root in _JINJA_GLOBALS and len(parts) == 1:
        return None
    if root not in ROOT_NAMES:
        return (f"unknown name {root!r} in a template{suggest(root, ROOT_NAMES)} "
                f"(available: {', '.join(ROOT_NAMES)})")
    if len(parts) < 2:
        return None
    key = parts[1]
    if root == "vars" and key not in plan.variables:
        names = list(plan.variables)
        listing = ", ".join(names) if names else "none are declared"
        return f"unknown variable {ref.dotted!r}{suggest(key, names)} (variables: {listing})"
    if root == "pipeline" and key not in PIPELINE_KEYS:
        return f"unknown name {ref.dotted!r}{suggest(key, PIPELINE_KEYS)} " \
               f"(pipeline has: {', '.join(PIPELINE_KEYS)})"
    if root == "env" and not reachable(key, plan.env_passthrough, [*plan.env, *step.env]):
        return (f"{ref.dotted!r}: steps do not inherit the worker's variable {key!r} (a "
                "worker's environment holds its credentials); declare it under `env:`, or "
                f"pass it through with the pipeline's `env_passthrough: [{key}]` (or the "
                "worker's ANSFLOW_ENV_PASSTHROUGH)")
    if root == "run" and key not in RUN_KEYS:
        return f"unknown name {ref.dotted!r}{suggest(key, RUN_KEYS)} " \
               f"(run has: {', '.join(RUN_KEYS)})"
    if root == "git" and key not in GIT_KEYS:
        return f"unknown name {ref.dotted!r}{suggest(key, GIT_KEYS)} " \
               f"(git has: {', '.join(GIT_KEYS)})"
    if root in ("stage", "step") and key not in ("name", "id"):
        return f"unknown name {ref.dotted!r} ({root} has: name, id)"
    if root == "steps":
        return _check_step_reference(ref, step, runs_before, types, matrices, outputs)
    return None


def _check_step_reference(ref: Reference, step: PlannedStep,
                          runs_before: Callable[[str], bool],
                          types: dict[str, str], matrices: dict[str, dict],
                          outputs: dict[str, frozenset[str] | None]) -> str | None:
    parts = ref.parts
    target_id = parts[1]
    if target_id not in types:
        return f"{ref.dotted!r} names unknown step {target_id!r}{suggest(target_id, list(types))}"
    if not runs_before(target_id):
        return (f"{ref.dotted!r} refers to step {target_id!r}, which does not run before "
                f"step {step.id!r} (add it to `needs` or order the stages)")
    if len(parts) < 3:
        return None
    matrix = matrices.get(target_id)
    if matrix is not None:
        if parts[2] == "outputs":
            return (f"{ref.dotted!r}: step {target_id!r} has a matrix; its outputs are per "
                    f"combination: steps.{target_id}.matrix['<key>'].outputs... (keys: "
                    f"{', '.join(matrix['combinations'])})")
        if parts[2] == "matrix":
            if len(parts) < 4:
                return None
            if parts[3] not in matrix["combinations"]:
                return (f"{ref.dotted!r}: step {target_id!r} has no combination "
                        f"{parts[3]!r}{suggest(parts[3], list(matrix['combinations']))} "
                        f"(combinations: {', '.join(matrix['combinations'])})")
            parts = parts[:1] + parts[3:]  # the rest is as for a step
            if len(parts) < 3:
                return None
    if parts[2] not in STEP_FIELDS:
        return f"{ref.dotted!r}: a step has {' and '.join(STEP_FIELDS)}{suggest(parts[2], STEP_FIELDS)}"
    if parts[2] == "outputs" and len(parts) >= 4:
        known = outputs.get(target_id, REGISTRY[types[target_id]].outputs)
        if known is not None and parts[3] not in known:
            article = "an" if types[target_id][0] in "aeiou" else "a"
            return (f"{ref.dotted!r}: {article} {types[target_id]} step has no output "
                    f"{parts[3]!r}{suggest(parts[3], sorted(known))} "
                    f"(outputs: {', '.join(sorted(known))})")
    return None
