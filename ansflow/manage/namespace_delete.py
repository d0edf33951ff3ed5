"""The `delete_namespace` operation (destructive): delete a namespace and all it holds,
after listing what that is (counts by kind from a live list). The system namespaces and
`default` are refused."""

from __future__ import annotations

import time

from ansflow.engines.kube_errors import KubeError, KubeForbidden, KubeNotFound
from ansflow.engines.kube_kinds import (
    CONFIGMAPS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    HPAS,
    INGRESSES,
    JOBS,
    NAMESPACES,
    PODS,
    PVCS,
    REPLICASETS,
    SECRETS,
    SERVICE_ACCOUNTS,
    SERVICES,
    STATEFULSETS,
)
from ansflow.engines.kube_names import check_namespace
from ansflow.engines.kube_objects import get_object, list_objects, request
from ansflow.errors import StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.present import table
from ansflow.runtime.k8s_session import api_errors

PROTECTED = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})
COUNTED = (DEPLOYMENTS, STATEFULSETS, DAEMONSETS, REPLICASETS, PODS, JOBS, CRONJOBS, SERVICES,
           INGRESSES, CONFIGMAPS, SECRETS, PVCS, SERVICE_ACCOUNTS, HPAS)
WAIT_SECONDS = 60.0


def held(api, namespace: str) -> dict[str, str]:
    """Kind -> how many the namespace holds ("not allowed" where the identity may not list
    that kind; kinds the cluster does not serve left out)."""
    counts: dict[str, str] = {}
    for res in COUNTED:
        try:
            counts[res.kind] = str(len(list_objects(api, res, namespace).get("items") or []))
        except KubeForbidden:
            counts[res.kind] = "not allowed"
        except KubeNotFound:
            continue
    return counts


@register("delete_namespace", destructive=True)
def delete_namespace(ctx, session, *, resource_name: str) -> OperationResult:
    """Delete a namespace and everything in it (destructive), after listing what it holds.

    Args:
        resource_name: The namespace to delete (what confirm must equal); kube-system,
            kube-public, kube-node-lease and default are refused.

    Returns:
        What it held, counted by kind; outputs ``state`` (deleted, or terminating when the
        namespace's finalizers take longer than a minute) and ``objects`` (the total).

    Raises:
        StepFailed: a protected, invalid or unknown namespace, or refused by the API server.
    """
    try:
        name = check_namespace(resource_name, "resource_name")
    except (ValueError, KubeError) as exc:
        raise StepFailed(f"delete_namespace: {exc}") from None
    if name in PROTECTED:
        raise StepFailed(f"delete_namespace: namespace {name!r} is the cluster's own "
                         f"({', '.join(sorted(PROTECTED))} are never deleted); nothing was "
                         "changed")
    api, cluster = session.api, session.name
    target = ObjectRef(cluster, "Namespace", name)
    with api_errors(cluster, f"read namespace {name}"):
        if get_object(api, NAMESPACES, name, None) is None:
            raise StepFailed(f"cluster {cluster!r}: namespace {name!r} not found")
        counts = held(api, name)
    total = sum(int(v) for v in counts.values() if v.isdigit())
    listing = table(["kind", "count"], [[k, v] for k, v in counts.items()])
    ctx.emit(f"namespace {name} holds {total} object(s): "
             + ", ".join(f"{k} {v}" for k, v in counts.items() if v != "0"))
    with api_errors(cluster, f"delete namespace {name}"):
        try:
            request(api, "DELETE", NAMESPACES.path(None, name))
        except KubeNotFound:
            pass
        deadline = time.monotonic() + (ctx.budget(WAIT_SECONDS) or WAIT_SECONDS)
        state = "terminating"
        while time.monotonic() < deadline and not ctx.cancelled:
            if get_object(api, NAMESPACES, name, None) is None:
                state = "deleted"
                break
            time.sleep(1.0)
    return OperationResult(
        target=target, summary=f"namespace {name} on cluster {cluster!r} {state} "
                               f"({total} object(s) in it)",
        outputs={"state": state, "objects": str(total)},
        before={"objects": counts}, after={"state": state},
        markdown=f"### What namespace {name} held\n\n{listing}")
