"""The health check and the health flow, against the dev cluster and the suite's Prefect
server: ok, degraded (a pod stuck in CrashLoopBackOff, a Warning event), unreachable and
forbidden identities reported with the reason, and the events on a status change."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import pytest
from kubernetes import client as k8s
from typer.testing import CliRunner

from ansflow.upkeep.health import check_health, failed_checks, node_problems

READYZ = """[+]ping ok
[+]log ok
[-]etcd failed: reason withheld
[+]poststarthook/start-apiserver-admission-initializer ok
[-]informer-sync failed: reason withheld
readyz check failed
"""


def test_the_failed_checks_of_a_verbose_probe_are_named():
    assert failed_checks(READYZ) == ["etcd", "informer-sync"]
    assert failed_checks("[+]ping ok\nok") == []


def test_node_conditions_give_ready_and_pressure():
    node = {"metadata": {"name": "n1"}, "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Down"},
                                      {"type": "DiskPressure", "status": "True"},
                                      {"type": "MemoryPressure", "status": "False"}]}}
    assert node_problems(node) == (False, ["n1: not Ready (Down)", "n1: DiskPressure",
                                           "n1: cordoned"])
    ok = {"metadata": {"name": "n2"}, "status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}
    assert node_problems(ok) == (True, [])


def _token_without_rights(dev_cluster) -> str:
    ns = dev_cluster.namespace("norights")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "nobody"}})
        return core.create_namespaced_service_account_token(
            "nobody", ns, {"spec": {"expirationSeconds": 600}}).status.token


@pytest.mark.k8s
def test_a_healthy_cluster_is_ok_and_stored(dev_cluster, inventory, alias):
    name, block = alias("health")
    report = check_health(name, block, inventory=inventory)
    assert report.status == "ok", report.message
    assert report.server_version.startswith("v1.") and report.nodes_total >= 1
    assert report.nodes_ready == report.nodes_total and report.pods_total >= 0
    assert report.previous_status is None and report.changed
    assert report.seconds < 10
    record = inventory.cluster_record(name)
    assert record["status"] == "ok" and record["server_version"] == report.server_version
    assert record["last_health"] is not None and record["last_sync"] is None
    assert check_health(name, block, inventory=inventory).changed is False


@pytest.mark.k8s
def test_unreachable_and_unauthorised_clusters_are_never_healthy(dev_cluster, inventory):
    from ansflow.blocks.kubernetes import KubernetesCluster

    ca = (dev_cluster.paths.pki / "ca.crt").read_text()
    cases = {
        "nowhere": (KubernetesCluster(server="https://127.0.0.1:9", token="t",
                                      certificate_authority=ca), "unreachable", "unreachable"),
        "bad-token": (KubernetesCluster(server=dev_cluster.server, token="not-a-token",
                                        certificate_authority=ca), "forbidden",
                      "401 Unauthorized"),
        "no-rights": (KubernetesCluster(server=dev_cluster.server, certificate_authority=ca,
                                        token=_token_without_rights(dev_cluster)),
                      "forbidden", "403 Forbidden: the identity may not read /api/v1/nodes"),
    }
    for name, (block, status, reason) in cases.items():
        report = check_health(name, block, inventory=inventory)
        assert report.status == status, (name, report.message)
        assert reason in report.message and "not-a-token" not in report.message
        assert inventory.cluster_record(name)["status"] == status


def _stuck_pod(dev_cluster, ns: str) -> str:
    """A pod kwok ran, then its container reported in CrashLoopBackOff."""
    name = "crashy"
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "app", "image": "example.invalid/crash:1"}]}})
        deadline = time.monotonic() + 60
        while core.read_namespaced_pod(name, ns).status.phase != "Running":
            assert time.monotonic() < deadline, "the pod never ran"
            time.sleep(0.5)
        core.patch_namespaced_pod_status(name, ns, {"status": {"containerStatuses": [{
            "name": "app", "image": "example.invalid/crash:1", "imageID": "", "ready": False,
            "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff",
                                                     "message": "back-off 5m0s"}}}]}})
        now = datetime.now(timezone.utc)
        core.create_namespaced_event(ns, {
            "metadata": {"name": f"crashy.{uuid.uuid4().hex[:8]}"},
            "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
            "reason": "BackOff", "message": "Back-off restarting failed container",
            "type": "Warning", "firstTimestamp": now.isoformat(), "lastTimestamp":
            now.isoformat(), "count": 1, "source": {"component": "kubelet"}})
    return name


@pytest.mark.k8s
@pytest.mark.server
def test_the_health_flow_emits_unhealthy_then_healthy_on_status_changes(
        dev_cluster, alias, events):
    from ansflow.cli.app import app
    from ansflow.flows.health import health

    name, _ = alias("hflow")
    resource = f"ansflow.k8s.cluster.{name}"
    first = health(clusters=[name])[name]
    assert first["status"] == "ok", first["message"]
    [healthy] = events("ansflow.k8s.cluster.healthy", resource)
    assert healthy["payload"]["previous"] is None
    ns = dev_cluster.namespace("crash")
    pod = _stuck_pod(dev_cluster, ns)
    try:
        second = health(clusters=[name], interval=120)[name]
        assert second["status"] == "degraded"
        assert f"{pod}: CrashLoopBackOff" in second["stuck_pods"]
        assert second["pods_failing"] >= 1 and second["warnings"] >= 1
        assert any("BackOff" in w and ns in w for w in second["warning_samples"])
        [unhealthy] = events("ansflow.k8s.cluster.unhealthy", resource)
        assert unhealthy["payload"]["status"] == "degraded"
        assert unhealthy["payload"]["previous"] == "ok"
        out = CliRunner().invoke(app, ["health", name])
        assert out.exit_code == 1 and "degraded" in out.output and "Traceback" not in out.output
    finally:
        with dev_cluster.client() as api:
            k8s.CoreV1Api(api).delete_namespaced_pod(pod, ns, grace_period_seconds=0)
    deadline = time.monotonic() + 60
    while health(clusters=[name])[name]["status"] != "ok":
        assert time.monotonic() < deadline, "the cluster never became ok again"
        time.sleep(1)
    assert len(events("ansflow.k8s.cluster.healthy", resource, count=2)) == 2
    assert len(events("ansflow.k8s.cluster.unhealthy", resource)) == 1  # no repeat
