"""The k8s_scale step: set a Deployment's, StatefulSet's or ReplicaSet's replicas through its
/scale subresource, then wait until the new count is ready."""

from __future__ import annotations

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import request
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_rollout import SCALED, evaluate
from ansflow.runtime.k8s_session import api_errors
from ansflow.runtime.k8s_watch import wait_for
from ansflow.runtime.k8s_workload import (
    MERGE_PATCH,
    SCALABLE_TYPES,
    patch,
    replica_count,
    workload_session,
)
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.conditions import WaitCondition
from ansflow.spec.steps import K8sScaleConfig


@step_executor
def execute_k8s_scale(ctx: StepContext, config: K8sScaleConfig) -> StepResult:
    """Scale through the /scale subresource (as kubectl scale), then wait for the count.

    Returns:
        Outputs ``previous_replicas`` and ``replicas`` (the new count).

    Raises:
        StepFailed: unknown cluster or object (close names suggested), refused by the API
            server (403 names the verb, object, namespace and cluster), a stuck pod.
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel while waiting.
    """
    with workload_session(ctx, config, SCALABLE_TYPES, "k8s_scale") as target:
        api, ns, cluster, res, ref = (target.api, target.namespace, target.cluster,
                                      target.res, target.ref)
        with api_errors(cluster, f"get {res.plural}/scale {config.resource_name!r} in "
                                 f"namespace {ns}"):
            scale = request(api, "GET", res.path(ns, config.resource_name) + "/scale")
        previous = replica_count(((scale.get("spec") or {}) if isinstance(scale, dict)
                                  else {}).get("replicas", 0))
        with api_errors(cluster, f"patch {res.plural}/scale {config.resource_name!r} in "
                                 f"namespace {ns}"):
            patch(api, res, config.resource_name, ns, {"spec": {"replicas": config.replicas}},
                  MERGE_PATCH, subresource="scale")
        was = "?" if previous is None else str(previous)
        ctx.emit(f"scaled {ref} from {was} to {config.replicas} replicas on cluster "
                 f"{cluster!r}" if previous != config.replicas else
                 f"{ref} already has {previous} replicas on cluster {cluster!r}")
        if config.wait:
            cond = WaitCondition(SCALED)
            with api_errors(cluster, f"wait for {ref}"):
                obj = wait_for(api, ctx, res, config.resource_name, ns, cond,
                               deadline=target.deadline, fail_fast=config.fail_fast,
                               what=f"{config.replicas} ready replicas")
            if obj is not None:
                ctx.emit(evaluate(obj, cond).progress)
    return StepResult(outputs={"previous_replicas": was,
                               "replicas": str(config.replicas)})


@step_task("k8s_scale", execute_k8s_scale)
def k8s_scale(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_name: str,
    replicas: int,
    resource_type: str = "deployment",
    namespace: str | None = None,
    wait: bool = True,
    timeout: float = 300.0,
    fail_fast: bool = True,
) -> StepOutput:
    """Scale a Deployment, StatefulSet or ReplicaSet through its ``/scale`` subresource (as
    ``kubectl scale`` does), then wait until the new count of replicas is ready.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_name: The object's name.
        replicas: The new count (0 or more).
        resource_type: ``deployment``, ``statefulset`` or ``replicaset`` (``deploy``,
            ``sts``, ``rs``).
        wait: Wait until ``replicas`` pods are ready and no others are left.
        timeout: Seconds to wait.
        fail_fast: Fail early when a new pod is stuck (CrashLoopBackOff, ImagePullBackOff).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``previous_replicas`` and ``replicas``.

    Raises:
        StepFailed: an unknown object (the close names suggested) or a refusal of the API
            server. StepTimedOut / StepCancelled: stopped at the deadline / on cancel.

    Example:
        ```python
        from ansflow.tasks import k8s_scale

        k8s_scale(cluster="prod", namespace="shop", resource_name="web", replicas=5)
        ```
    """
    return run_cluster_task("k8s_scale", execute_k8s_scale, K8sScaleConfig, locals())
