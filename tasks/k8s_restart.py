"""The k8s_restart step: `kubectl rollout restart` (a new restartedAt annotation on the pod
template, so the controller replaces every pod), then wait for that rollout."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_kinds import CONTROLLER_REVISIONS
from ansflow.engines.kube_objects import Resource, get_object, list_objects
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_rollout import REVISION_ANNOTATION, selector_string
from ansflow.runtime.k8s_session import api_errors
from ansflow.runtime.k8s_watch import wait_for
from ansflow.runtime.k8s_workload import (
    MERGE_PATCH,
    ROLLOUT_TYPES,
    Workload,
    patch,
    refuse_unwaitable,
    revision_number,
    workload_session,
)
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.conditions import WaitCondition
from ansflow.spec.steps import K8sRestartConfig

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ROLLOUT = WaitCondition("rollout")


def restarted_at(now: datetime | None = None) -> str:
    """The annotation's value, as kubectl writes it (RFC 3339, seconds)."""
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def restart_patch(obj: dict, now: str) -> dict:
    """The merge patch of `kubectl rollout restart` (only the pod template's annotation)."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}


def controller_revisions(api: k8s.ApiClient, obj: dict) -> list[dict]:
    """The ControllerRevisions a StatefulSet or DaemonSet owns, oldest revision first."""
    meta = obj.get("metadata") or {}
    selector = selector_string((obj.get("spec") or {}).get("selector"))
    items = list_objects(api, CONTROLLER_REVISIONS, meta.get("namespace"),
                         label_selector=selector).get("items", [])
    owned = []
    for rev in items:
        owners = (rev.get("metadata") or {}).get("ownerReferences") or []
        if any(o.get("uid") == meta.get("uid") for o in owners):
            rev.setdefault("kind", "ControllerRevision")  # list items come without their kind
            if revision_number(rev) is not None:
                owned.append(rev)
    return sorted(owned, key=lambda r: revision_number(r) or 0)


def current_revision(api: k8s.ApiClient, res: Resource, name: str, namespace: str,
                     deadline: float) -> str:
    """The workload's revision number once the controller has observed its latest change:
    a Deployment's revision annotation, else its newest ControllerRevision's number."""
    while True:
        obj = get_object(api, res, name, namespace) or {}
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        seen = status.get("observedGeneration", 0) >= meta.get("generation", 0)
        if res.kind == "Deployment":
            value = (meta.get("annotations") or {}).get(REVISION_ANNOTATION) or ""
        else:
            history = controller_revisions(api, obj) if obj else []
            value = str(revision_number(history[-1]) or "") if history else ""
        if (seen and value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.2)


def rolled_out_revision(ctx: StepContext, target: Workload, condition: WaitCondition,
                        wait: bool, fail_fast: bool, what: str) -> str:
    """After a change of the workload's pod template: wait for its rollout (``wait``), then
    its revision number (:func:`current_revision`)."""
    with api_errors(target.cluster, f"wait for {target.ref}"):
        if wait:
            wait_for(target.api, ctx, target.res, target.name, target.namespace, condition,
                     deadline=target.deadline, fail_fast=fail_fast, what=what)
        return current_revision(target.api, target.res, target.name, target.namespace,
                                min(target.deadline, time.monotonic() + 10))


@step_executor
def execute_k8s_restart(ctx: StepContext, config: K8sRestartConfig) -> StepResult:
    """Restart a Deployment's, StatefulSet's or DaemonSet's pods, then await the rollout.

    Returns:
        Outputs ``restarted_at`` (the annotation written) and ``revision`` (the workload's
        revision after the restart).

    Raises:
        StepFailed: unknown cluster or object, a paused Deployment (nothing changed), an
            API refusal, a failed rollout or a stuck pod.
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel while waiting.
    """
    with workload_session(ctx, config, ROLLOUT_TYPES, "k8s_restart") as target:
        api, ns, cluster, res, ref = (target.api, target.namespace, target.cluster,
                                      target.res, target.ref)
        obj = target.obj
        if (obj.get("spec") or {}).get("paused"):
            raise StepFailed(f"cluster {cluster!r}: {ref} is paused, so it was not restarted",
                             hint="resume it first: kubectl rollout resume")
        refuse_unwaitable(obj, f"cluster {cluster!r}: {ref}", config.wait)
        template_meta = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
        now = restarted_at()
        if (template_meta.get("annotations") or {}).get(RESTARTED_AT) == now:
            time.sleep(1.0)  # restarted this very second: a new value makes a new rollout
            now = restarted_at()
        with api_errors(cluster, f"patch {ref}"):
            patch(api, res, config.resource_name, ns, restart_patch(obj, now), MERGE_PATCH)
        ctx.emit(f"restarted {ref} on cluster {cluster!r} ({RESTARTED_AT}={now})")
        revision = rolled_out_revision(ctx, target, ROLLOUT, config.wait, config.fail_fast,
                                       "the restart's rollout")
    return StepResult(outputs={"restarted_at": now, "revision": revision})


@step_task("k8s_restart", execute_k8s_restart)
def k8s_restart(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_name: str,
    resource_type: str = "deployment",
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 300.0,
    fail_fast: bool = True,
) -> StepOutput:
    """Restart a workload's pods as ``kubectl rollout restart`` does (the
    ``kubectl.kubernetes.io/restartedAt`` annotation on its pod template), then wait for the
    rollout.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_name: The object's name.
        resource_type: ``deployment``, ``statefulset`` or ``daemonset`` (``deploy``,
            ``sts``, ``ds``).
        wait: Wait for the rollout (``kubectl rollout status`` semantics).
        timeout: Seconds to wait.
        fail_fast: Fail early when a new pod is stuck (CrashLoopBackOff, ImagePullBackOff).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``restarted_at`` and ``revision``.

    Raises:
        StepFailed: an unknown object (the close names suggested), a paused Deployment, a
            refusal of the API server, a failed rollout. StepTimedOut / StepCancelled.

    Example:
        ```python
        from ansflow.tasks import k8s_restart

        k8s_restart(cluster="prod", namespace="shop", resource_name="web")
        ```
    """
    return run_cluster_task("k8s_restart", execute_k8s_restart, K8sRestartConfig, locals())
