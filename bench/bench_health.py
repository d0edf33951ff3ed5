"""Health assessment of 10,000 objects (pure, no cluster): ansflow's ``assess`` per object.

    python bench/bench_health.py [--objects 10000] [--reps 5]

The objects are what a cluster of that size holds, in its proportions: mostly pods (running
and ready, a few crash-looping, pending or failed), then ReplicaSets, Deployments, Services,
Jobs, ConfigMaps and a few of each other kind; each is a full object as the API server lists
it (managedFields, pod spec, conditions), built once. The peer is the cost of reading the
same objects back from JSON (``json.loads`` of the list, what any client pays first), so
the ratio says what health adds on top of just receiving the list. Target: <= 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ansflow.engines.object_health import assess  # noqa: E402

TARGET = 0.2


def _meta(kind: str, i: int) -> dict:
    return {"name": f"{kind.lower()}-{i}", "namespace": f"ns-{i % 10}", "uid": f"uid-{kind}-{i}",
            "resourceVersion": str(1000 + i), "generation": 2,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"app": f"app-{i % 50}", "pod-template-hash": "6d4cf56db6"},
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "apiVersion": "v1", "time": "2026-12-01T10:00:00Z",
                               "fieldsType": "FieldsV1", "fieldsV1": {
                                   "f:status": {"f:conditions": {}, "f:phase": {}}}}]}


def _container_status(i: int, state: dict, restarts: int = 0, last: dict | None = None) -> dict:
    return {"name": "web", "image": "registry.local/app:1", "imageID": "sha256:abc",
            "containerID": f"containerd://{i:064x}", "ready": "running" in state,
            "restartCount": restarts, "started": True, "state": state,
            "lastState": last or {}}


def pod(i: int) -> dict:
    roll = i % 100
    if roll < 94:
        phase, ready = "Running", True
        cs = _container_status(i, {"running": {"startedAt": "2026-12-01T10:00:05Z"}})
    elif roll < 96:
        phase, ready = "Running", False
        cs = _container_status(i, {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": "back-off 5m0s restarting"}}, 12,
                               {"terminated": {"exitCode": 1, "reason": "Error"}})
    elif roll < 98:
        phase, ready = "Pending", False
        cs = _container_status(i, {"waiting": {"reason": "ContainerCreating"}})
    else:
        phase, ready = "Failed", False
        cs = _container_status(i, {"terminated": {"exitCode": 2, "reason": "Error"}})
    conditions = [{"type": t, "status": "True" if ready or t != "Ready" else "False",
                   "lastTransitionTime": "2026-12-01T10:00:05Z"}
                  for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"metadata": _meta("Pod", i), "spec": {
        "restartPolicy": "Always" if phase != "Failed" else "Never", "nodeName": "node-1",
        "containers": [{"name": "web", "image": "registry.local/app:1",
                        "ports": [{"containerPort": 8080}], "resources": {}}]},
        "status": {"phase": phase, "conditions": conditions, "hostIP": "10.0.0.1",
                   "podIP": f"10.1.{i // 250}.{i % 250}", "startTime": "2026-12-01T10:00:00Z",
                   "containerStatuses": [cs]}}


def deployment(i: int) -> dict:
    return {"metadata": _meta("Deployment", i), "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": f"app-{i}"}},
        "strategy": {"type": "RollingUpdate"}}, "status": {
        "observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
        "availableReplicas": 3 - (i % 20 == 0), "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}}


def replicaset(i: int) -> dict:
    return {"metadata": _meta("ReplicaSet", i), "spec": {"replicas": 3 if i % 5 == 0 else 0},
            "status": {"observedGeneration": 2, "replicas": 3, "availableReplicas": 3,
                       "readyReplicas": 3}}


def service(i: int) -> dict:
    return {"metadata": _meta("Service", i), "spec": {
        "type": "LoadBalancer" if i % 25 == 0 else "ClusterIP", "clusterIP": "10.96.0.10",
        "ports": [{"port": 80, "targetPort": 8080}]}, "status": {"loadBalancer": {}}}


def job(i: int) -> dict:
    return {"metadata": _meta("Job", i), "spec": {"completions": 1}, "status": {
        "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}}


def configmap(i: int) -> dict:
    return {"metadata": _meta("ConfigMap", i), "data": {"a": "b"}}


def other(i: int) -> tuple[str, dict]:
    kinds = ("StatefulSet", "DaemonSet", "CronJob", "PersistentVolumeClaim", "Ingress",
             "HorizontalPodAutoscaler", "Namespace")
    kind = kinds[i % len(kinds)]
    status = {"StatefulSet": {"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 1,
                              "currentRevision": "r1", "updateRevision": "r1"},
              "DaemonSet": {"observedGeneration": 2, "desiredNumberScheduled": 1,
                            "updatedNumberScheduled": 1, "numberAvailable": 1},
              "CronJob": {"lastScheduleTime": "2026-12-01T10:00:00Z",
                          "lastSuccessfulTime": "2026-12-01T10:00:09Z"},
              "PersistentVolumeClaim": {"phase": "Bound"},
              "Ingress": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}},
              "HorizontalPodAutoscaler": {"conditions": [
                  {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]},
              "Namespace": {"phase": "Active"}}[kind]
    return kind, {"metadata": _meta(kind, i), "spec": {"replicas": 1}, "status": status}


def objects(count: int) -> list[tuple[str, dict]]:
    """``count`` objects in a cluster's proportions: 70% pods, 10% ReplicaSets, ..."""
    share = [("Pod", pod, 70), ("ReplicaSet", replicaset, 10), ("Deployment", deployment, 5),
             ("Service", service, 5), ("Job", job, 3), ("ConfigMap", configmap, 4)]
    result: list[tuple[str, dict]] = []
    for kind, make, percent in share:
        result += [(kind, make(i)) for i in range(count * percent // 100)]
    i = 0
    while len(result) < count:
        result.append(other(i))
        i += 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    items = objects(args.objects)
    body = json.dumps({"items": [obj for _, obj in items]})

    def run_assess() -> float:
        t0 = time.perf_counter()
        for kind, obj in items:
            assess(obj, kind)
        return time.perf_counter() - t0

    def run_json() -> float:
        t0 = time.perf_counter()
        json.loads(body)
        return time.perf_counter() - t0

    run_assess()  # warm up
    ours = statistics.median(run_assess() for _ in range(args.reps))
    theirs = statistics.median(run_json() for _ in range(args.reps))
    counts = Counter(assess(obj, kind).status for kind, obj in items)
    rows = [(f"assess {len(items):,} objects (ansflow)", ours, f"{ours / theirs:.2f}x",
             "PASS" if ours <= TARGET * args.objects / 10000 else "FAIL"),
            (f"json.loads of the same list ({len(body) / 1e6:.1f} MB)", theirs, "1.00x", "")]
    print(f"{'what':<52} {'seconds':>8} {'ratio':>7}  target <= {TARGET} s per 10,000")
    for what, seconds, ratio, verdict in rows:
        print(f"{what:<52} {seconds:>8.3f} {ratio:>7}  {verdict}")
    print("health: " + ", ".join(f"{s} {n}" for s, n in counts.most_common()))


if __name__ == "__main__":
    main()
