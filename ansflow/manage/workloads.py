"""The workload operations of `ansflow serve --manage`: scale, restart, rollback, delete and
logs, each a thin wrapper over its step type's executor (same checks, same waits, same
errors), reporting what it changed as before / after."""

from __future__ import annotations

from typing import Any, Literal

from ansflow.engines.kube_objects import Resource
from ansflow.errors import StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.runtime.base import StepContext, StepResult
from ansflow.runtime.k8s_session import ClusterSession, api_errors
from ansflow.runtime.k8s_workload import get_workload, revision_number, workload_resource
from ansflow.runtime.public import validated_config
from ansflow.spec.common import StrictModel
from ansflow.spec.steps import (
    ROLLOUT_TYPES,
    SCALABLE_TYPES,
    K8sDeleteConfig,
    K8sLogsConfig,
    K8sRestartConfig,
    K8sRollbackConfig,
    K8sScaleConfig,
)
from ansflow.tasks.k8s_delete import execute_k8s_delete
from ansflow.tasks.k8s_logs import execute_k8s_logs
from ansflow.tasks.k8s_restart import RESTARTED_AT, controller_revisions, execute_k8s_restart
from ansflow.tasks.k8s_rollback import execute_k8s_rollback
from ansflow.tasks.k8s_scale import execute_k8s_scale

ScalableKind = Literal["deployment", "statefulset", "replicaset"]
RolloutKind = Literal["deployment", "statefulset", "daemonset"]
# The kinds the delete form offers (namespaced; a namespace is deleted by its own operation).
DELETE_KINDS = {
    "deployment": "Deployment", "statefulset": "StatefulSet", "daemonset": "DaemonSet",
    "replicaset": "ReplicaSet", "pod": "Pod", "service": "Service", "configmap": "ConfigMap",
    "secret": "Secret", "job": "Job", "cronjob": "CronJob", "ingress": "Ingress",
    "persistentvolumeclaim": "PersistentVolumeClaim", "serviceaccount": "ServiceAccount",
}
DeletableKind = Literal["deployment", "statefulset", "daemonset", "replicaset", "pod",
                        "service", "configmap", "secret", "job", "cronjob", "ingress",
                        "persistentvolumeclaim", "serviceaccount"]


def run_executor(executor: Any, ctx: StepContext, session: ClusterSession,
                 model: type[StrictModel], operation: str, **fields: Any) -> StepResult:
    """Run a step executor on the operation's open session's cluster and namespace.

    The executor works in the open session, handed over through ``ctx.blocks`` (no second
    block load, API client or masking); fields left None take the step type's defaults.

    Raises:
        StepFailed: a field the step's config refuses (named), or the executor's failure.
    """
    ctx.blocks["cluster"] = session
    given = {k: v for k, v in fields.items() if v is not None}
    config = validated_config(model, {"cluster": session.name, "namespace": session.namespace,
                                      **given}, f"{operation}: invalid parameters")
    return executor(ctx, config)


def _namespace(session: ClusterSession) -> str:
    if not session.namespace:
        raise StepFailed(f"cluster {session.name!r}: no namespace given and the block sets none",
                         hint="fill in the form's namespace")
    return session.namespace


def workload_revision(session: ClusterSession, res: Resource, name: str) -> str:
    """A workload's revision now (a Deployment's annotation, else its newest
    ControllerRevision's number); "" when it has none. The not-found error suggests names."""
    ns = _namespace(session)
    obj = get_workload(session.api, session.name, res, name, ns)
    if res.kind == "Deployment":
        number = revision_number(obj)
    else:
        with api_errors(session.name, f"list the controllerrevisions of {res.ref(name, ns)}"):
            history = controller_revisions(session.api, obj)
        number = revision_number(history[-1]) if history else None
    return "" if number is None else str(number)


@register("scale")
def scale(ctx: StepContext, session: ClusterSession, *, resource_name: str, replicas: int,
          resource_type: ScalableKind = "deployment", wait: bool = True,
          timeout: float = 300.0) -> OperationResult:
    """Scale a Deployment, StatefulSet or ReplicaSet through its /scale subresource (as
    `kubectl scale`), then wait until the new count of replicas is ready.

    Args:
        resource_name: The object's name.
        replicas: The new count of replicas (0 or more).
        resource_type: The kind of object.
        wait: Wait until the new count is ready and no other pods are left.
        timeout: Seconds to wait.
    """
    res = workload_resource(resource_type, SCALABLE_TYPES, "scale")
    outputs = run_executor(execute_k8s_scale, ctx, session, K8sScaleConfig, "scale",
                           resource_name=resource_name, replicas=replicas,
                           resource_type=resource_type, wait=wait, timeout=timeout).outputs
    target = ObjectRef(session.name, res.kind, resource_name, session.namespace)
    before, after = outputs["previous_replicas"], outputs["replicas"]
    summary = (f"scaled {target} from {before} to {after} replicas" if before != after else
               f"{target} already had {after} replicas")
    return OperationResult(target, summary, dict(outputs), before={"replicas": before},
                           after={"replicas": after}, changed=before != after)


@register("restart")
def restart(ctx: StepContext, session: ClusterSession, *, resource_name: str,
            resource_type: RolloutKind = "deployment", wait: bool = True,
            timeout: float = 300.0) -> OperationResult:
    """Restart a workload's pods as `kubectl rollout restart` does (a new restartedAt
    annotation on its pod template), then wait for the rollout.

    Args:
        resource_name: The object's name.
        resource_type: The kind of object.
        wait: Wait for the rollout of the restarted pods.
        timeout: Seconds to wait.
    """
    res = workload_resource(resource_type, ROLLOUT_TYPES, "restart")
    revision = workload_revision(session, res, resource_name)
    outputs = run_executor(execute_k8s_restart, ctx, session, K8sRestartConfig, "restart",
                           resource_name=resource_name, resource_type=resource_type,
                           wait=wait, timeout=timeout).outputs
    target = ObjectRef(session.name, res.kind, resource_name, session.namespace)
    return OperationResult(
        target, f"restarted {target} (revision {revision or '?'} -> "
                f"{outputs.get('revision') or '?'})", dict(outputs),
        before={"revision": revision},
        after={"revision": outputs.get("revision", ""), RESTARTED_AT: outputs["restarted_at"]})


@register("rollback")
def rollback(ctx: StepContext, session: ClusterSession, *, resource_name: str,
             resource_type: RolloutKind = "deployment", revision: int | None = None,
             wait: bool = True, timeout: float = 300.0) -> OperationResult:
    """Roll a workload back to the previous or a given revision (as `kubectl rollout undo`),
    then wait for the rollout. A revision that does not exist is refused, listing those that
    do.

    Args:
        resource_name: The object's name.
        resource_type: The kind of object.
        revision: The revision to go back to (empty: the previous one).
        wait: Wait for the rollback's rollout.
        timeout: Seconds to wait.
    """
    res = workload_resource(resource_type, ROLLOUT_TYPES, "rollback")
    current = workload_revision(session, res, resource_name)
    outputs = run_executor(execute_k8s_rollback, ctx, session, K8sRollbackConfig, "rollback",
                           resource_name=resource_name, resource_type=resource_type,
                           revision=revision, wait=wait, timeout=timeout).outputs
    target = ObjectRef(session.name, res.kind, resource_name, session.namespace)
    return OperationResult(
        target, f"rolled {target} back to revision {outputs['revision']}", dict(outputs),
        before={"revision": current},
        after={"revision": outputs.get("new_revision", ""),
               "pod template of revision": outputs["revision"]})


def delete_confirm_name(params: dict[str, Any]) -> str | None:
    """A delete confirms the object's name, or the label selector it deletes by."""
    return params.get("resource_name") or params.get("label_selector") or None


@register("delete", destructive=True, confirm_name=delete_confirm_name)
def delete(ctx: StepContext, session: ClusterSession, *, resource_type: DeletableKind,
           resource_name: str | None = None, label_selector: str | None = None,
           propagation: Literal["background", "foreground", "orphan"] = "background",
           wait: bool = True, timeout: float = 120.0,
           ignore_missing: bool = False) -> OperationResult:
    """Delete an object by name, or every object of a kind a label selector matches (as
    `kubectl delete --wait`), and wait until they are gone. Runs only when `confirm` is the
    object's name (or the selector); otherwise the run waits for an approval.

    Args:
        resource_type: The kind of object.
        resource_name: The object's name (give this or label_selector).
        label_selector: Delete every object of the kind matching it, e.g. app=web.
        propagation: What happens to dependents: background (default), foreground
            (dependents first) or orphan (dependents are left).
        wait: Wait until every deleted object is gone.
        timeout: Seconds to wait.
        ignore_missing: A missing object, or a selector matching nothing, is not an error.
    """
    kind = DELETE_KINDS.get(str(resource_type).strip().lower())
    if kind is None:
        raise StepFailed(f"delete: resource_type {resource_type!r} is not one of "
                         f"{', '.join(DELETE_KINDS)}")
    outputs = run_executor(execute_k8s_delete, ctx, session, K8sDeleteConfig, "delete",
                           resource_type=resource_type, resource_name=resource_name,
                           label_selector=label_selector, propagation=propagation, wait=wait,
                           timeout=timeout, ignore_missing=ignore_missing).outputs
    target = ObjectRef(session.name, kind, str(resource_name or label_selector),
                       session.namespace)
    deleted = outputs.get("deleted", "")
    count = int(outputs.get("count") or 0)
    what = (f"{count} {kind.lower()}s matching {label_selector!r}" if label_selector
            else str(target))
    summary = f"deleted {what}" if count else f"nothing to delete: {what} was not there"
    return OperationResult(target, summary, dict(outputs),
                           before={"objects": deleted or "none"},
                           after={"objects": "none" if wait or not count else "terminating"},
                           changed=count > 0)


@register("logs", read_only=True)
def logs(ctx: StepContext, session: ClusterSession, *, pod: str | None = None,
         pod_selector: str | None = None, container: str | None = None,
         tail_lines: int | None = None, since: str | None = None, previous: bool = False,
         follow: bool = False, timeout: float | None = None) -> OperationResult:
    """The logs of a pod, or of every pod a label selector matches (lines prefixed with the
    pod's name), into the run's log; the last 200 lines are published as an artifact.

    Args:
        pod: The pod's name (give this or pod_selector).
        pod_selector: A label selector, e.g. app=web.
        container: The container (empty: the pod's default container, else the first).
        tail_lines: Only the last N lines of each pod.
        since: Only lines newer than this: seconds, or 10m, 1h.
        previous: The previous (crashed) container's log.
        follow: Keep streaming until the pods end or the timeout.
        timeout: Seconds to follow (empty: 300).
    """
    outputs = run_executor(execute_k8s_logs, ctx, session, K8sLogsConfig, "logs", pod=pod,
                           pod_selector=pod_selector, container=container,
                           tail_lines=tail_lines, since=since, previous=previous,
                           follow=follow, timeout=timeout).outputs
    target = ObjectRef(session.name, "Pod", str(pod or pod_selector), session.namespace)
    return OperationResult(
        target, f"read {outputs.get('lines', '0')} log lines of pod(s) "
                f"{outputs.get('pods', '')}", dict(outputs),
        markdown="The last lines are in this run's k8s_logs artifact.", changed=False)
