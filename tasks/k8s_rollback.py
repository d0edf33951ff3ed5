"""The k8s_rollback step: `kubectl rollout undo` for a Deployment (the pod template of the
ReplicaSet of that revision) and a StatefulSet or DaemonSet (the ControllerRevision of that
revision), refused for a revision that is not in the history or is the current one; then
wait for the rollout."""

from __future__ import annotations

from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import Resource, list_objects
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_manifests import rollback_patch
from ansflow.runtime.k8s_rollout import AFTER_ROLLBACK, selector_string
from ansflow.runtime.k8s_session import api_errors
from ansflow.runtime.k8s_workload import (
    JSON_PATCH,
    KINDS,
    ROLLOUT_TYPES,
    STRATEGIC_PATCH,
    patch,
    refuse_unwaitable,
    revision_number,
    workload_session,
)
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.conditions import WaitCondition
from ansflow.spec.steps import K8sRollbackConfig
from ansflow.tasks.k8s_restart import controller_revisions, rolled_out_revision

# Right after an undo, the failed rollout's ProgressDeadlineExceeded is not a failure yet.
UNDONE = WaitCondition("rollout", AFTER_ROLLBACK)


def replica_sets(api: k8s.ApiClient, deployment: dict) -> list[dict]:
    """The ReplicaSets a Deployment owns, by revision (oldest first)."""
    meta = deployment.get("metadata") or {}
    selector = selector_string((deployment.get("spec") or {}).get("selector"))
    items = list_objects(api, KINDS["ReplicaSet"], meta.get("namespace"),
                         label_selector=selector).get("items", [])
    owned = [rs for rs in items
             if any(o.get("uid") == meta.get("uid")
                    for o in (rs.get("metadata") or {}).get("ownerReferences") or [])
             and revision_number(rs) is not None]
    return sorted(owned, key=lambda rs: revision_number(rs) or 0)


def pick_revision(history: dict[int, dict], current: int | None, wanted: int | None,
                  ref: str) -> int:
    """The revision to go back to (kubectl: the previous one is the second newest).

    Raises:
        StepFailed: no such revision (those that exist are listed), no previous one, or the
            current one asked for.
    """
    known = sorted(history)
    listed = ", ".join(str(r) for r in known) or "none"
    current = current if current is not None else (known[-1] if known else None)
    if wanted is None:
        older = [r for r in known if current is None or r < current]
        if not older:
            raise StepFailed(f"{ref} has no previous revision to roll back to "
                             f"(revisions: {listed})")
        return older[-1]
    if wanted not in history:
        raise StepFailed(f"{ref} has no revision {wanted} (revisions: {listed})")
    if wanted == current:
        raise StepFailed(f"{ref} already runs revision {wanted}, its current revision: "
                         "nothing to roll back",
                         hint=f"roll back to an earlier one (revisions: {listed})")
    return wanted


def _undo_deployment(api: k8s.ApiClient, ctx: StepContext, res: Resource, obj: dict,
                     ns: str, wanted: int | None, ref: str) -> int:
    if (obj.get("spec") or {}).get("paused"):
        raise StepFailed(f"{ref} is paused, so it was not rolled back",
                         hint="resume it first: kubectl rollout resume")
    history = {revision_number(rs): rs for rs in replica_sets(api, obj)}
    target = pick_revision(history, revision_number(obj), wanted, ref)
    body = rollback_patch(obj, history[target])
    if body is None:
        raise StepFailed(f"{ref} already runs the pod template of revision {target}: "
                         "nothing to roll back")
    name = obj["metadata"]["name"]
    patch(api, res, name, ns, body, JSON_PATCH)
    return target


def _undo_controller_revision(api: k8s.ApiClient, res: Resource, obj: dict, ns: str,
                              wanted: int | None, ref: str) -> int:
    # kubectl's StatefulSetRollbacker / DaemonSetRollbacker: the revision's data is the
    # strategic merge patch that restores its pod template.
    revisions = controller_revisions(api, obj)
    history = {revision_number(r): r for r in revisions}
    target = pick_revision(history, None, wanted, ref)
    data = history[target].get("data")
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise StepFailed(f"{ref}: revision {target} holds no pod template to go back to")
    patch(api, res, obj["metadata"]["name"], ns, data, STRATEGIC_PATCH)
    return target


@step_executor
def execute_k8s_rollback(ctx: StepContext, config: K8sRollbackConfig) -> StepResult:
    """Roll a Deployment, StatefulSet or DaemonSet back, as ``kubectl rollout undo``.

    Returns:
        Outputs ``revision`` (the revision rolled back to) and ``new_revision`` (the
        workload's revision number after the rollback).

    Raises:
        StepFailed: unknown cluster or object, a revision that does not exist or is the
            current one, a paused Deployment (nothing changed in each case), an API refusal,
            a failed rollout.
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel while waiting.
    """
    with workload_session(ctx, config, ROLLOUT_TYPES, "k8s_rollback") as workload:
        api, ns, cluster, res, ref = (workload.api, workload.namespace, workload.cluster,
                                      workload.res, workload.ref)
        obj = workload.obj
        refuse_unwaitable(obj, f"cluster {cluster!r}: {ref}", config.wait)
        with api_errors(cluster, f"roll back {ref}"):
            if res.kind == "Deployment":
                target = _undo_deployment(api, ctx, res, obj, ns, config.revision, ref)
            else:
                target = _undo_controller_revision(api, res, obj, ns, config.revision, ref)
        ctx.emit(f"rolled {ref} back to revision {target} on cluster {cluster!r}")
        new = rolled_out_revision(ctx, workload, UNDONE, config.wait, config.fail_fast,
                                  "the rollback's rollout")
    return StepResult(outputs={"revision": str(target), "new_revision": new})


@step_task("k8s_rollback", execute_k8s_rollback)
def k8s_rollback(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_name: str,
    resource_type: str = "deployment",
    revision: int | None = None,
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 300.0,
    fail_fast: bool = True,
) -> StepOutput:
    """Roll a workload back to the previous or a given revision, as ``kubectl rollout undo``
    does, then wait for the rollout.

    A Deployment gets the pod template of the ReplicaSet of that revision; a StatefulSet or
    DaemonSet the one its ControllerRevision recorded. A revision that does not exist (the
    error lists those that do) or is the current one is refused, and nothing changes.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_name: The object's name.
        resource_type: ``deployment``, ``statefulset`` or ``daemonset`` (``deploy``,
            ``sts``, ``ds``).
        revision: The revision to go back to (default: the previous one).
        wait: Wait for the rollout (``kubectl rollout status`` semantics).
        timeout: Seconds to wait.
        fail_fast: Fail early when a new pod is stuck (CrashLoopBackOff, ImagePullBackOff).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``revision`` (rolled back to) and
        ``new_revision``.

    Raises:
        StepFailed: an unknown object or revision, the current revision, a paused
            Deployment, an API refusal, a failed rollout. StepTimedOut / StepCancelled.

    Example:
        ```python
        from ansflow.tasks import k8s_rollback

        k8s_rollback(cluster="prod", namespace="shop", resource_name="web", revision=3)
        ```
    """
    return run_cluster_task("k8s_rollback", execute_k8s_rollback, K8sRollbackConfig, locals())
