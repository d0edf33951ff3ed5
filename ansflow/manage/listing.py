"""The read-only operations `list` and `get`: the objects of any kind in a namespace (or in
all of them, or by label selector) with their health, and one object as JSON; thin wrappers
over the k8s_list / k8s_get step types (same checks, same discovery, same results). A
Secret's values are never shown: its key names only."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.present import cell, fenced, to_yaml
from ansflow.manage.workloads import run_executor
from ansflow.runtime.base import StepContext
from ansflow.runtime.k8s_session import ClusterSession
from ansflow.spec.steps_k8s import K8sGetConfig, K8sListConfig
from ansflow.tasks.k8s_get import execute_k8s_get
from ansflow.tasks.k8s_list import execute_k8s_list

MAX_ROWS = 500  # rows of the list artifact
MAX_YAML_LINES = 400
_MD_INLINE = re.compile(r"([\[\]()*_!~#])")


def md_cell(value: Any) -> str:
    """A table cell (``present.cell``: one line, bounded, pipes and HTML escaped) in which
    links, images and emphasis from cluster text stay text."""
    text = _MD_INLINE.sub(r"\\\1", cell(value))
    return re.sub(r"(?i)(://|www\.)", lambda m: m.group(1).replace("/", "\\/")
                  .replace(".", "\\."), text)


def age(created: str, now: datetime | None = None) -> str:
    """kubectl's short age of an RFC 3339 creation time ("" when unknown)."""
    try:
        when = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return ""
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - when).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (1 if unit == "y" else 2):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_markdown(items: list[dict], title: str, truncated: bool,
                  now: datetime | None = None) -> str:
    """The list artifact: one row per object (the least healthy first), bounded."""
    order = {"Degraded": 0, "Missing": 1, "Progressing": 2, "Unknown": 3, "Suspended": 4,
             "Healthy": 5}
    ranked = sorted(items, key=lambda i: (order.get(i.get("health"), 6), i.get("namespace"),
                                          i.get("name")))
    header = ["namespace", "name", "health", "message", "age", "ready / phase", "details"]
    rows = []
    for i in ranked[:MAX_ROWS]:
        details = i.get("images") or i.get("keys") or i.get("type") or ""
        if isinstance(details, list):
            details = ", ".join(str(d) for d in details)
        rows.append([i.get("namespace") or "-", i.get("name"), i.get("health"),
                     i.get("health_message"), age(i.get("created") or "", now),
                     i.get("ready") or i.get("phase") or "", details])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in rows]
    body = "\n".join(lines)
    more = len(items) - min(len(items), MAX_ROWS)
    notes = []
    if more:
        notes.append(f"{more} more objects are in the run's `items` output.")
    if truncated:
        notes.append("The listing stopped at its limit: more objects exist.")
    return f"## {md_cell(title)}\n\n{body}\n" + ("\n" + " ".join(notes) + "\n" if notes else "")


@register("list", read_only=True)
def list_(ctx: StepContext, session: ClusterSession, *, resource_type: str = "pod",
          label_selector: str | None = None, all_namespaces: bool = False,
          limit: int = 500) -> OperationResult:
    """List the objects of a kind with their health (as `kubectl get`): in the namespace,
    or in all of them; by label selector. Changes nothing; of a Secret, key names only.

    Args:
        resource_type: Any kind the cluster serves: pod, deployment, service, configmap,
            secret, namespace, node, jobs.batch, a custom resource's plural or short name...
        label_selector: Only objects matching it, e.g. app=web,tier!=db.
        all_namespaces: List in every namespace (the namespace field is then ignored).
        limit: At most this many objects (1 to 5000).
    """
    outputs = run_executor(execute_k8s_list, ctx, session, K8sListConfig, "list",
                           resource_type=resource_type, label_selector=label_selector,
                           all_namespaces=all_namespaces, limit=limit).outputs
    items = json.loads(outputs["items"])
    namespace = None if all_namespaces else session.namespace
    kind = items[0]["kind"] if items else str(resource_type)
    what = f"{outputs['count']} {resource_type}" + (
        f" matching {label_selector}" if label_selector else "")
    where = " in all namespaces" if all_namespaces else (
        f" in namespace {namespace}" if namespace else "")
    truncated = outputs["truncated"] == "true"
    counts: dict[str, int] = {}
    for i in items:
        counts[i["health"]] = counts.get(i["health"], 0) + 1
    by_health = ", ".join(f"{n} {h}" for h, n in sorted(counts.items()))
    return OperationResult(
        ObjectRef(session.name, kind, str(label_selector or resource_type), namespace),
        f"listed {what}{where} on cluster {session.name!r}"
        + (f": {by_health}" if by_health else ""),
        {k: outputs[k] for k in ("count", "names", "truncated")},
        markdown=ctx.masker(list_markdown(items, f"{what}{where} (cluster {session.name})",
                                          truncated)),
        changed=False)


@register("get", read_only=True)
def get(ctx: StepContext, session: ClusterSession, *, resource_type: str = "deployment",
        resource_name: str) -> OperationResult:
    """Show one object of any kind (as `kubectl get -o yaml`) and its health. Changes
    nothing; of a Secret, its key names only (never a value).

    Args:
        resource_type: Any kind the cluster serves: deployment, pod, service, configmap,
            secret, node, namespace, jobs.batch, a custom resource's plural or short name...
        resource_name: The object's name.
    """
    outputs = run_executor(execute_k8s_get, ctx, session, K8sGetConfig, "get",
                           resource_type=resource_type, resource_name=resource_name).outputs
    obj = json.loads(outputs["object"])
    namespace = outputs["namespace"] or None
    ref = ObjectRef(session.name, outputs["kind"], outputs["name"], namespace)
    lines = to_yaml(obj).splitlines()
    if len(lines) > MAX_YAML_LINES:
        lines = lines[:MAX_YAML_LINES] + [f"# ... {len(lines) - MAX_YAML_LINES} more lines"]
    keys = (f"\nKeys: {md_cell(outputs['keys'] or '(none)')}"
            + (" (values are never shown)" if outputs["kind"] == "Secret" else "") + "\n"
            if outputs["kind"] in ("Secret", "ConfigMap") else "")
    markdown = (f"## {md_cell(str(ref))}\n\nHealth: **{md_cell(outputs['health'])}** "
                f"({md_cell(outputs['health_message'])})\n{keys}\n"
                + fenced("\n".join(lines), "yaml"))
    return OperationResult(
        ref, f"{ref}: {outputs['health']} ({outputs['health_message']})",
        {k: outputs[k] for k in ("kind", "name", "namespace", "uid", "resource_version",
                                 "health", "health_message", "keys")},
        markdown=ctx.masker(markdown), changed=False)
