"""What k8s_scale, k8s_restart and k8s_rollback share: the workload a step names (its kind
from a closed list, the object itself, or a not-found error that suggests the close names in
that namespace), patches through the adapter, and the wait for what a change rolls out."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from ansflow.engines.kube_objects import Resource, get_object, list_objects, request
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, step_deadline
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.spec.steps import ROLLOUT_TYPES, SCALABLE_TYPES

__all__ = ["ROLLOUT_TYPES", "SCALABLE_TYPES", "KINDS", "workload_resource", "get_workload",
           "Workload", "workload_session",
           "patch", "MERGE_PATCH", "JSON_PATCH", "STRATEGIC_PATCH"]

# The workload kinds never move: no discovery call needed for them.
KINDS = {kind: Resource("apps/v1", kind, kind.lower() + "s", True)
         for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")}
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
MAX_SUGGESTIONS = 3


def workload_resource(resource_type: str, accepted: dict[str, str], step_type: str) -> Resource:
    """The Resource of a step's `resource_type` (validation checked it, unless templated)."""
    kind = accepted.get(resource_type.strip().lower())
    if kind is None:
        kinds = ", ".join(sorted({k.lower() for k in accepted.values()}))
        raise StepFailed(f"{step_type}: resource_type {resource_type!r} is not one of {kinds}")
    return KINDS[kind]


def get_workload(api: k8s.ApiClient, cluster: str, res: Resource, name: str,
                 namespace: str) -> dict:
    """The object; when it does not exist, a StepFailed naming the closest names of that
    kind in the namespace (or saying there are none).

    Raises:
        StepFailed: not found, forbidden, unreachable (each naming the cluster).
    """
    ref = res.ref(name, namespace)
    with api_errors(cluster, f"get {ref}"):
        obj = get_object(api, res, name, namespace)
        if obj is not None:
            return obj
        names = [str((o.get("metadata") or {}).get("name", ""))
                 for o in list_objects(api, res, namespace).get("items", [])]
    hint = suggestion(name, names, res, namespace)
    raise StepFailed(f"cluster {cluster!r}: {ref} not found{hint}")


@dataclass(frozen=True)
class Workload:
    """The workload a step changes, fetched through its cluster session."""

    api: k8s.ApiClient
    cluster: str
    namespace: str
    res: Resource
    name: str
    ref: str
    obj: dict
    deadline: float


@contextmanager
def workload_session(ctx: StepContext, config: Any, accepted: dict[str, str],
                     step_type: str) -> Iterator[Workload]:
    """While inside: the cluster session of a step whose config names a workload
    (``resource_type``, ``resource_name``, ``namespace``, ``cluster``, ``timeout``), with
    the object fetched; its kind is checked before the cluster is touched.

    Raises:
        StepFailed: a kind not in ``accepted``, an unknown cluster or object.
    """
    res = workload_resource(config.resource_type, accepted, step_type)
    deadline = step_deadline(ctx, config.timeout)
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        name, ns = config.resource_name, session.namespace
        obj = get_workload(session.api, session.name, res, name, ns)
        yield Workload(api=session.api, cluster=session.name, namespace=ns, res=res,
                       name=name, ref=res.ref(name, ns), obj=obj, deadline=deadline)


def suggestion(name: str, names: list[str], res: Resource, namespace: str) -> str:
    """`; did you mean: a, b?` (difflib), or what the namespace holds when nothing is close."""
    plural = res.plural
    if not names:
        return f" (there are no {plural} in namespace {namespace})"
    close = difflib.get_close_matches(name, names, n=MAX_SUGGESTIONS, cutoff=0.6)
    if close:
        return f"; did you mean: {', '.join(close)}?"
    shown = sorted(names)[:10]
    more = f" and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return f" ({plural} in namespace {namespace}: {', '.join(shown)}{more})"


def patch(api: k8s.ApiClient, res: Resource, name: str, namespace: str, body: object,
          content_type: str, subresource: str = "") -> dict:
    """PATCH the object (or its subresource) under the field manager `ansflow`."""
    path = res.path(namespace, name) + (f"/{subresource}" if subresource else "")
    return request(api, "PATCH", path, body=body, content_type=content_type,
                   query=[("fieldManager", "ansflow")])


def replica_count(value: object) -> int | None:
    """A replica count the cluster reported (untrusted): an int >= 0, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value >= 0 else None


def revision_number(obj: dict) -> int | None:
    """An object's integer revision: a ControllerRevision's `revision`, else the
    deployment.kubernetes.io/revision annotation (a ReplicaSet's, a Deployment's)."""
    if obj.get("kind") == "ControllerRevision":
        value = obj.get("revision")
    else:
        value = ((obj.get("metadata") or {}).get("annotations") or {}).get(
            "deployment.kubernetes.io/revision")
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number >= 0 else None


def refuse_unwaitable(obj: dict, ref: str, wait: bool) -> None:
    """Before a change: a StatefulSet or DaemonSet with the OnDelete strategy never rolls
    out by itself, so a wait for its rollout could only fail after the change was made."""
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
    if wait and obj.get("kind") in ("StatefulSet", "DaemonSet") and strategy == "OnDelete":
        raise StepFailed(f"{ref} uses the OnDelete update strategy: its pods change only when "
                         "they are deleted, so there is no rollout to wait for; nothing was "
                         "changed", hint="set wait: false to change its template anyway")
