"""The health assessment beyond Argo CD's own cases: the kinds and states its testdata does
not cover, each place where ansflow deliberately differs, and hostile objects."""

from __future__ import annotations

import pytest
from hostile_values import HOSTILE as SHARED_HOSTILE

from ansflow.engines.object_health import (
    DEGRADED,
    HEALTHY,
    MAX_MESSAGE,
    MISSING,
    PROGRESSING,
    STATUSES,
    SUSPENDED,
    UNKNOWN,
    assess,
    worse,
    worst,
)


def _pod(phase="Running", policy="Always", containers=(), inits=(), ready=False, **status):
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p"},
            "spec": {"restartPolicy": policy},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": list(containers),
                       "initContainerStatuses": list(inits), **status}}


def _waiting(name, reason, message=""):
    return {"name": name, "ready": False, "restartCount": 3,
            "state": {"waiting": {"reason": reason, "message": message}}}


def _job(*conditions, **status):
    return {"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": "j"},
            "status": {"conditions": list(conditions), **status}}


CASES = [
    # (what, object, kind argument, status, message fragment)
    ("nothing there", None, "Deployment", MISSING, "deployment not found"),
    ("a kind without rules", {"kind": "Node", "apiVersion": "v1"}, None, UNKNOWN, "kind Node"),
    ("a custom resource", {"kind": "Rollout", "apiVersion": "argoproj.io/v1alpha1"}, None,
     UNKNOWN, "kind Rollout"),
    ("an old API group", {"kind": "Deployment", "apiVersion": "extensions/v1beta1"}, None,
     UNKNOWN, "API group 'extensions'"),
    ("a list item carries no kind", {"metadata": {"name": "x"}, "status": {"phase": "Bound"}},
     "PersistentVolumeClaim", HEALTHY, "claim Bound"),
    ("a lost claim", {"kind": "PersistentVolumeClaim", "status": {"phase": "Lost"}}, None,
     DEGRADED, "Lost"),
    ("an active namespace", {"kind": "Namespace", "status": {"phase": "Active"}}, None,
     HEALTHY, "Active"),
    ("a namespace going away", {"kind": "Namespace", "status": {"phase": "Terminating"}},
     None, PROGRESSING, "Terminating"),
    ("anything being deleted", {"kind": "Deployment", "metadata": {
        "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"paused": True}}, None,
     PROGRESSING, "Pending deletion"),
    ("a ConfigMap only exists", {"kind": "ConfigMap", "data": {"a": "b"}}, None, HEALTHY,
     "exists"),
    ("a replica failure", {"kind": "ReplicaSet", "apiVersion": "apps/v1",
                           "metadata": {"generation": 1}, "spec": {"replicas": 2},
                           "status": {"observedGeneration": 1, "conditions": [
                               {"type": "ReplicaFailure", "status": "True",
                                "message": "pods \"x\" is forbidden: exceeded quota"}]}},
     None, DEGRADED, "exceeded quota"),
    ("a ReplicaSet short of pods", {"kind": "ReplicaSet", "metadata": {"generation": 1},
                                    "spec": {"replicas": 2}, "status": {
                                        "observedGeneration": 1, "availableReplicas": 1}},
     None, PROGRESSING, "1 out of 2"),
    ("a ReplicaSet scaled to zero", {"kind": "ReplicaSet", "metadata": {"generation": 3},
                                     "spec": {"replicas": 0},
                                     "status": {"observedGeneration": 3}},
     None, HEALTHY, "0 of 0"),
    ("a DaemonSet rolling", {"kind": "DaemonSet", "metadata": {"name": "d", "generation": 2},
                             "spec": {"updateStrategy": {"type": "RollingUpdate"}},
                             "status": {"observedGeneration": 2, "desiredNumberScheduled": 3,
                                        "updatedNumberScheduled": 1}},
     None, PROGRESSING, "1 out of 3"),
    ("a StatefulSet waiting for pods", {"kind": "StatefulSet", "metadata": {"generation": 1},
                                        "spec": {"replicas": 3},
                                        "status": {"observedGeneration": 1,
                                                   "readyReplicas": 1}},
     None, PROGRESSING, "Waiting for 2 pods"),
    ("a Deployment past its deadline", {
        "kind": "Deployment", "metadata": {"name": "web", "generation": 2},
        "spec": {"replicas": 1}, "status": {"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False",
             "reason": "ProgressDeadlineExceeded"}]}},
     None, DEGRADED, "exceeded its progress deadline"),
    ("a ClusterIP service", {"kind": "Service", "spec": {"type": "ClusterIP"}}, None, HEALTHY,
     "ClusterIP service"),
    ("a load balancer not there yet", {"kind": "Service", "spec": {"type": "LoadBalancer"},
                                       "status": {"loadBalancer": {}}},
     None, PROGRESSING, "load balancer"),
    ("a CronJob never looked at", {"kind": "CronJob", "spec": {}}, None, PROGRESSING,
     "Waiting for CronJob"),
    ("an HPA with a broken annotation", {
        "kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1", "metadata": {
            "annotations": {"autoscaling.alpha.kubernetes.io/conditions": "[not json"}}},
     None, UNKNOWN, "conditions annotation"),
    # Pods: the messages name the container, the reason and the exit code.
    ("a crash loop", _pod(containers=[_waiting("web", "CrashLoopBackOff", "back-off 10s")]),
     None, DEGRADED, "container 'web': CrashLoopBackOff: back-off 10s"),
    ("an image that cannot be pulled", _pod(phase="Pending", containers=[
        _waiting("web", "ErrImagePull")]), None, DEGRADED, "ErrImagePull"),
    ("a restarted container, not ready", _pod(containers=[{
        "name": "web", "restartCount": 1, "state": {"running": {}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}}]),
     None, DEGRADED, "last exit code 3 (Error)"),
    ("a failed pod names its container", _pod(phase="Failed", policy="Never", containers=[{
        "name": "job", "state": {"terminated": {"exitCode": 7, "reason": "Error"}}}]),
     None, DEGRADED, "container 'job' failed with exit code 7"),
    ("an OOM kill", _pod(phase="Failed", policy="Never", containers=[{
        "name": "job", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]),
     None, DEGRADED, "OOMKilled"),
    ("an unschedulable pod says why", {
        "kind": "Pod", "spec": {"restartPolicy": "Always"}, "status": {
            "phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available"}]}},
     None, PROGRESSING, "Unschedulable: 0/1 nodes are available"),
    ("a pod with no phase", {"kind": "Pod", "spec": {}, "status": {}}, None, UNKNOWN,
     "phase (none)"),
    # Deliberate differences from Argo CD (docs/upkeep.md).
    ("an init container crash loop is Degraded (Argo: Progressing)",
     _pod(phase="Pending", inits=[_waiting("migrate", "CrashLoopBackOff")]), None, DEGRADED,
     "container 'migrate': CrashLoopBackOff"),
    ("a resumed Job runs (Argo: Healthy)", _job(
        {"type": "Suspended", "status": "False", "reason": "JobResumed"}, active=1),
     None, PROGRESSING, "1 active"),
    ("a suspended Job", _job({"type": "Suspended", "status": "True", "message": "Job suspended"}),
     None, SUSPENDED, "Job suspended"),
    ("a failed Job says why", _job({"type": "Failed", "status": "True",
                                    "reason": "BackoffLimitExceeded",
                                    "message": "Job has reached the specified backoff limit"}),
     None, DEGRADED, "backoff limit"),
    ("a complete Job", _job({"type": "Complete", "status": "True"}), None, HEALTHY,
     "Job completed"),
]


@pytest.mark.parametrize(("what", "obj", "kind", "status", "fragment"), CASES,
                         ids=[c[0] for c in CASES])
def test_assessment(what, obj, kind, status, fragment):
    health = assess(obj, kind)
    assert health.status == status, f"{what}: {health}"
    assert fragment in health.message, f"{what}: {health.message!r}"


def test_order_is_argos():
    assert STATUSES == (HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN)
    assert worse(HEALTHY, DEGRADED) and not worse(DEGRADED, PROGRESSING)
    assert worst([HEALTHY, PROGRESSING, SUSPENDED]) == PROGRESSING
    assert worst([]) == HEALTHY


HOSTILE = [h.value("/tmp/hv-health") for h in SHARED_HOSTILE] + [
    "line\nbreak\r\x1b[31mred", "{{ secrets.x }}", "x" * 1_000_000]


@pytest.mark.parametrize("value", HOSTILE, ids=[h.name for h in SHARED_HOSTILE]
                         + ["ansi", "template", "huge"])
def test_hostile_messages_are_one_bounded_printable_line(value):
    objs = [
        _pod(containers=[_waiting(value, value, value)]),
        _pod(phase="Failed", message=value),
        _job({"type": "Failed", "status": "True", "message": value}),
        {"kind": "ReplicaSet", "spec": {"replicas": 1}, "status": {"conditions": [
            {"type": "ReplicaFailure", "status": "True", "message": value}]}},
        {"kind": "StatefulSet", "metadata": {"generation": 1}, "spec": {},
         "status": {"observedGeneration": 1, "updateRevision": value}},
        {"kind": "PersistentVolumeClaim", "status": {"phase": value}},
        {"kind": value},
        {"kind": "Deployment", "apiVersion": value + "/v1"},
    ]
    for obj in objs:
        health = assess(obj)
        assert health.status in STATUSES
        assert health.message.isprintable() and 0 < len(health.message) <= MAX_MESSAGE


GARBAGE = [
    {"kind": "Deployment", "spec": "nope", "status": ["a"]},
    {"kind": "Deployment", "metadata": {"generation": "2"}, "spec": {"replicas": "3"},
     "status": {"conditions": "all good", "updatedReplicas": None}},
    {"kind": "Pod", "spec": {"restartPolicy": "Always"}, "status": {
        "containerStatuses": [None, 3, {"state": "waiting"}, {"state": {"waiting": "x"}}],
        "phase": ["Running"]}},
    {"kind": "Job", "status": {"conditions": [None, {"type": None}]}},
    {"kind": "HorizontalPodAutoscaler", "status": {"conditions": {"a": 1}}},
    {"kind": "StatefulSet", "spec": {"updateStrategy": {"type": "RollingUpdate",
                                                        "rollingUpdate": {"partition": "2"}}},
     "metadata": {"generation": 1}, "status": {"observedGeneration": 1}},
    {"kind": "CronJob", "spec": {"suspend": "yes"}, "status": {"lastScheduleTime": 5,
                                                               "lastSuccessfulTime": "x"}},
    {"kind": "Service", "spec": None, "status": {"loadBalancer": {"ingress": "1.2.3.4"}}},
    "not an object",
    [],
]


@pytest.mark.parametrize("obj", GARBAGE, ids=[str(i) for i in range(len(GARBAGE))])
def test_odd_shapes_never_raise(obj):
    health = assess(obj, "Deployment" if not isinstance(obj, dict) else None)
    assert health.status in STATUSES and health.message
