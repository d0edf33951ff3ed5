"""k8s_wait against the dev cluster: rollouts, fail-fast pods, Jobs, conditions, deadlines."""

from __future__ import annotations

import logging
import threading
import time

import pydantic
import pytest
from kubernetes import client as k8s
from polling import until

from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import K8sWaitConfig
from ansflow.tasks.k8s_wait import execute_k8s_wait

pytestmark = pytest.mark.k8s


def deployment_body(name: str, replicas: int = 2, **spec) -> dict:
    labels = {"app": name}
    body = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": "example.invalid/app:1"}]}}},
    }
    body["spec"].update(spec)
    return body


def config(dev_cluster, ns: str, **kw) -> K8sWaitConfig:
    return K8sWaitConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_deployment_rollout_is_awaited_with_progress_lines(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("wait")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, deployment_body("web", 3))
    result = execute_k8s_wait(make_ctx("k8s_wait"), config(
        dev_cluster, ns, resource_type="deployment", resource_name="web", timeout=60))
    assert result.outputs == {"resource": "deployment/web",
                              "status": "deployment 'web' successfully rolled out"}
    with dev_cluster.client() as api:
        status = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).status
    assert status.available_replicas == 3
    lines = messages(caplog)
    assert lines[0].startswith(f"waiting for deployment/web in namespace {ns}")
    assert lines[-1] == "deployment 'web' successfully rolled out"


def test_image_pull_backoff_fails_fast_naming_pod_container_and_reason(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("wait-ff")
    # Pods that no node accepts stay Pending and untouched by kwok; give one a stuck container.
    body = deployment_body("broken", 1)
    body["spec"]["template"]["spec"]["nodeSelector"] = {"no-such-node": "x"}
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, body)
        pod = until(lambda: core.list_namespaced_pod(ns).items, 30)[0].metadata.name
        core.patch_namespaced_pod_status(pod, ns, {"status": {"containerStatuses": [{
            "name": "main", "image": "example.invalid/app:1", "imageID": "", "ready": False,
            "restartCount": 0, "state": {"waiting": {
                "reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}})
    started = time.monotonic()
    try:
        with pytest.raises(StepFailed) as err:
            execute_k8s_wait(make_ctx("k8s_wait"), config(
                dev_cluster, ns, resource_type="deploy", resource_name="broken", timeout=60))
    finally:
        _remove_stuck(dev_cluster, ns)  # the cluster's health tests must not see it
    assert time.monotonic() - started < 40  # fails fast, well before its 60 s timeout
    assert f"pod '{pod}', container 'main': ImagePullBackOff: Back-off pulling image" \
        in str(err.value)
    assert f"cluster '{dev_cluster.block_name}'" in str(err.value)


def _remove_stuck(dev_cluster, ns):
    """Delete the namespace's Deployment and its pods now, not at the session's teardown."""
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        k8s.AppsV1Api(api).delete_namespaced_deployment(
            "broken", ns, propagation_policy="Foreground")
        core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        deadline = time.monotonic() + 60
        while core.list_namespaced_pod(ns).items and time.monotonic() < deadline:
            time.sleep(0.2)


def test_paused_deployment_fails_with_a_clear_message(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("wait-paused")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, deployment_body("p", 1, paused=True))
    with pytest.raises(StepFailed, match="is paused, so its rollout cannot finish"):
        execute_k8s_wait(make_ctx("k8s_wait"), config(
            dev_cluster, ns, resource_type="deployment", resource_name="p", timeout=30))


def test_job_complete(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("wait-job")
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never",
               "containers": [{"name": "main", "image": "example.invalid/job:1"}]}}}}
    with dev_cluster.client() as api:
        k8s.BatchV1Api(api).create_namespaced_job(ns, job)
    result = execute_k8s_wait(make_ctx("k8s_wait"), config(
        dev_cluster, ns, resource_type="job", resource_name="once", condition="complete",
        timeout=60))
    assert result.outputs["status"] == "job 'once' complete"


def test_jsonpath_and_delete_waits_follow_watch_events(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("wait-watch")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"x": "1"}})
        threading.Timer(1.0, core.patch_namespaced_config_map,
                        ("c", ns, {"data": {"x": "2"}})).start()
        result = execute_k8s_wait(make_ctx("k8s_wait"), config(
            dev_cluster, ns, resource_type="cm", resource_name="c",
            condition="jsonpath={.data.x}=2", timeout=30))
        assert result.outputs["status"] == "{.data.x} = '2'"
        threading.Timer(1.0, core.delete_namespaced_config_map, ("c", ns)).start()
        result = execute_k8s_wait(make_ctx("k8s_wait"), config(
            dev_cluster, ns, resource_type="configmaps", resource_name="c",
            condition="deleted", timeout=30))
        assert result.outputs["status"] == "deleted"


def test_deadline_cancel_and_missing_things_are_clean_failures(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("wait-stop")
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "c"}})
    never = dict(resource_type="configmap", resource_name="c",
                 condition="jsonpath={.data.never}")
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match=rf"configmap/c in namespace {ns} did not reach"):
        execute_k8s_wait(make_ctx("k8s_wait"), config(dev_cluster, ns, timeout=2, **never))
    assert time.monotonic() - started < 20
    # The step's own deadline cuts a longer wait timeout.
    started = time.monotonic()
    with pytest.raises(StepTimedOut):
        execute_k8s_wait(make_ctx("k8s_wait", timeout=2), config(dev_cluster, ns, **never))
    assert time.monotonic() - started < 20
    ctx = make_ctx("k8s_wait")
    threading.Timer(1.0, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        execute_k8s_wait(ctx, config(dev_cluster, ns, timeout=60, **never))
    assert time.monotonic() - started < 30
    with pytest.raises(StepFailed, match=rf"deployment/nope in namespace {ns} not found"):
        execute_k8s_wait(make_ctx("k8s_wait"), config(
            dev_cluster, ns, resource_type="deployment", resource_name="nope"))
    with pytest.raises(StepFailed, match="no resource type 'gizmos'"):
        execute_k8s_wait(make_ctx("k8s_wait"), config(
            dev_cluster, ns, resource_type="gizmos", resource_name="x"))
    # A bad condition never reaches the cluster: the config (what validate checks) refuses it.
    with pytest.raises(pydantic.ValidationError, match="unknown condition 'soon'"):
        config(dev_cluster, ns, resource_type="deployment", resource_name="x", condition="soon")
    with pytest.raises(StepFailed, match="no saved Kubernetes cluster block named 'never-saved-anywhere'"):
        execute_k8s_wait(make_ctx("k8s_wait"), K8sWaitConfig(
            cluster="never-saved-anywhere", namespace=ns, resource_type="deployment", resource_name="x"))


def test_progress_lines_are_logged_at_info(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("wait-log")
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "c"},
                                                             "data": {"x": "1"}})
    execute_k8s_wait(make_ctx("k8s_wait"), config(
        dev_cluster, ns, resource_type="configmap", resource_name="c",
        condition="jsonpath={.data.x}"))
    progress = [r for r in caplog.records if r.name == "ansflow.test.step"]
    assert progress, "the wait logged no progress line"
    assert all(r.levelno == logging.INFO for r in progress), [
        (r.levelname, r.getMessage()) for r in progress]
