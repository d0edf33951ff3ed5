"""Static checks of every template in a plan: syntax, sandbox escapes, and names that can
never resolve (unknown variables, steps that do not run before the referencing step)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ansflow.plan import Plan, PlannedStep, ancestors
from ansflow.spec.messages import suggest
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.steptypes import REGISTRY
from ansflow.templating import (
    PIPELINE_KEYS,
    ROOT_NAMES,
    Reference,
    TemplateError,
    condition_source,
    has_template,
    make_environment,
    references,
)

_JINJA_GLOBALS = {"range", "dict", "loop", "namespace", "lipsum", "cycler", "joiner"}
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
    before = ancestors(deps)
    env = make_environment()
    main_ids = {s.id for s in plan.steps}
    types = {s.id: s.type for s in plan.steps + plan.finally_steps}
    for step in plan.steps + plan.finally_steps:
        base = path_of[step.id]
        runs_before = main_ids if step.is_finally else before.get(step.id, set())
        sources: list[tuple[Path, str, bool]] = [
            (base + ("config",) + p, s, False) for p, s in _strings(step.config, ())
        ] + [(base + ("env",) + p, s, False) for p, s in _strings(step.env, ())]
        if isinstance(step.when, str):
            sources.append((base + ("when",), condition_source(step.when), True))
        for path, source, is_expr in sources:
            pos = located.value_pos(path)
            try:
                refs = references(source, expression=is_expr, env=env)
            except TemplateError as exc:
                problems.append(Problem(file, pos, f"step {step.id!r}: {exc}"))
                continue
            for ref in refs:
                message = _check_reference(ref, plan, step, runs_before, types)
                if message:
                    problems.append(Problem(file, pos, f"step {step.id!r}: {message}"))
    return problems


def _check_reference(ref: Reference, plan: Plan, step: PlannedStep,
                     runs_before: set[str], types: dict[str, str]) -> str | None:
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
    if root in ("stage", "step") and key not in ("name", "id"):
        return f"unknown name {ref.dotted!r} ({root} has: name, id)"
    if root == "steps":
        return _check_step_reference(ref, step, runs_before, types)
    return None


def _check_step_reference(ref: Reference, step: PlannedStep, runs_before: set[str],
                          types: dict[str, str]) -> str | None:
    parts = ref.parts
    target_id = parts[1]
    if target_id not in types:
        return f"{ref.dotted!r} names unknown step {target_id!r}{suggest(target_id, list(types))}"
    if target_id not in runs_before:
        return (f"{ref.dotted!r} refers to step {target_id!r}, which does not run before "
                f"step {step.id!r} (add it to `needs` or order the stages)")
    if len(parts) < 3:
        return None
    if parts[2] not in STEP_FIELDS:
        return f"{ref.dotted!r}: a step has {' and '.join(STEP_FIELDS)}{suggest(parts[2], STEP_FIELDS)}"
    if parts[2] == "outputs" and len(parts) >= 4:
        known = REGISTRY[types[target_id]].outputs
        if known is not None and parts[3] not in known:
            return (f"{ref.dotted!r}: a {types[target_id]} step has no output "
                    f"{parts[3]!r}{suggest(parts[3], sorted(known))} "
                    f"(outputs: {', '.join(sorted(known))})")
    return None
