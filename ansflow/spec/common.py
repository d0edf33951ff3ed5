"""Building blocks shared by the spec models: the strict base model and value types."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not silently coerced across kinds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def require_exactly_one(model: BaseModel, first: str, second: str,
                        message: str | None = None) -> None:
    """Refuse a model that sets both or neither of two alternative fields (a ValueError,
    which pydantic reports at the model)."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(message or f"give exactly one of {first!r} or {second!r}")


def parse_duration(value: Any) -> Any:
    """Seconds from a number or a string like "90", "30s", "5m", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '30s', '5m', '1h'")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):  # a NaN timeout would never fire
            raise ValueError(f"a duration must be a finite number of seconds, not {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not value.strip() or not match or not any(match.groups()):
            raise ValueError(f"{value!r} is not a duration (use seconds or '30s', '5m', '1h30m')")
        hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        return hours * 3600 + minutes * 60 + seconds
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0},
                              {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?h)?\s*"
                                                            r"(\d+(\.\d+)?m)?\s*(\d+(\.\d+)?s?)?\s*$"}],
                    "description": "Seconds, or a string such as '30s', '5m', '1h30m'."}),
]


def _stringify_scalar(value: Any) -> Any:
    # env values written as numbers or booleans in YAML mean their text ("3", "true").
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


EnvValue = Annotated[
    str, BeforeValidator(_stringify_scalar),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
EnvMap = dict[str, EnvValue]
StrOrArgv = str | list[str]
