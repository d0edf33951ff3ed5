"""The `condition:` of a k8s_wait step, parsed (pure): checked by `ansflow validate` and
used by the wait itself."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class WaitCondition:
    """A parsed `condition:` of k8s_wait."""

    mode: str  # rollout | ready | complete | deleted | condition | jsonpath
    # condition type, or the dotted jsonpath; for rollout, AFTER_ROLLBACK (see there)
    name: str = ""
    value: str | None = None  # expected value (None: any non-empty for jsonpath, "true" else)


_JSONPATH_RE = re.compile(r"^\{\s*\.?([^{}]*)\}$")


def parse_condition(text: str) -> WaitCondition:
    """Parse `available|rollout|ready|complete|deleted|condition=T[=V]|jsonpath={expr}[=V]`.

    Raises:
        ValueError: the text is none of these (the message lists what is accepted).
    """
    raw = text.strip()
    low = raw.lower()
    if low in ("available", "rollout"):
        return WaitCondition("rollout")
    if low in ("ready", "complete", "deleted", "delete"):
        return WaitCondition("deleted" if low == "delete" else low)
    if low.startswith("condition="):
        rest = raw[len("condition="):]
        name, _, value = rest.partition("=")
        if not name:
            raise ValueError(f"condition {text!r} names no condition type")
        return WaitCondition("condition", name, value or "true")
    if low.startswith("jsonpath="):
        rest = raw[len("jsonpath="):].strip("'\"")
        expr, sep, value = rest.partition("}=")
        expr = expr + "}" if sep else expr
        match = _JSONPATH_RE.match(expr.strip())
        if not match or not match.group(1).strip():
            raise ValueError(f"jsonpath {expr!r}: write it as {{.status.phase}}")
        return WaitCondition("jsonpath", match.group(1).strip(), value if sep else None)
    raise ValueError(f"unknown condition {text!r}: use available, rollout, ready, complete, "
                     "deleted, condition=TYPE[=VALUE] or jsonpath={.path}[=VALUE]")
