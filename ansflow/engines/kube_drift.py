"""Drift of an object ansflow applied (pure): a field-level diff between the manifest
k8s_deploy applied and the live object.

What was applied is kept on the object itself, in the annotation ``ansflow.dev/applied``
(the JSON of the manifest, as kubectl keeps ``last-applied-configuration``), so every worker
and every operation sees it with the object. Secrets never get it (their values would be
copied into an annotation).

Only fields the applied manifest sets count (a server default or a field another manager
added is never drift). A field whose value differs is drift when another field manager now
owns it (``metadata.managedFields``) or it is gone; a field ansflow's apply still owns is the
server's normalisation of the applied value (``0.5`` CPU shown as ``500m``), not drift; the
replicas of an object an HPA targets, or that a controller's scale set, are not drift either.
"""

from __future__ import annotations

import json
from typing import Any

APPLIED_ANNOTATION = "ansflow.dev/applied"
MAX_APPLIED_BYTES = 128 * 1024  # annotations may total 256 KiB per object
FIELD_MANAGER = "ansflow"
REPLICAS = "spec.replicas"
# Managers that scale by design (the HPA lives in the controller manager; VPA's updater).
SCALERS = frozenset({"kube-controller-manager", "horizontal-pod-autoscaler", "vpa-updater"})
MAX_FIELDS = 200
MAX_VALUE = 200


def with_applied(obj: dict) -> dict:
    """``obj`` with the annotation keeping its own JSON (a Secret, or a manifest over
    128 KiB, unchanged: no drift is tracked for it)."""
    if obj.get("kind") == "Secret":
        return obj
    body = json.loads(json.dumps(obj))
    meta = body.setdefault("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()
                   if k != APPLIED_ANNOTATION}
    meta.pop("annotations", None)
    if annotations:
        meta["annotations"] = annotations
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    if len(text.encode()) > MAX_APPLIED_BYTES:
        return obj
    meta["annotations"] = {**annotations, APPLIED_ANNOTATION: text}
    return body


def applied_manifest(live: dict) -> dict | None:
    """The manifest ansflow applied, from the live object's annotation (None: none, or not
    a JSON object)."""
    meta = live.get("metadata") if isinstance(live.get("metadata"), dict) else {}
    text = (meta.get("annotations") or {}).get(APPLIED_ANNOTATION)
    if not isinstance(text, str):
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) and isinstance(body.get("metadata"), dict) else None


def _named(items: list) -> bool:
    return bool(items) and all(isinstance(i, dict) and isinstance(i.get("name"), str)
                               for i in items)


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """The leaf paths a manifest sets and their values: ``spec.replicas``,
    ``spec.template.spec.containers[name=web].image`` (lists of named items by name, other
    lists of objects by index, lists of scalars whole)."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):  # an empty object sets no field
        for key, sub in value.items():
            out.update(leaves(sub, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        for index, item in enumerate(value):
            seg = f"[name={item['name']}]" if _named(value) else f"[{index}]"
            out.update(leaves(item, prefix + seg))
    else:
        out[prefix] = value
    return out


def _segment(key: str) -> str:
    if key.startswith("f:"):
        return "." + key[2:]
    if key.startswith("k:"):
        try:
            ident = json.loads(key[2:])
            return "[" + ",".join(f"{k}={v}" for k, v in sorted(ident.items())) + "]"
        except (ValueError, AttributeError):
            return f"[{key[2:]}]"
    if key.startswith(("v:", "i:")):
        return f"[{key[2:]}]"
    return "." + key


def owned_paths(fields_v1: Any, prefix: str = "") -> set[str]:
    """The leaf paths of a managedFields ``fieldsV1`` set (bounded)."""
    paths: set[str] = set()
    if not isinstance(fields_v1, dict):
        return paths
    for key, sub in fields_v1.items():
        if key == ".":
            continue
        path = prefix + _segment(str(key))
        children = {k: v for k, v in sub.items() if k != "."} if isinstance(sub, dict) else {}
        if children:
            paths |= owned_paths(children, path)
        else:
            paths.add(path.lstrip("."))
        if len(paths) > 5000:
            break
    return paths


def managers(live: dict) -> list[tuple[str, str, str, frozenset[str]]]:
    """(manager, operation, subresource, paths) of each managedFields entry."""
    meta = live.get("metadata") if isinstance(live.get("metadata"), dict) else {}
    out = []
    for entry in meta.get("managedFields") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("manager") or ""), str(entry.get("operation") or ""),
                        str(entry.get("subresource") or ""),
                        frozenset(owned_paths(entry.get("fieldsV1")))))
    return out


def _owns(paths: frozenset[str], path: str) -> bool:
    if path in paths:
        return True
    return any(p.startswith((path + ".", path + "[")) or path.startswith((p + ".", p + "["))
               for p in paths)


def _shown(value: Any) -> str:
    if value is _GONE:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "..."


_GONE = object()


def _live_leaves(live: dict, applied: dict[str, Any]) -> dict[str, Any]:
    found = leaves({k: v for k, v in live.items() if k != "status"})
    return {path: found.get(path, _GONE) for path in applied}


def _same(a: Any, b: Any) -> bool:
    return a == b or (not isinstance(a, (dict, list)) and b is not _GONE
                      and not isinstance(b, (dict, list)) and str(a) == str(b))


def diff(applied: dict, live: dict, *, hpa_targeted: bool = False) -> list[dict]:
    """The drift of ``live`` from ``applied``: [{"field", "applied", "live", "manager"}]
    (values shown as bounded text), in field order, at most 200."""
    wanted = leaves({k: v for k, v in applied.items() if k not in ("status",)})
    wanted.pop(f"metadata.annotations.{APPLIED_ANNOTATION}", None)
    now = _live_leaves(live, wanted)
    owners = managers(live)
    out = []
    for path in sorted(wanted):
        expected, actual = wanted[path], now[path]
        if _same(expected, actual):
            continue
        holders = [(m, op, sub) for m, op, sub, paths in owners if _owns(paths, path)]
        others = [(m, sub) for m, op, sub in holders
                  if not (m == FIELD_MANAGER and op == "Apply" and not sub)]
        if path == REPLICAS and (hpa_targeted or any(m in SCALERS for m, _ in others)):
            continue
        if actual is not _GONE and not others:
            continue  # still ansflow's alone: the server's form of the applied value
        manager = others[0][0] if others else "(removed)"
        out.append({"field": path, "applied": _shown(expected), "live": _shown(actual),
                    "manager": manager})
        if len(out) >= MAX_FIELDS:
            break
    return out


def hpa_targets(hpas: list[dict], kind: str, name: str) -> bool:
    """Whether one of ``hpas`` (HorizontalPodAutoscaler objects) scales ``kind``/``name``."""
    for hpa in hpas:
        ref = ((hpa.get("spec") or {}).get("scaleTargetRef") or {}) if isinstance(hpa, dict) \
            else {}
        if ref.get("kind") == kind and ref.get("name") == name:
            return True
    return False


def drift_markdown(rows: list[dict]) -> str:
    """The drift as a markdown table (``|`` and newlines escaped)."""
    if not rows:
        return "No drift: the live object has every field as ansflow applied it.\n"

    def cell(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| field | applied | live | changed by |", "|---|---|---|---|"]
    lines += [f"| {cell(r['field'])} | {cell(r['applied'])} | {cell(r['live'])} | "
              f"{cell(r['manager'])} |" for r in rows]
    return "\n".join(lines) + "\n"
