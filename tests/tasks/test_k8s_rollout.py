"""Pure rollout/condition decisions of the k8s waits, on dict fixtures (no cluster)."""

from __future__ import annotations

import pytest

from ansflow.errors import StepFailed
from ansflow.runtime.k8s_rollout import (
    WaitCondition,
    evaluate,
    jsonpath_status,
    rollout_status,
    selector_string,
    stuck_pod,
)
from ansflow.spec.conditions import parse_condition
from ansflow.tasks.k8s_exec import LineEmitter, exec_argv, pick_container, pick_pod


def deployment(generation=2, observed=2, replicas=3, updated=3, total=3, available=3,
               paused=False, conditions=()):
    return {
        "kind": "Deployment", "metadata": {"name": "web", "generation": generation},
        "spec": {"replicas": replicas, "paused": paused},
        "status": {"observedGeneration": observed, "updatedReplicas": updated,
                   "replicas": total, "availableReplicas": available,
                   "conditions": list(conditions)},
    }


@pytest.mark.parametrize("kwargs, done, progress", [
    (dict(), True, "successfully rolled out"),
    (dict(generation=3), False, "spec update to be observed"),
    (dict(updated=1), False, "1 of 3 new replicas have been updated"),
    (dict(total=5), False, "2 old replicas are pending termination"),
    (dict(available=2), False, "2 of 3 updated replicas are available"),
])
def test_deployment_rollout_status_follows_kubectl(kwargs, done, progress):
    verdict = rollout_status(deployment(**kwargs))
    assert verdict.done is done and progress in verdict.progress and verdict.failed is None


def test_deployment_progress_deadline_exceeded_and_paused_fail():
    stalled = deployment(updated=1, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}])
    assert "exceeded its progress deadline" in rollout_status(stalled).failed
    # Waiting on an undo, the failed rollout's deadline flag is not a failure (yet).
    assert not rollout_status(stalled, after_rollback=True).failed
    assert "is paused" in rollout_status(deployment(updated=1, paused=True)).failed


def test_statefulset_and_daemonset_rollout_status():
    sts = {"kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
           "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
           "status": {"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
                      "updateRevision": "r2", "currentRevision": "r1"}}
    assert not rollout_status(sts).done
    sts["status"]["currentRevision"] = "r2"
    assert rollout_status(sts).done
    sts["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}
    sts["status"].update(updatedReplicas=1, currentRevision="r1")
    assert rollout_status(sts).done
    sts["spec"]["updateStrategy"] = {"type": "OnDelete"}
    assert "RollingUpdate" in rollout_status(sts).failed
    ds = {"kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1}, "spec": {},
          "status": {"observedGeneration": 1, "desiredNumberScheduled": 2,
                     "updatedNumberScheduled": 2, "numberAvailable": 1}}
    assert "1 of 2 updated pods are available" in rollout_status(ds).progress
    ds["status"]["numberAvailable"] = 2
    assert rollout_status(ds).done


def test_condition_is_case_insensitive_and_stale_conditions_do_not_count():
    obj = {"kind": "Thing", "metadata": {"generation": 2},
           "status": {"conditions": [{"type": "Ready", "status": "True",
                                      "observedGeneration": 1}]}}
    assert not evaluate(obj, parse_condition("condition=ready")).done
    obj["status"]["conditions"][0]["observedGeneration"] = 2
    assert evaluate(obj, parse_condition("condition=ready=TRUE")).done


def test_jsonpath_missing_is_not_yet_and_maps_are_errors():
    obj = {"status": {"phase": "Running", "ready": True, "items": [{"a": 1}]}}
    assert jsonpath_status(obj, "status.phase", "Running").done
    assert jsonpath_status(obj, "status.ready", "true").done
    assert jsonpath_status(obj, "status.items[0].a", "1").done
    assert not jsonpath_status(obj, "status.nope", None).done
    assert jsonpath_status(obj, "status.phase", None).done
    assert "not a single value" in jsonpath_status(obj, "status", None).failed


def test_job_complete_and_failed():
    job = {"kind": "Job", "metadata": {"name": "j"}, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}
    assert "BackoffLimitExceeded" in evaluate(job, WaitCondition("complete")).failed
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert evaluate(job, WaitCondition("complete")).done


def test_stuck_pod_names_pod_container_and_reason():
    pods = [
        {"metadata": {"name": "ok"}, "status": {"containerStatuses": [
            {"name": "main", "state": {"running": {}}}]}},
        {"metadata": {"name": "bad"}, "status": {"containerStatuses": [
            {"name": "main", "state": {"waiting": {"reason": "ImagePullBackOff",
                                                   "message": "no such image"}}}]}},
    ]
    assert stuck_pod(pods) == "pod 'bad', container 'main': ImagePullBackOff: no such image"
    assert stuck_pod(pods[:1]) is None


def test_selector_string():
    sel = {"matchLabels": {"b": "2", "a": "1"},
           "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                                {"key": "e", "operator": "Exists"}]}
    assert selector_string(sel) == "a=1,b=2,t in (x,y),e"


def _pod(name, created, ready=True, phase="Running", containers=("main",)):
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": c} for c in containers]},
            "status": {"phase": phase, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def test_exec_picks_the_oldest_ready_pod_and_a_sensible_container():
    pods = [_pod("b", "2026-01-02"), _pod("a", "2026-01-01", ready=False),
            _pod("c", "2026-01-01")]
    assert pick_pod(pods)["metadata"]["name"] == "c"
    assert pick_pod([_pod("x", "1", phase="Pending")]) is None
    two = _pod("p", "1", containers=("app", "sidecar"))
    assert pick_container(two, None)[0] == "app"
    two["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "sidecar"}
    assert pick_container(two, None)[0] == "sidecar"
    with pytest.raises(StepFailed, match="has no container 'nope'"):
        pick_container(two, "nope")


def test_exec_argv_and_line_splitting(make_ctx, caplog):
    assert exec_argv("echo hi && true") == ["sh", "-e", "-c", "echo hi && true"]
    assert exec_argv(["ls", "-l"]) == ["ls", "-l"]
    ctx = make_ctx("k8s_exec")
    emitter = LineEmitter(ctx)
    emitter("stdout", b"one\ntw")
    emitter("stderr", b"warn")
    emitter("stdout", b"o\nthree")
    emitter.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["one", "two", "three", "warn"] and emitter.tail[-1] == "three"
