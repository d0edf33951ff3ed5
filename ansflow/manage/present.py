"""How operations show objects (pure): server noise dropped, Secret values redacted, a
unified diff of live vs planned, and markdown that untrusted cluster text cannot break."""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

import yaml

# Fields the server writes on every object: never part of "what would change".
NOISE_FIELDS = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                "selfLink")
# kubectl apply (client-side) keeps the whole applied object here: a Secret's values too.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = "***"
MAX_DIFF_LINES = 2000
MAX_CELL = 300
_BACKTICKS = re.compile(r"`+")


def clean(obj: dict | None) -> dict | None:
    """A copy of ``obj`` without the server's bookkeeping (NOISE_FIELDS, status)."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in NOISE_FIELDS:
            meta.pop(key, None)
    return out


def redact_secret(obj: dict | None, other: dict | None = None, side: str = "") -> dict | None:
    """A copy of a Secret with every value replaced by ``***``; ``*** (<side>)`` where
    ``other`` (the other side of a diff) holds a different value under the same key, so a
    diff shows that a value changes without showing it (as kubectl diff does). The
    last-applied-configuration annotation, which holds the values too, is redacted as well.
    Anything but a Secret is returned as it is."""
    if obj is None or obj.get("kind") != "Secret":
        return obj
    out = copy.deepcopy(obj)
    for section in ("data", "stringData"):
        values = out.get(section)
        if not isinstance(values, dict):
            continue
        theirs = (other or {}).get(section)
        theirs = theirs if isinstance(theirs, dict) else {}
        for key, value in values.items():
            changed = key in theirs and theirs[key] != value
            values[key] = f"{REDACTED} ({side})" if changed and side else REDACTED
    annotations = (out.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = REDACTED
    return out


def to_yaml(obj: Any) -> str:
    """Block-style YAML of plain data, keys in the order the server sent them."""
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=False, allow_unicode=True,
                          width=100)


def object_diff(live: dict | None, planned: dict, *, label: str = "") -> str:
    """A unified diff of ``live`` (None: the object is new) and ``planned`` (the dry-run
    answer), noise dropped and Secret values redacted; "" when they are the same."""
    live, planned = clean(live), clean(planned) or {}
    before = redact_secret(live, planned, "before")
    after = redact_secret(planned, live, "after") or {}
    old = to_yaml(before).splitlines(keepends=True) if before is not None else []
    new = to_yaml(after).splitlines(keepends=True)
    name = label or str((planned.get("metadata") or {}).get("name", "object"))
    lines = list(difflib.unified_diff(old, new, fromfile=f"live/{name}" if live else "/dev/null",
                                      tofile=f"planned/{name}", n=3))
    if len(lines) > MAX_DIFF_LINES:
        cut = len(lines) - MAX_DIFF_LINES
        lines = lines[:MAX_DIFF_LINES] + [f"... {cut} more diff lines not shown\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def fenced(text: str, lang: str = "") -> str:
    """``text`` in a markdown code fence longer than any run of backticks inside it."""
    longest = max((len(m.group(0)) for m in _BACKTICKS.finditer(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}\n"


def cell(value: Any, limit: int = MAX_CELL) -> str:
    """Cluster text for a markdown table cell: one line, bounded, no table breaking."""
    text = "" if value is None else str(value)
    text = "".join(c if c.isprintable() else " " for c in text)
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'")
    text = text.replace("<", "&lt;").replace(">", "&gt;")
    return text if len(text) <= limit else text[:limit] + "..."


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table, every cell through :func:`cell`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
