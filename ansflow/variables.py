"""Pipeline variables: defaults from the file, overridden per run, checked against types."""

from __future__ import annotations

from typing import Any

from ansflow.errors import UsageError
from ansflow.plan import Plan

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def variable_type(spec: dict[str, Any]) -> str | None:
    """The declared type, else the type of the default (None: any)."""
    if spec.get("type"):
        return spec["type"]
    default = spec.get("default")
    if isinstance(default, bool):
        return "boolean"
    if isinstance(default, int):
        return "integer"
    if isinstance(default, float):
        return "number"
    if isinstance(default, str):
        return "string"
    return None


def coerce(name: str, value: Any, kind: str | None) -> Any:
    """``value`` as ``kind``; strings from the command line are parsed. Raises UsageError."""
    try:
        if kind == "integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind == "number":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind == "string":
            if isinstance(value, (dict, list)):
                raise ValueError
            return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        raise UsageError(f"variable {name!r} must be {kind_phrase(kind)}, got {value!r}") from None
    return value


def kind_phrase(kind: str | None) -> str:
    return {"integer": "an integer", "number": "a number", "boolean": "true or false",
            "string": "a string"}.get(kind or "", "a value")


def resolve_variables(plan: Plan, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The run's variables: defaults, then overrides. Unknown names are errors."""
    values = {name: spec.get("default") for name, spec in plan.variables.items()}
    unknown = [k for k in (overrides or {}) if k not in plan.variables]
    if unknown:
        known = ", ".join(plan.variables) or "none are declared"
        raise UsageError(f"unknown variable(s) {', '.join(map(repr, unknown))} for pipeline "
                         f"{plan.name!r} (variables: {known})")
    for name, value in (overrides or {}).items():
        values[name] = coerce(name, value, variable_type(plan.variables[name]))
    return values


def parse_var_options(items: list[str]) -> dict[str, str]:
    """`--var K=V` options as a dict. Raises UsageError on a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"--var expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value
    return out
