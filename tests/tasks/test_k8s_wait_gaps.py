"""k8s_wait measured against Argo CD's health: the waits that used to run into their timeout
(a suspended Job, a ReplicaSet's default wait, a container that exited with an error, a
Failed pod under the Ready wait), first as pure verdicts, then on the dev cluster's real node
(real containers that really exit)."""

from __future__ import annotations

import time

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, REAL_NODE_POD_SPEC
from kubernetes import client as k8s
from polling import until

from ansflow.errors import StepFailed
from ansflow.runtime.k8s_rollout import evaluate, stuck_pod
from ansflow.spec.conditions import parse_condition
from ansflow.spec.steps import K8sWaitConfig
from ansflow.tasks.k8s_wait import execute_k8s_wait

# ---- pure verdicts --------------------------------------------------------------------------


def _job(suspend=False, conditions=()):
    return {"kind": "Job", "metadata": {"name": "j"}, "spec": {"suspend": suspend},
            "status": {"conditions": list(conditions)}}


def test_a_suspended_job_fails_at_once_like_a_paused_deployment():
    complete = parse_condition("complete")
    assert "is suspended, so it cannot complete" in evaluate(_job(True), complete).failed
    suspended = {"type": "Suspended", "status": "True", "reason": "JobSuspended"}
    assert evaluate(_job(False, [suspended]), complete).failed
    resumed = {"type": "Suspended", "status": "False", "reason": "JobResumed"}
    verdict = evaluate(_job(False, [resumed]), complete)
    assert not verdict.failed and not verdict.done
    # Already finished: its outcome stands even if someone suspends it afterwards.
    done = {"type": "Complete", "status": "True"}
    assert evaluate(_job(True, [done]), complete).done


def _rs(replicas=2, available=0, ready=0, generation=1, observed=1, failure=None):
    conditions = [{"type": "ReplicaFailure", "status": "True", "message": failure}] \
        if failure else []
    return {"kind": "ReplicaSet", "metadata": {"name": "rs", "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "availableReplicas": available,
                       "readyReplicas": ready, "conditions": conditions}}


def test_a_replicaset_wait_reads_its_replica_counts():
    available, ready = parse_condition("available"), parse_condition("ready")
    assert evaluate(_rs(available=2, ready=2), available).done
    assert evaluate(_rs(available=1, ready=2), ready).done
    verdict = evaluate(_rs(available=1, ready=2), available)
    assert not verdict.done and "1 of 2 replicas are available" in verdict.progress
    assert not evaluate(_rs(available=2, generation=2), available).done
    assert evaluate(_rs(replicas=0), available).done
    stalled = evaluate(_rs(failure='pods "x" is forbidden: exceeded quota'), available)
    assert not stalled.failed and "exceeded quota" in stalled.progress


def _pod(phase="Running", policy="Always", ready=False, **container):
    cs = {"name": "main", "ready": ready, "restartCount": 0, "state": {"running": {}}}
    cs.update(container)
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": policy},
            "status": {"phase": phase, "containerStatuses": [cs], "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


EXITED = {"terminated": {"exitCode": 3, "reason": "Error"}}


def test_a_container_that_exited_with_an_error_is_reported_before_crash_loop_back_off():
    # restartPolicy Never: final at once, when the wait is on the pod itself.
    never = _pod(policy="Never", state=EXITED)
    assert stuck_pod([never]) is None  # a Job's pod: the Job may retry
    assert "exited with an error (restartPolicy Never" in stuck_pod([never], final_exits=True)
    # Restarting: just exited (before the restart), or restarted after an error, not ready.
    assert "'main' exited with an error" in stuck_pod([_pod(state=EXITED)])
    restarted = _pod(restartCount=1, lastState=EXITED)
    assert "was restarted after an error and is not ready (1 restart(s))" \
        in stuck_pod([restarted])
    assert stuck_pod([restarted], restarts=False) is None  # a Job's pods
    assert stuck_pod([_pod(ready=True, restartCount=1, lastState=EXITED)]) is None
    assert stuck_pod([_pod(state={"terminated": {"exitCode": 0}})]) is None
    clean_exit = {"terminated": {"exitCode": 0, "reason": "Completed"}}
    assert stuck_pod([_pod(restartCount=1, lastState=clean_exit)]) is None


def test_a_failed_pod_under_the_ready_wait_fails_at_once_naming_the_exit_code():
    failed = _pod(phase="Failed", policy="Never", state=EXITED)
    for text in ("ready", "available"):
        verdict = evaluate(failed, parse_condition(text))
        assert "has ended (Failed) and will never be ready" in verdict.failed
        assert "container 'main' failed with exit code 3" in verdict.failed
    succeeded = _pod(phase="Succeeded", policy="Never",
                     state={"terminated": {"exitCode": 0}})
    assert "will never be ready: it completed" in evaluate(succeeded,
                                                           parse_condition("ready")).failed
    assert evaluate(_pod(ready=True), parse_condition("ready")).done


# ---- on the real node -----------------------------------------------------------------------

real_node = pytest.mark.k8s


def _config(cluster, ns: str, **kw) -> K8sWaitConfig:
    return K8sWaitConfig(cluster=cluster.block_name, namespace=ns, **kw)


def _pod_template(command: str, policy: str = "Always") -> dict:
    return {"metadata": {"labels": {"app": "gap"}}, "spec": {
        **REAL_NODE_POD_SPEC, "restartPolicy": policy, "terminationGracePeriodSeconds": 0,
        "containers": [{"name": "main", "image": BUSYBOX_IMAGE,
                        "command": ["sh", "-c", command]}]}}


def _failure(cluster, make_ctx, ns: str, timeout: float = 120, **kw) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        execute_k8s_wait(make_ctx("k8s_wait"), _config(cluster, ns, timeout=timeout, **kw))
    return str(failed.value), time.monotonic() - started


@real_node
def test_real_node_a_suspended_job_fails_at_once(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("gap-job")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "later"},
           "spec": {"suspend": True, "template": _pod_template("echo ran", "Never")}}
    with real_node_cluster.client() as api:
        k8s.BatchV1Api(api).create_namespaced_job(ns, job)
    message, seconds = _failure(real_node_cluster, make_ctx, ns, resource_type="job",
                                resource_name="later", condition="complete")
    assert "job 'later' is suspended, so it cannot complete" in message
    assert seconds < 20  # not its 120 s timeout


@real_node
def test_real_node_a_replicaset_default_wait_finishes(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("gap-rs")
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "plain"},
          "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "gap"}},
                   "template": _pod_template("sleep 3600")}}
    with real_node_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_replica_set(ns, rs)
    result = execute_k8s_wait(make_ctx("k8s_wait"), _config(
        real_node_cluster, ns, resource_type="replicaset", resource_name="plain", timeout=180))
    assert result.outputs["status"] == "replicaset 'plain': 2 of 2 replicas are available"
    with real_node_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        assert apps.read_namespaced_replica_set("plain", ns).status.available_replicas == 2
        apps.delete_namespaced_replica_set("plain", ns)  # its real containers go now


def _never_ready(template: dict) -> dict:
    """Without a readiness probe, a container is ready the moment it runs, so a Ready wait
    can be done in the instant between its start and its crash (as kubectl's would). Real
    services have one: this one never passes."""
    template["spec"]["containers"][0]["readinessProbe"] = {
        "exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}
    return template


def _exiting_pod(name: str, command: str) -> dict:
    pod = {"apiVersion": "v1", "kind": "Pod", **_never_ready(_pod_template(command, "Never"))}
    pod["metadata"]["name"] = name
    return pod


@real_node
def test_real_node_a_failed_pod_fails_the_ready_wait_at_once(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("gap-pod")
    with real_node_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, _exiting_pod("once", "echo about to fail; exit 3"))
        until(lambda: core.read_namespaced_pod("once", ns).status.phase == "Failed", 120,
              "the pod Failed")
    # fail_fast off: the Failed phase alone ends the wait (no look at its containers).
    message, seconds = _failure(real_node_cluster, make_ctx, ns, resource_type="pod",
                                resource_name="once", condition="ready", fail_fast=False)
    assert "pod 'once' has ended (Failed) and will never be ready" in message
    assert "container 'main' failed with exit code 3" in message
    assert seconds < 15  # not its 120 s timeout


@real_node
def test_real_node_a_container_that_exits_with_an_error_is_reported_with_its_exit_code(
        real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("gap-exit")
    with real_node_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_pod(
            ns, _exiting_pod("soon", "echo the-last-words; sleep 3; exit 4"))
    message, seconds = _failure(real_node_cluster, make_ctx, ns, resource_type="pod",
                                resource_name="soon", condition="ready")
    # Whichever is seen first: the container ended (fail fast) or the pod Failed.
    assert ("container 'main' exited with an error (restartPolicy Never" in message
            and "it exited with code 4 (Error)" in message and "the-last-words" in message) \
        or "container 'main' failed with exit code 4" in message, message
    assert seconds < 90


@real_node
def test_real_node_a_crashing_deployment_fails_with_exit_code_and_last_lines(
        real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("gap-crash")
    template = _never_ready(_pod_template("echo boom-from-the-container; sleep 1; exit 3"))
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "crash"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "gap"}},
                       "template": template}}
    with real_node_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, deploy)
    message, seconds = _failure(real_node_cluster, make_ctx, ns, resource_type="deployment",
                                resource_name="crash", timeout=240)
    assert "container 'main'" in message and "it exited with code 3 (Error)" in message
    assert "boom-from-the-container" in message
    assert seconds < 120
    with real_node_cluster.client() as api:
        k8s.AppsV1Api(api).delete_namespaced_deployment("crash", ns)
