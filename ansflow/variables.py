"""Pipeline variables: defaults from the file, overridden per run, checked against types."""

from __future__ import annotations

import math
import re
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


CONSTRAINTS = ("pattern", "enum", "minLength", "maxLength", "minimum", "maximum")
_STRING_ONLY = ("pattern", "minLength", "maxLength")
_NUMBER_ONLY = ("minimum", "maximum")


def check_declaration(spec: dict[str, Any]) -> None:
    """A variable's constraints make sense for its type, its pattern compiles, and its
    default (when it has one) satisfies them. Raises ValueError."""
    kind = variable_type(spec)
    used = [k for k in CONSTRAINTS if spec.get(k) is not None]
    for key in used:
        if key in _STRING_ONLY and kind not in ("string", None):
            raise ValueError(f"{key} applies to string variables, not {kind_phrase(kind)}")
        if key in _NUMBER_ONLY and kind not in ("integer", "number", None):
            raise ValueError(f"{key} applies to number variables, not {kind_phrase(kind)}")
    if spec.get("pattern") is not None:
        try:
            re.compile(spec["pattern"])
        except re.error as exc:
            raise ValueError(f"pattern {spec['pattern']!r} is not a regular expression: "
                             f"{exc}") from None
    for low, high in (("minLength", "maxLength"), ("minimum", "maximum")):
        if spec.get(low) is not None and spec.get(high) is not None and spec[low] > spec[high]:
            raise ValueError(f"{low} is greater than {high}")
    if spec.get("enum") is not None and kind is not None:
        fits = {"string": lambda v: isinstance(v, str),
                "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                "boolean": lambda v: isinstance(v, bool)}[kind]
        for item in spec["enum"]:
            if not fits(item):
                raise ValueError(f"enum value {item!r} is not {kind_phrase(kind)}")
    if spec.get("default") is not None and used:
        problem = constraint_problem(spec["default"], spec)
        if problem:
            raise ValueError(f"the default {spec['default']!r} {problem}")


def constraint_problem(value: Any, spec: dict[str, Any]) -> str | None:
    """Why ``value`` breaks the variable's constraints (None: it does not)."""
    enum = spec.get("enum")
    if enum is not None and not any(value == e and type(value) is type(e) or
                                    (isinstance(value, (int, float)) and
                                     not isinstance(value, bool) and
                                     isinstance(e, (int, float)) and not isinstance(e, bool)
                                     and value == e) for e in enum):
        return f"is not one of {', '.join(repr(e) for e in enum)}"
    if isinstance(value, str):
        if spec.get("maxLength") is not None and len(value) > spec["maxLength"]:
            return f"is longer than {spec['maxLength']} characters"
        if spec.get("minLength") is not None and len(value) < spec["minLength"]:
            return f"is shorter than {spec['minLength']} characters"
        if spec.get("pattern") is not None and re.search(spec["pattern"], value) is None:
            return f"does not match the pattern {spec['pattern']!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) and (spec.get("minimum") is not None or
                                         spec.get("maximum") is not None):
            return "is not a finite number"
        if spec.get("minimum") is not None and value < spec["minimum"]:
            return f"is less than the minimum {spec['minimum']:g}"
        if spec.get("maximum") is not None and value > spec["maximum"]:
            return f"is greater than the maximum {spec['maximum']:g}"
    return None


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
    for name, value in values.items():
        problem = constraint_problem(value, plan.variables[name]) if value is not None else None
        if problem:
            shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
            raise UsageError(f"variable {name!r}: the value {shown!r} {problem}")
    return values


def parse_var_options(items: list[str]) -> dict[str, str]:
    """`--var K=V` options as a dict. Raises UsageError on a malformed item."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(f"--var expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        # A non-UTF-8 byte from argv arrives as a lone surrogate, which no later stage (the
        # Prefect API, a log, a file) can encode.
        if not _utf8(key):
            raise UsageError(f"--var: the variable name {key[:60]!r} is not valid UTF-8")
        if not _utf8(value):
            raise UsageError(f"variable {key}: the value is not valid UTF-8")
        out[key] = value
    return out


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
