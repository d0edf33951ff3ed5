"""Turn pydantic validation errors into user messages at the right position of the file."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from ansflow.spec.models import STEP_MODELS, Pipeline
from ansflow.spec.yaml_loader import Located, Path, Problem
from ansflow.steptypes import STEP_TYPES

_KIND = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
    "list": "a list", "dict": "a mapping", "model": "a mapping",
}


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' did you mean ...?' suffix, or ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def data_path(loc: tuple[Any, ...], data: Any) -> Path:
    """The path into the YAML data of a pydantic loc (union tags and wrappers dropped)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            path.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            path.append(part)
            current = current[part]
        elif part == "finally_" and isinstance(current, dict) and "finally" in current:
            path.append("finally")
            current = current["finally"]
    return tuple(path)


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional / Union / Annotated / list / dict."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out.extend(_unwrap(arg))
        return out
    return [annotation]


def model_at(loc: tuple[Any, ...], root: type[BaseModel] = Pipeline) -> type[BaseModel] | None:
    """The model class that validated the mapping at ``loc`` (for key suggestions)."""
    candidates: list[Any] = [root]
    for part in loc:
        nxt: list[Any] = []
        for cand in candidates:
            origin = typing.get_origin(cand)
            if isinstance(part, int) and origin is list:
                nxt.extend(_unwrap(typing.get_args(cand)[0]))
            elif isinstance(part, str) and part in STEP_MODELS and cand in STEP_MODELS.values():
                nxt.append(STEP_MODELS[part])
            elif isinstance(cand, type) and issubclass(cand, BaseModel):
                for name, field in cand.model_fields.items():
                    if part in (name, field.alias):
                        nxt.extend(_unwrap(field.annotation))
            elif isinstance(part, str) and origin is dict:
                nxt.extend(_unwrap(typing.get_args(cand)[1]))
        if any(c in STEP_MODELS.values() for c in nxt) and isinstance(part, int):
            nxt = [c for c in nxt if c in STEP_MODELS.values()] or nxt
        candidates = list(dict.fromkeys(nxt))
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _field_names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem_from_error(file: str, err: ErrorDetails, located: Located, base: Path) -> Problem:
    """One pydantic error as a Problem at the offending key or value."""
    loc = tuple(err["loc"])
    path = base + data_path(loc, _at(located.data, base))
    kind = err["type"]
    key = loc[-1] if loc else None
    if kind == "extra_forbidden":
        model = model_at(loc[:-1])
        hint = suggest(str(key), _field_names(model)) if model else ""
        if not hint and model:
            hint = f" (known keys: {', '.join(_field_names(model))})"
        return Problem(file, located.key_pos(path), f"unknown key {key!r}{hint}")
    if kind == "missing":
        return Problem(file, located.value_pos(path), f"missing required key {key!r}")
    if kind == "union_tag_invalid":
        tag = err.get("ctx", {}).get("tag")
        pos = located.value_pos(path + ("type",))
        return Problem(file, pos, f"unknown step type {tag!r}{suggest(str(tag), STEP_TYPES)} "
                                  f"(step types: {', '.join(STEP_TYPES)})")
    if kind == "union_tag_not_found":
        return Problem(file, located.value_pos(path),
                       f"step has no 'type' (one of: {', '.join(STEP_TYPES)})")
    if kind == "string_pattern_mismatch" and key == "id":
        return Problem(file, located.value_pos(path),
                       f"id {err['input']!r} must start with a letter or _ and hold only "
                       "letters, digits, _ and -")
    what = _KIND.get(kind.split("_")[0])
    if kind.endswith(("_type", "_parsing")) and what:
        where = f"{key!r}: " if isinstance(key, str) else ""
        return Problem(file, located.value_pos(path),
                       f"{where}expected {what}, got {_describe(err['input'])}")
    msg = err["msg"].removeprefix("Value error, ")
    where = f"{key!r}: " if isinstance(key, str) and kind != "value_error" else ""
    if kind == "value_error" and isinstance(key, str) and not isinstance(err["input"], dict):
        where = f"{key!r}: "
    return Problem(file, located.value_pos(path), f"{where}{msg}")


def _at(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data
