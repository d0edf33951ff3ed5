"""The `describe` operation (read-only): one object of any kind the cluster serves, its
status, conditions and recent events, as markdown (a Secret's key names only)."""

from __future__ import annotations

import copy
from typing import Any

from ansflow.engines.kube_drift import (
    APPLIED_ANNOTATION,
    applied_manifest,
    diff,
    drift_markdown,
    hpa_targets,
)
from ansflow.engines.kube_errors import KubeForbidden, KubeNotFound
from ansflow.engines.kube_kinds import EVENTS, HPAS
from ansflow.engines.kube_objects import Resource, get_object, list_objects, request, resolve_type
from ansflow.errors import StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.present import LAST_APPLIED, clean, fenced, table, to_yaml
from ansflow.manage.validation import Problems, check_object_name, require_namespace, shown
from ansflow.runtime.k8s_session import api_errors
from ansflow.runtime.k8s_workload import suggestion

MAX_EVENTS = 20
MAX_EVENTS_LISTED = 500  # events asked of the server, newest kept
MAX_YAML_LINES = 300


def _event_time(event: dict) -> str:
    series = event.get("series") or {}
    return str(event.get("lastTimestamp") or series.get("lastObservedTime")
               or event.get("eventTime") or event.get("firstTimestamp")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


def newest_events(events: list[dict], limit: int = MAX_EVENTS) -> list[dict]:
    """The ``limit`` most recent events, newest first (RFC 3339 times sort as text)."""
    return sorted(events, key=_event_time, reverse=True)[:limit]


def _bounded_yaml(data: Any) -> str:
    lines = to_yaml(data).splitlines()
    if len(lines) > MAX_YAML_LINES:
        lines = lines[:MAX_YAML_LINES] + [f"# ... {len(lines) - MAX_YAML_LINES} more lines"]
    return "\n".join(lines)


def shown_object(obj: dict) -> dict:
    """What describe shows of an object's body: no server noise, no status (shown apart),
    a Secret's data as key names, and no last-applied-configuration (it copies the spec,
    and a Secret's values)."""
    body = clean(obj) or {}
    annotations = (body.get("metadata") or {}).get("annotations")
    for copied in (LAST_APPLIED, APPLIED_ANNOTATION):
        if isinstance(annotations, dict) and copied in annotations:
            annotations[copied] = "(omitted)"
    if body.get("kind") == "Secret":
        for section in ("data", "stringData"):
            if isinstance(body.get(section), dict):
                body[section] = {key: "(value hidden)" for key in body[section]}
    return body


def describe_markdown(obj: dict, ref: str, events: list[dict],
                      drift: list[dict] | None = None) -> str:
    """The describe artifact of ``obj`` (pure)."""
    meta = obj.get("metadata") or {}
    status = copy.deepcopy(obj.get("status")) if isinstance(obj.get("status"), dict) else None
    conditions = (status or {}).pop("conditions", None)
    parts = [f"## {ref}\n",
             table(["field", "value"], [
                 ["kind", f"{obj.get('kind')} ({obj.get('apiVersion')})"],
                 ["created", meta.get("creationTimestamp")],
                 ["labels", ", ".join(f"{k}={v}" for k, v in (meta.get("labels") or {}).items())],
                 ["owners", ", ".join(f"{o.get('kind')}/{o.get('name')}"
                                      for o in meta.get("ownerReferences") or [])],
             ])]
    if obj.get("kind") == "Secret":
        keys = sorted((obj.get("data") or {}).keys())
        parts.append(f"\nType {shown(obj.get('type'))}; keys: "
                     f"{', '.join(keys) if keys else '(none)'} (values are never shown)\n")
    if isinstance(conditions, list) and conditions:
        parts.append("\n### Conditions\n\n" + table(
            ["type", "status", "reason", "message", "last transition"],
            [[c.get("type"), c.get("status"), c.get("reason"), c.get("message"),
              c.get("lastTransitionTime")] for c in conditions if isinstance(c, dict)]))
    if status:
        parts.append("\n### Status\n\n" + fenced(_bounded_yaml(status), "yaml"))
    parts.append("\n### Events\n\n" + (table(
        ["last seen", "type", "reason", "from", "count", "message"],
        [[_event_time(e), e.get("type"), e.get("reason"),
          (e.get("source") or {}).get("component") or e.get("reportingComponent"),
          e.get("count") or (e.get("series") or {}).get("count") or 1, e.get("message")]
         for e in events]) if events else "No recent events.\n"))
    if drift is not None:
        parts.append("\n### Drift from what ansflow applied\n\n" + drift_markdown(drift))
    parts.append("\n### Object\n\n" + fenced(_bounded_yaml(shown_object(obj)), "yaml"))
    return "".join(parts)


def object_drift(api, res: Resource, obj: dict) -> list[dict] | None:
    """The drift of an object k8s_deploy applied (None: it keeps no applied manifest); the
    replicas of an object an HPA in its namespace targets are not drift."""
    applied = applied_manifest(obj)
    if applied is None:
        return None
    meta = obj.get("metadata") or {}
    hpas: list = []
    if res.namespaced and "replicas" in (obj.get("spec") or {}):
        try:
            hpas = list_objects(api, HPAS, meta.get("namespace")).get("items") or []
        except (KubeForbidden, KubeNotFound):
            hpas = []  # an identity that may not list them: the scalers' managers still count
    return diff(applied, obj, hpa_targeted=hpa_targets(hpas, res.kind, meta.get("name")))


def object_events(api, res: Resource, obj: dict) -> list[dict]:
    """The newest events whose involvedObject is ``obj`` (its kind, name and uid)."""
    meta = obj.get("metadata") or {}
    selector = ",".join(f"involvedObject.{k}={v}" for k, v in (
        ("kind", res.kind), ("name", meta.get("name")), ("uid", meta.get("uid"))) if v)
    namespace = meta.get("namespace") if res.namespaced else None
    answer = request(api, "GET", EVENTS.path(namespace),
                     query=[("fieldSelector", selector), ("limit", str(MAX_EVENTS_LISTED))])
    items = answer.get("items") if isinstance(answer, dict) else None
    return newest_events([e for e in items or [] if isinstance(e, dict)])


@register("describe", read_only=True)
def describe(ctx, session, *, resource_type: str = "deployment", resource_name: str
             ) -> OperationResult:
    """Describe one object: its status, conditions and recent events (changes nothing).

    Args:
        resource_type: Any kind the cluster serves: deployment, pod, service, configmap,
            secret, node, namespace, jobs.batch, a custom resource's plural or short name...
        resource_name: The object's name.

    Returns:
        The description as markdown; outputs ``kind``, ``name`` and ``events`` (how many
        recent events are shown).

    Raises:
        StepFailed: an unknown resource type or object (close names suggested), or refused
            by the API server.
    """
    problems = Problems("describe")
    if not isinstance(resource_type, str) or not resource_type.strip() \
            or len(resource_type) > 253:
        problems.add(f"resource_type {shown(resource_type)} is not a resource type")
    check_object_name(problems, "resource_name", resource_name)
    problems.raise_if_any()
    api, cluster = session.api, session.name
    with api_errors(cluster, f"look up resource type {resource_type.strip()!r}"):
        res = resolve_type(api, resource_type)
    namespace = require_namespace("describe", session.namespace) if res.namespaced else None
    ref = res.ref(resource_name, namespace)
    with api_errors(cluster, f"get {res.plural} {resource_name!r}"
                             + (f" in namespace {namespace}" if namespace else "")):
        obj = get_object(api, res, resource_name, namespace)
        if obj is None:
            names = [str((o.get("metadata") or {}).get("name", ""))
                     for o in list_objects(api, res, namespace).get("items", [])]
    if obj is None:
        hint = suggestion(resource_name, names, res, namespace or "(cluster-wide)")
        raise StepFailed(f"cluster {cluster!r}: {ref} not found{hint}")
    obj.setdefault("apiVersion", res.api_version)
    with api_errors(cluster, "list events" + (f" in namespace {namespace}" if namespace
                                              else "")):
        events = object_events(api, res, obj)
    with api_errors(cluster, "list horizontalpodautoscalers" + (
            f" in namespace {namespace}" if namespace else "")):
        drift = object_drift(api, res, obj)
    markdown = describe_markdown(obj, f"{ref} (cluster {cluster})", events, drift)
    kind = str(obj.get("kind") or res.kind)
    ctx.emit(f"described {ref} on cluster {cluster!r} ({len(events)} recent events)")
    return OperationResult(
        target=ObjectRef(cluster, kind, resource_name, namespace),
        summary=f"described {ref} on cluster {cluster!r}",
        outputs={"kind": kind, "name": resource_name, "events": str(len(events)),
                 "drift": "" if drift is None else str(len(drift))},
        markdown=ctx.masker(markdown), changed=False)
