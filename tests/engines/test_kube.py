"""The Kubernetes adapter (ansflow/engines/kube.py) on the dev cluster: clients, exec, logs,
error translation; and the dev cluster's controllers doing their part."""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from polling import until as _wait

from ansflow.engines.errors import EngineError, EngineTimedOut, EngineTransient, EngineUnreachable
from ansflow.engines.kube import (
    build_api_client,
    decode_exec_status,
    exec_in_pod,
    translate_error,
)

# ---- pure: the exec status channel and error translation ----------------------------------


def test_exec_status_success_is_zero():
    assert decode_exec_status('{"metadata":{},"status":"Success"}') == 0


def test_exec_status_kubelet_nonzero_exit_code_shape():
    raw = json.dumps({
        "status": "Failure", "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: exit status 2",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
    })
    assert decode_exec_status(raw) == 2


def test_exec_status_kwok_internal_error_shape():
    raw = json.dumps({
        "status": "Failure", "reason": "InternalError", "code": 500,
        "message": "Internal error occurred: error executing command in container: "
                   "cmd wait: sh -c exit 3: exit status 3",
    })
    assert decode_exec_status(raw.encode()) == 3


@pytest.mark.parametrize("raw", ["", "   ", b""])
def test_exec_status_empty_is_unknown_never_zero(raw):
    with pytest.raises(EngineError, match="exit code is unknown"):
        decode_exec_status(raw)


def test_exec_status_other_failures_carry_the_message():
    raw = json.dumps({"status": "Failure", "reason": "InternalError",
                      "message": "fork/exec /nope: no such file or directory"})
    with pytest.raises(EngineError, match="no such file"):
        decode_exec_status(raw)


def test_api_errors_map_to_the_error_tree_with_the_cluster_named():
    forbidden = k8s.ApiException(status=403, reason="Forbidden")
    forbidden.body = json.dumps({"message": 'deployments.apps is forbidden: User "x" cannot '
                                            'create resource "deployments"'})
    err = translate_error(forbidden, cluster="prod", action="create deployments")
    assert type(err) is EngineError and "cluster 'prod'" in str(err)
    assert 'cannot create resource "deployments"' in str(err)
    assert isinstance(translate_error(k8s.ApiException(status=503), cluster="c", action="a"),
                      EngineTransient)
    ws = k8s.ApiException(status=0, reason="Handshake status 403 Forbidden -+-+- {...}")
    assert "403 Forbidden" in str(translate_error(ws, cluster="c", action="exec"))
    assert isinstance(translate_error(ConnectionRefusedError(), cluster="c", action="a"),
                      EngineUnreachable)


def _two_context_kubeconfig() -> str:
    clusters = [{"name": n, "cluster": {"server": f"https://127.0.0.1:{p}",
                                        "certificate-authority-data": "Y2EK"}}
                for n, p in (("a", 1001), ("b", 1002))]
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": clusters,
        "users": [{"name": "u", "user": {"token": "tok"}}],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "u"}} for n in ("a", "b")],
        "current-context": "a",
    })


def test_kubeconfig_context_is_honoured_and_inline_data_lives_only_as_long_as_the_client():
    text = _two_context_kubeconfig()
    assert build_api_client(kubeconfig=text).configuration.host == "https://127.0.0.1:1001"
    api = build_api_client(kubeconfig=text, context="b")
    assert api.configuration.host == "https://127.0.0.1:1002"
    ca_file = Path(api.configuration.ssl_ca_cert)
    assert ca_file.read_text() == "ca\n" and oct(ca_file.parent.stat().st_mode & 0o777) == "0o700"
    api.close()
    del api
    gc.collect()
    assert not ca_file.exists()


def test_bad_credentials_are_engine_errors_without_the_secret():
    with pytest.raises(EngineError, match="name nope in kube-config/contexts") as err:
        build_api_client(kubeconfig=_two_context_kubeconfig(), context="nope")
    assert "tok" not in str(err.value)
    with pytest.raises(EngineError, match="invalid Kubernetes credentials"):
        build_api_client(in_cluster=True)
    with pytest.raises(EngineError, match="both the certificate and key"):
        build_api_client(server="https://x", client_cert="PEM")


# ---- against the dev cluster ----------------------------------------------------------------


def _deployment(name: str, replicas: int = 2) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "example.invalid/app:1"}]},
            },
        },
    }


def _running_pod(api, ns: str, app: str) -> str:
    def ready():
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"app={app}").items
        for p in pods:
            if p.status.phase == "Running" and any(
                c.type == "Ready" and c.status == "True" for c in p.status.conditions or []
            ):
                return p.metadata.name
        return None

    return _wait(ready, what=f"a Running/Ready pod of {app}")


@pytest.mark.k8s
def test_deployment_creates_replicaset_and_ready_pods_then_is_available(dev_cluster):
    ns = dev_cluster.namespace("deploy")
    with dev_cluster.client() as api:
        apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
        apps.create_namespaced_deployment(ns, _deployment("web", 3))
        rs = _wait(lambda: apps.list_namespaced_replica_set(ns).items, what="a ReplicaSet")
        assert rs[0].metadata.owner_references[0].name == "web"

        def all_ready():
            pods = core.list_namespaced_pod(ns, label_selector="app=web").items
            return len(pods) == 3 and all(
                p.status.phase == "Running"
                and all(cs.ready for cs in p.status.container_statuses or [])
                for p in pods
            )

        _wait(all_ready, what="3 Running/Ready pods")

        def available():
            d = apps.read_namespaced_deployment("web", ns)
            conds = {c.type: c.status for c in d.status.conditions or []}
            return d.status.available_replicas == 3 and conds.get("Available") == "True"

        _wait(available, what="Deployment Available")


@pytest.mark.k8s
def test_exec_returns_stdout_stderr_and_exit_codes(dev_cluster):
    ns = dev_cluster.namespace("exec")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("sh", 1))
        pod = _running_pod(api, ns, "sh")
        ok = exec_in_pod(api, namespace=ns, pod=pod,
                         command=["sh", "-c", "echo to-out; echo to-err >&2"])
        assert (ok.exit_code, ok.stdout, ok.stderr) == (0, "to-out\n", "to-err\n")
        bad = exec_in_pod(api, namespace=ns, pod=pod, command=["sh", "-c", "echo x; exit 7"])
        assert (bad.exit_code, bad.stdout) == (7, "x\n")
        big = exec_in_pod(api, namespace=ns, pod=pod,
                          command=["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' a"])
        assert big.exit_code == 0 and big.stdout == "a" * 300000 and not big.truncated
        capped = exec_in_pod(api, namespace=ns, pod=pod, max_output=1000,
                             command=["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' b"])
        assert capped.stdout == "b" * 1000 and capped.truncated
        with pytest.raises(EngineError, match="no such file"):
            exec_in_pod(api, namespace=ns, pod=pod, command=["/no/such/binary"])
        started = time.monotonic()
        with pytest.raises(EngineTimedOut, match="ran past 1 s"):
            exec_in_pod(api, namespace=ns, pod=pod, container="main", timeout=1,
                        command=["sleep", "30"])
        assert time.monotonic() - started < 20


@pytest.mark.k8s
def test_pod_logs_come_through_the_api_server(dev_cluster):
    ns = dev_cluster.namespace("logs")
    marker = f"log-line-{time.monotonic_ns()}"
    with dev_cluster.pod_logs.open("a") as fh:
        fh.write(f"2026-01-01T00:00:01Z stdout F {marker}\n")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("logger", 1))
        pod = _running_pod(api, ns, "logger")
        text = k8s.CoreV1Api(api).read_namespaced_pod_log(pod, ns, container="main")
    assert marker in text


@pytest.mark.k8s
def test_job_runs_to_complete(dev_cluster):
    ns = dev_cluster.namespace("job")
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "example.invalid/job:1"}],
        }}},
    }
    with dev_cluster.client() as api:
        batch = k8s.BatchV1Api(api)
        batch.create_namespaced_job(ns, job)

        def complete():
            status = batch.read_namespaced_job_status("once", ns).status
            conds = {c.type: c.status for c in status.conditions or []}
            return status.succeeded == 1 and conds.get("Complete") == "True"

        _wait(complete, what="Job Complete")
        status = batch.read_namespaced_job_status("once", ns).status
    assert status.succeeded == 1 and status.completion_time is not None
