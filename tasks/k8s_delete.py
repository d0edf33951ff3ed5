"""The k8s_delete step: delete objects by name or label selector, then wait until they are
gone (as ``kubectl delete --wait`` does)."""

from __future__ import annotations

import difflib

from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import (
    KubeNotFound,
    Resource,
    list_objects,
    request,
    resolve_type,
)
from ansflow.errors import StepCancelled, StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_deadline, step_executor
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.k8s_watch import wait_for
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.conditions import parse_condition
from ansflow.spec.steps import K8sDeleteConfig

PROPAGATION = {"background": "Background", "foreground": "Foreground", "orphan": "Orphan"}
MAX_SUGGESTIONS = 3
MAX_LISTED = 5000  # names looked at for suggestions / matched by a selector


def close_names(wanted: str, names: list[str]) -> list[str]:
    """The names most like ``wanted`` (difflib), best first, at most three."""
    return difflib.get_close_matches(wanted, names, n=MAX_SUGGESTIONS, cutoff=0.5)


def _names(api: k8s.ApiClient, res: Resource, namespace: str | None) -> list[str]:
    items = list_objects(api, res, namespace).get("items") or []
    return [str((o.get("metadata") or {}).get("name", "")) for o in items[:MAX_LISTED]]


def not_found(api: k8s.ApiClient, res: Resource, name: str, namespace: str | None) -> StepFailed:
    """``kind/name not found``, with the closest names of that kind in the namespace."""
    ref = res.ref(name, namespace)
    try:
        similar = close_names(name, _names(api, res, namespace))
    except Exception:  # noqa: BLE001 - listing is only for the hint; refused or failing: none
        similar = []
    hint = ("did you mean " + ", ".join(repr(n) for n in similar) + "?") if similar else None
    return StepFailed(f"{ref} not found", hint=hint)


def delete_one(api: k8s.ApiClient, res: Resource, name: str, namespace: str | None,
               propagation: str) -> dict | None:
    """DELETE one object; its last state (None when it was gone already)."""
    query = [("propagationPolicy", PROPAGATION[propagation])]
    try:
        return request(api, "DELETE", res.path(namespace, name), query=query)
    except KubeNotFound:
        return None


def deleted_uid(answer: dict) -> str:
    """The uid of what a DELETE removed: the object (still terminating) or the Status's
    details (removed at once); "" when the answer names none."""
    meta = answer.get("metadata") if answer.get("kind") != "Status" else None
    uid = (meta or {}).get("uid") or (answer.get("details") or {}).get("uid")
    return str(uid) if uid else ""


@step_executor
def execute_k8s_delete(ctx: StepContext, config: K8sDeleteConfig) -> StepResult:
    """Delete objects by name or label selector and wait until they are gone.

    Returns:
        Outputs ``deleted`` (``kind/name`` of each deleted object, comma-separated) and
        ``count``.

    Raises:
        StepFailed: unknown cluster or kind, a cluster-scoped kind without
            ``allow_cluster_scoped``, nothing to delete (unless ``ignore_not_found``), a refusal.
        StepTimedOut / StepCancelled: the objects were deleted but the wait was stopped.
    """
    deadline = step_deadline(ctx, config.timeout)
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, cluster = session.api, config.cluster or session.name
        with api_errors(cluster, f"resolve resource type {config.resource_type!r}"):
            res = resolve_type(api, config.resource_type)
        namespace = session.namespace if res.namespaced else None
        if not res.namespaced and not config.allow_cluster_scoped:
            what = "a namespace and everything in it" if res.kind == "Namespace" else \
                f"{res.kind} is cluster-scoped"
            raise StepFailed(f"cluster {cluster!r}: refusing to delete {res.plural} "
                             f"({what}); nothing was deleted",
                             hint="set allow_cluster_scoped: true to delete it")
        if res.namespaced and not namespace:
            raise StepFailed(f"cluster {cluster!r}: no namespace to delete {res.plural} in")
        where = f" in namespace {namespace}" if namespace else ""
        if config.resource_name is not None:
            names = [config.resource_name]
        else:
            with api_errors(cluster, f"list {res.plural}{where}"):
                items = list_objects(api, res, namespace,
                                     label_selector=config.label_selector or "").get("items")
            names = [str(o["metadata"]["name"]) for o in (items or [])[:MAX_LISTED]]
            if not names:
                message = (f"no {res.plural} match the selector {config.label_selector!r}"
                           f"{where}")
                if not config.ignore_not_found:
                    raise StepFailed(f"cluster {cluster!r}: {message}",
                                     hint="set ignore_not_found: true if that is fine")
                ctx.emit(f"{message}; nothing to delete")
                return StepResult(outputs={"deleted": "", "count": "0"})
            ctx.emit(f"{len(names)} {res.plural} match {config.label_selector!r}{where}")
        deleted: list[str] = []
        uids: dict[str, str] = {}
        for name in names:
            if ctx.cancelled:
                raise StepCancelled(f"cancelled after deleting {len(deleted)} of {len(names)} "
                                    f"{res.plural}")
            ref = res.ref(name, namespace)
            with api_errors(cluster, f"delete {res.plural} {name}{where}"):
                last = delete_one(api, res, name, namespace, config.propagation)
                if last is None:
                    if config.resource_name is not None and not config.ignore_not_found:
                        raise not_found(api, res, name, namespace)
                    ctx.emit(f"{ref} was not there")
                    continue
            ctx.emit(f"deleted {ref} (propagation {config.propagation})")
            deleted.append(f"{res.kind.lower()}/{name}")
            uids[name] = deleted_uid(last)
        if config.wait and deleted:
            gone = parse_condition("deleted")
            for item in deleted:
                name = item.split("/", 1)[1]
                with api_errors(cluster, f"wait for {res.ref(name, namespace)} to be gone"):
                    wait_for(api, ctx, res, name, namespace, gone, deadline=deadline,
                             what="deletion", uid=uids[name] or None)
            if len(deleted) > 1:
                ctx.emit(f"all {len(deleted)} {res.plural} are gone")
    return StepResult(outputs={"deleted": ",".join(deleted), "count": str(len(deleted))})


@step_task("k8s_delete", execute_k8s_delete)
def k8s_delete(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_type: str,
    resource_name: str | None = None,
    label_selector: str | None = None,
    namespace: str | None = None,
    propagation: str = "background",
    wait: bool = True,
    timeout: float = 120.0,
    ignore_not_found: bool = False,
    allow_cluster_scoped: bool = False,
    ignore_missing: bool | None = None,
) -> StepOutput:
    """Delete objects by name or label selector, as ``kubectl delete --wait`` does, and wait
    until they are gone.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_type: ``deployment``, ``service``, ``pod``, ``configmap``, ``secret``,
            ``statefulset``, ``job``, ``ingress``, ``namespace``... or any kind or short name
            the cluster serves.
        resource_name: The object's name (give this or ``label_selector``).
        label_selector: Delete every object of the kind matching it, e.g. ``app=web``.
        propagation: ``background`` (default), ``foreground`` (dependents first) or
            ``orphan`` (dependents are left).
        wait: Wait until the objects are gone.
        timeout: Seconds to wait.
        ignore_not_found: A missing object or an empty selector match is not an error.
        allow_cluster_scoped: Allow deleting a Namespace or another cluster-scoped kind.
        ignore_missing: The same as ``ignore_not_found`` (the issue's name for it).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``deleted`` (``kind/name,...``) and ``count``.

    Raises:
        StepFailed: nothing to delete, a refused kind, an API refusal (403 names the verb,
            resource, namespace and cluster). StepTimedOut / StepCancelled: the wait stopped.

    Example:
        ```python
        from ansflow.tasks import k8s_delete

        k8s_delete(cluster="prod", namespace="shop", resource_type="job",
                   label_selector="app=migrate", ignore_not_found=True)
        ```
    """
    return run_cluster_task("k8s_delete", execute_k8s_delete, K8sDeleteConfig, locals())
