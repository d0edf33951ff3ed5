"""k8s_exec against the dev cluster (kwok runs exec'd commands on the host, not in a pod)."""

from __future__ import annotations

import importlib
import logging
import threading
import time

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import K8sExecConfig
from ansflow.tasks.k8s_exec import execute_k8s_exec

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def app_ns(dev_cluster) -> str:
    """A namespace with a 2-replica Deployment `app` whose pods are Running+Ready."""
    ns = dev_cluster.namespace("exec")
    labels = {"app": "app"}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "example.invalid/app:1"},
                         {"name": "sidecar", "image": "example.invalid/side:1"}]}}}}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, body)
        core = k8s.CoreV1Api(api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(ns, label_selector="app=app").items
            if len(pods) == 2 and all(p.status.phase == "Running" and any(
                    c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
                    for p in pods):
                return ns
            time.sleep(0.3)
    raise AssertionError("app pods never became ready")


def config(dev_cluster, ns, **kw) -> K8sExecConfig:
    return K8sExecConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


def lines(caplog, level=None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


def test_selector_picks_a_ready_pod_says_which_and_streams_both_streams(
        dev_cluster, app_ns, make_ctx, caplog):
    result = execute_k8s_exec(make_ctx("k8s_exec"), config(
        dev_cluster, app_ns, pod_selector="app=app", container="main",
        command="echo to-out; echo to-err >&2; printf 'no newline'"))
    assert result.exit_code == 0 and result.outputs["container"] == "main"
    pod = result.outputs["pod"]
    assert pod.startswith("app-") and result.outputs["stdout_tail"] == "no newline"
    assert any(f"chose pod {pod} (2 Running+Ready of 2 matching 'app=app')" == m
               for m in lines(caplog))
    assert {"to-out", "no newline"} <= set(lines(caplog, logging.INFO))
    assert lines(caplog, logging.WARNING) == ["to-err"]
    # The same pod every time: runs are repeatable.
    again = execute_k8s_exec(make_ctx("k8s_exec"), config(
        dev_cluster, app_ns, pod_selector="app=app", command=["true"], container="main"))
    assert again.outputs["pod"] == pod


def test_nonzero_exit_fails_with_the_exit_code(dev_cluster, app_ns, make_ctx, caplog):
    with pytest.raises(StepFailed) as err:
        execute_k8s_exec(make_ctx("k8s_exec"), config(
            dev_cluster, app_ns, pod_selector="app=app", command="echo partial; exit 7"))
    assert err.value.exit_code == 7 and "exited with code 7" in str(err.value)
    assert "partial" in lines(caplog)
    # Several containers and none named: the first is used, and the log says how to choose.
    assert any("the first of 2; set `container` to choose" in m for m in lines(caplog))


def test_large_output_arrives_whole_and_live(dev_cluster, app_ns, make_ctx, caplog):
    result = execute_k8s_exec(make_ctx("k8s_exec"), config(
        dev_cluster, app_ns, pod_selector="app=app", container="main",
        command="i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxx; "
                "i=$((i+1)); done"))
    out = [m for m in lines(caplog) if m.startswith("line-")]
    assert len(out) == 3000 and out[-1].startswith("line-2999-")
    assert result.outputs["stdout_tail"].startswith("line-2999-")


def test_pod_by_name_timeout_and_cancel(dev_cluster, app_ns, make_ctx):
    with dev_cluster.client() as api:
        pod = k8s.CoreV1Api(api).list_namespaced_pod(app_ns).items[0].metadata.name
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="ran past 1 s"):
        execute_k8s_exec(make_ctx("k8s_exec"), config(
            dev_cluster, app_ns, pod=pod, container="main", command=["sleep", "30"], timeout=1))
    assert time.monotonic() - started < 20
    ctx = make_ctx("k8s_exec", timeout=60)
    threading.Timer(1.0, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        execute_k8s_exec(ctx, config(dev_cluster, app_ns, pod=pod, container="main",
                                     command=["sleep", "30"]))
    assert time.monotonic() - started < 20


def test_missing_pod_container_or_selector_match_are_clear_failures(dev_cluster, app_ns,
                                                                     make_ctx, monkeypatch):
    with pytest.raises(StepFailed, match=rf"cluster 'test'.*pod 'ghost' not found in "
                                         rf"namespace {app_ns}"):
        execute_k8s_exec(make_ctx("k8s_exec"), config(dev_cluster, app_ns, pod="ghost",
                                                      command="true"))
    with pytest.raises(StepFailed, match="has no container 'nope' \\(it has: main, sidecar\\)"):
        execute_k8s_exec(make_ctx("k8s_exec"), config(
            dev_cluster, app_ns, pod_selector="app=app", container="nope", command="true"))
    # The module, not the package attribute of the same name (that is the public task).
    monkeypatch.setattr(importlib.import_module("ansflow.tasks.k8s_exec"), "POD_GRACE", 1.0)
    with pytest.raises(StepFailed, match="no Running\\+Ready pod matches 'app=other'"):
        execute_k8s_exec(make_ctx("k8s_exec"), config(
            dev_cluster, app_ns, pod_selector="app=other", command="true"))
