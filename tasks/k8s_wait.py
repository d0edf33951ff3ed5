"""The k8s_wait step: watch one object until it reaches a condition (rollout, ready, ...)."""

from __future__ import annotations

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import resolve_type
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_deadline, step_executor
from ansflow.runtime.k8s_rollout import evaluate
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.k8s_watch import wait_for
from ansflow.runtime.public import (
    StepOutput,
    cluster_argument,
    config_of,
    run_standalone,
    step_task,
)
from ansflow.spec.conditions import parse_condition
from ansflow.spec.steps import K8sWaitConfig


@step_executor
def execute_k8s_wait(ctx: StepContext, config: K8sWaitConfig) -> StepResult:
    """Wait until an object reaches a condition, the way kubectl rollout status / wait do.

    Returns:
        Outputs ``resource`` (kind/name) and ``status`` (the last progress line).

    Raises:
        StepFailed: bad condition, unknown cluster/kind/object, failed rollout, stuck pod.
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel.
    """
    try:
        cond = parse_condition(config.condition)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    deadline = step_deadline(ctx, config.timeout)
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, namespace = session.api, session.namespace
        action = f"resolve resource type {config.resource_type!r}"
        with api_errors(config.cluster, action):
            res = resolve_type(api, config.resource_type)
        ref = res.ref(config.resource_name, namespace)
        ctx.emit(f"waiting for {ref} ({config.condition}) on cluster {config.cluster!r}")
        with api_errors(config.cluster, f"wait for {ref}"):
            obj = wait_for(api, ctx, res, config.resource_name,
                           namespace if res.namespaced else None, cond,
                           deadline=deadline, fail_fast=config.fail_fast,
                           what=config.condition)
    status = "deleted" if obj is None else (evaluate(obj, cond).progress or "done")
    return StepResult(outputs={"resource": f"{res.kind.lower()}/{config.resource_name}",
                               "status": status})


@step_task("k8s_wait", execute_k8s_wait)
def k8s_wait(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_type: str,
    resource_name: str,
    namespace: str | None = None,
    condition: str = "available",
    timeout: float = 300.0,
    fail_fast: bool = True,
) -> StepOutput:
    """Wait until an object reaches a condition, as ``kubectl rollout status`` / ``kubectl
    wait`` do, failing early on stuck pods (CrashLoopBackOff, ImagePullBackOff).

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_type: ``deployment``, ``statefulset``, ``daemonset``, ``job``, ``pod``, or
            any kind or short name the cluster serves (``deploy``, ``cm``...).
        resource_name: The object's name.
        condition: ``available``/``rollout``, ``ready``, ``complete``, ``deleted``,
            ``condition=T[=V]`` or ``jsonpath={expr}[=V]``.
        timeout: Seconds to wait.
        fail_fast: Fail early when a pod of the rollout is stuck.

    Returns:
        ``exit_code`` (None) and ``outputs``: ``resource`` (``kind/name``) and ``status``.

    Raises:
        StepFailed: a bad condition, an unknown object or kind, a failed rollout or a stuck
            pod. StepTimedOut / StepCancelled: stopped at the deadline / on cancel.

    Example:
        ```python
        from ansflow.tasks import k8s_wait

        k8s_wait(cluster="prod", namespace="shop", resource_type="deployment",
                 resource_name="web", timeout=600)
        ```
    """
    cluster, blocks = cluster_argument(cluster)
    return run_standalone("k8s_wait", execute_k8s_wait, config_of(K8sWaitConfig, locals()),
                          blocks=blocks)
