"""A step's `matrix:`: its model and its expansion into combinations (GitHub Actions' rules).

The axes (`python: ["3.11", "3.12"]`) give the cartesian product, the first axis varying
slowest. `exclude` entries remove every product combination they match (all of an entry's
pairs equal; an entry may name only some axes). Each `include` entry is then added to every
combination whose *original* axis values it does not contradict (its other keys are added,
and may overwrite keys an earlier include added); an entry that fits no combination becomes
a combination of its own. `exclude` never removes what `include` added.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

MatrixValue = str | int | float | bool
MAX_COMBINATIONS = 256  # GitHub Actions' cap per matrix
KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = ("include", "exclude", "max_parallel", "fail_fast")


class Matrix(BaseModel):
    """Run the step once per combination of the axes' values (GitHub Actions' semantics)."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True,
        json_schema_extra={"propertyNames": {"pattern": KEY_PATTERN.pattern}},
    )
    __pydantic_extra__: dict[str, list[MatrixValue]] = Field(init=False)  # the axes

    include: list[dict[str, MatrixValue]] = Field(
        default_factory=list,
        description="Combinations to extend (extra keys) or add (when they fit none).")
    exclude: list[dict[str, MatrixValue]] = Field(
        default_factory=list, description="Combinations to remove (partial matches too).")
    max_parallel: int | None = Field(
        None, ge=1, le=MAX_COMBINATIONS,
        description="At most this many combinations run at once (default: all).")
    fail_fast: bool = Field(
        True, description="A failing combination cancels the combinations still pending or "
                          "running (default true, as GitHub).")

    @model_validator(mode="after")
    def _axes(self) -> Matrix:
        for key, values in self.axes().items():
            if not KEY_PATTERN.match(key):
                raise ValueError(f"matrix key {key!r} is not a name (letters, digits, _)")
            if not values:
                raise ValueError(f"matrix axis {key!r} has no values")
        for entry in self.include + self.exclude:
            for key in entry:
                if not KEY_PATTERN.match(key):
                    raise ValueError(f"matrix key {key!r} is not a name (letters, digits, _)")
        return self

    def axes(self) -> dict[str, list[MatrixValue]]:
        return dict(self.__pydantic_extra__ or {})


@dataclass
class Combination:
    key: str  # "python=3.11,os=a": how templates address it
    values: dict[str, MatrixValue]


def text(value: Any) -> str:
    """A matrix value as templates and names show it (YAML's spelling of booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    return text(a) == text(b)  # "3.11" matches 3.11, as in GitHub's comparisons


def expand(matrix: Matrix) -> list[Combination]:
    """The combinations of ``matrix``, in run order (may be empty; the caller says so)."""
    axes = matrix.axes()
    names = list(axes)
    product = ([dict(zip(names, values)) for values in itertools.product(*axes.values())]
               if names else [])
    kept = [c for c in product
            if not any(all(k in c and _same(c[k], v) for k, v in entry.items())
                       for entry in matrix.exclude)]
    combos = [dict(c) for c in kept]
    added: list[dict[str, Any]] = []
    for entry in matrix.include:
        fits = False
        for combo, original in zip(combos, kept):
            if all(_same(original[k], v) for k, v in entry.items() if k in original):
                combo.update({k: v for k, v in entry.items() if k not in original})
                fits = True
        if not fits:
            added.append(dict(entry))
    # A product combination is addressed by its axis values (what include adds does not
    # change its key); a combination include added, by all of its values.
    return [Combination(key=_key(c, names), values=c) for c in combos] + [
        Combination(key=_key(c, list(c)), values=c) for c in added]


def _key(values: dict[str, Any], keys: list[str]) -> str:
    return ",".join(f"{k}={text(values[k])}" for k in keys)


def problems(matrix: Matrix) -> list[tuple[tuple, str]]:
    """What is wrong with ``matrix`` as (path under `matrix:`, message) pairs."""
    found: list[tuple[tuple, str]] = []
    axes = matrix.axes()
    for i, entry in enumerate(matrix.exclude):
        if not entry:
            found.append((("exclude", i), "an empty exclude entry would remove everything"))
        for key in entry:
            if key not in axes:
                found.append((("exclude", i, key), f"exclude names {key!r}, which is not a "
                              f"matrix axis (axes: {', '.join(axes) or 'none'})"))
    for i, entry in enumerate(matrix.include):
        if not entry:
            found.append((("include", i), "an empty include entry adds nothing"))
    if found:
        return found
    combos = expand(matrix)
    if not combos:
        found.append(((), "the matrix has no combinations (no axes or include entries, or "
                          "exclude removed them all)"))
    elif len(combos) > MAX_COMBINATIONS:
        found.append(((), f"the matrix has {len(combos)} combinations; at most "
                          f"{MAX_COMBINATIONS} are allowed"))
    keys = [c.key for c in combos]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        found.append((("include",), f"include adds a combination twice: {dupes[0]}"))
    return found


def all_keys(combos: list[Combination]) -> list[str]:
    """Every key any combination has, in first-seen order (`matrix.<key>` may use them)."""
    seen: dict[str, None] = {}
    for combo in combos:
        seen.update(dict.fromkeys(combo.values))
    return list(seen)


def expand_step(planned: Any, matrix: Matrix, located: Any, file: str,
                path: tuple) -> tuple[list[Any], dict[str, Any] | None, list[Any]]:
    """``planned`` (a PlannedStep with a matrix) as one PlannedStep per combination, the
    plan's record of the matrix, and the problems (as spec Problems at their positions)."""
    from ansflow.plan import PlannedStep  # noqa: PLC0415 - keeps this module light for models
    from ansflow.spec.yaml_loader import Problem  # noqa: PLC0415

    base = path + ("matrix",)

    def at(sub: tuple) -> Any:
        for cut in range(len(sub), -1, -1):
            if base + sub[:cut] in located.values:
                return located.value_pos(base + sub[:cut])
        return located.value_pos(path)

    if planned.is_finally:
        return [], None, [Problem(file, at(()), f"step {planned.id!r}: `matrix` is not "
                                                "supported on `finally` steps")]
    found = problems(matrix)
    if found:
        return [], None, [Problem(file, at(sub), f"step {planned.id!r}: {message}")
                          for sub, message in found]
    combos = expand(matrix)
    steps = []
    for n, combo in enumerate(combos, 1):
        shown = ", ".join(f"{k}={text(v)}" for k, v in combo.values.items())
        steps.append(PlannedStep(**{
            **vars(planned), "id": f"{planned.id}.{n}", "name": f"{planned.name} ({shown})",
            "config": copy.deepcopy(planned.config), "needs": list(planned.needs),
            "env": dict(planned.env), "matrix": dict(combo.values), "matrix_key": combo.key,
            "matrix_of": planned.id}))
    info = {"name": planned.name, "keys": all_keys(combos),
            "combinations": {c.key: s.id for c, s in zip(combos, steps)},
            "fail_fast": matrix.fail_fast, "max_parallel": matrix.max_parallel}
    return steps, info, []
