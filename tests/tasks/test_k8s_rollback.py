"""k8s_rollback against the dev cluster (kwok makes pods Running and Ready): Deployments,
StatefulSets and DaemonSets, and what it refuses."""

from __future__ import annotations

import pytest
from k8s_workloads import (
    REVISION,
    daemonset_body,
    deployment_body,
    ready_deployment,
    set_image,
    statefulset_body,
)
from kubernetes import client as k8s
from polling import until

from ansflow.errors import StepFailed
from ansflow.spec.steps import K8sRestartConfig, K8sRollbackConfig
from ansflow.tasks.k8s_restart import RESTARTED_AT, execute_k8s_restart
from ansflow.tasks.k8s_rollback import execute_k8s_rollback


def rollback_config(dev_cluster, ns: str, **kw) -> K8sRollbackConfig:
    return K8sRollbackConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


@pytest.mark.k8s
def test_rollback_of_a_deployment_to_previous_and_to_revision_1(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("undo")
    ready_deployment(dev_cluster, ns, deployment_body("web", 2, image="app:1"))
    set_image(dev_cluster, ns, "web", "app:2", "2")
    set_image(dev_cluster, ns, "web", "app:3", "3")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        rs1 = next(rs for rs in apps.list_namespaced_replica_set(ns).items
                   if rs.metadata.annotations[REVISION] == "1")
        template1 = api.sanitize_for_serialization(rs1.spec.template)
    template1["metadata"]["labels"].pop("pod-template-hash")

    previous = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_name="web", timeout=90))
    assert previous.outputs == {"revision": "2", "new_revision": "4"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.spec.template.spec.containers[0].image == "app:2"
    assert d.status.updated_replicas == 2 == d.status.ready_replicas  # rolled out

    first = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_name="web", revision=1, timeout=90))
    assert first.outputs == {"revision": "1", "new_revision": "5"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        live = api.sanitize_for_serialization(d.spec.template)
    assert live == template1
    assert d.metadata.annotations[REVISION] == "5"
    assert d.status.updated_replicas == 2 == d.status.ready_replicas


@pytest.mark.k8s
def test_rollback_refuses_a_missing_or_current_revision_and_changes_nothing(dev_cluster,
                                                                          make_ctx):
    ns = dev_cluster.namespace("undo-no")
    ready_deployment(dev_cluster, ns, deployment_body("web", 1, image="app:1"))
    set_image(dev_cluster, ns, "web", "app:2", "2")
    with pytest.raises(StepFailed) as err:
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="web", revision=9, timeout=10))
    assert str(err.value) == (f"cluster '{dev_cluster.block_name}': deployment/web in "
                              f"namespace {ns} has no revision 9 (revisions: 1, 2)")
    with pytest.raises(StepFailed, match="already runs revision 2, its current revision: "
                                         r"nothing to roll back\n  hint: roll back to an "
                                         r"earlier one \(revisions: 1, 2\)"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="web", revision=2, timeout=10))
    with pytest.raises(StepFailed, match="not found; did you mean: web?"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="webb", timeout=10))
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.metadata.annotations[REVISION] == "2"
    assert d.spec.template.spec.containers[0].image == "app:2"


@pytest.mark.k8s
def test_rollback_of_a_statefulset_through_controller_revisions(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("undo-sts")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_stateful_set(ns, statefulset_body("db", 2, image="db:1"))

        def rolled_out(image: str):
            def check():
                s = apps.read_namespaced_stateful_set("db", ns)
                return (s.status.observed_generation == s.metadata.generation
                        and s.status.update_revision == s.status.current_revision
                        and s.status.ready_replicas == 2
                        and s.spec.template.spec.containers[0].image == image)
            return check

        until(rolled_out("db:1"), 120)
        apps.patch_namespaced_stateful_set("db", ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "db:2"}]}}}})
        until(rolled_out("db:2"), 120)
    with pytest.raises(StepFailed, match=r"has no revision 5 \(revisions: 1, 2\)"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_type="statefulset", resource_name="db", revision=5))
    result = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_type="sts", resource_name="db", timeout=120))
    assert result.outputs == {"revision": "1", "new_revision": "3"}
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        s = apps.read_namespaced_stateful_set("db", ns)
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=db").items
    assert s.spec.template.spec.containers[0].image == "db:1"
    assert s.status.update_revision == s.status.current_revision
    assert {p.spec.containers[0].image for p in pods} == {"db:1"}


@pytest.mark.k8s
def test_restart_and_rollback_of_a_daemonset_and_restart_of_a_statefulset(dev_cluster,
                                                                         make_ctx):
    ns = dev_cluster.namespace("ds")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_daemon_set(ns, daemonset_body("agent", "agent:1"))
        apps.create_namespaced_stateful_set(ns, statefulset_body("db", 1))
    cfg = dict(cluster=dev_cluster.block_name, namespace=ns, timeout=120)
    # The restart waits for the first rollout too, then for its own.
    restarted = execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
        resource_type="ds", resource_name="agent", **cfg))
    assert restarted.outputs["revision"] == "2"
    sts = execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
        resource_type="statefulset", resource_name="db", **cfg))
    assert sts.outputs["revision"] == "2"
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        ds = apps.read_namespaced_daemon_set("agent", ns)
        s = apps.read_namespaced_stateful_set("db", ns)
        assert ds.spec.template.metadata.annotations[RESTARTED_AT] == \
            restarted.outputs["restarted_at"]
        assert s.spec.template.metadata.annotations[RESTARTED_AT] == sts.outputs["restarted_at"]
        assert s.status.update_revision == s.status.current_revision
        apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "agent:2"}]}}}})

        def observed():
            d = apps.read_namespaced_daemon_set("agent", ns)
            return d.status.observed_generation == d.metadata.generation

        until(observed)
    back = execute_k8s_rollback(make_ctx("k8s_rollback"), K8sRollbackConfig(
        resource_type="daemonset", resource_name="agent", revision=1, **cfg))
    assert back.outputs == {"revision": "1", "new_revision": "4"}
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.spec.template.spec.containers[0].image == "agent:1"
    assert RESTARTED_AT not in (ds.spec.template.metadata.annotations or {})  # revision 1's
    assert ds.status.updated_number_scheduled == ds.status.desired_number_scheduled >= 1


@pytest.mark.k8s
def test_restart_or_rollback_waiting_on_an_on_delete_daemonset_is_refused_before_a_change(
        dev_cluster, make_ctx):
    ns = dev_cluster.namespace("ondelete")
    body = daemonset_body("agent", "agent:1")
    body["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_daemon_set(ns, body)
    cfg = dict(cluster=dev_cluster.block_name, namespace=ns, resource_type="ds",
               resource_name="agent", timeout=30)
    for execute, config in ((execute_k8s_restart, K8sRestartConfig(**cfg)),
                            (execute_k8s_rollback, K8sRollbackConfig(**cfg))):
        with pytest.raises(StepFailed, match="uses the OnDelete update strategy.*nothing was "
                                             "changed\n  hint: set wait: false"):
            execute(make_ctx("k8s"), config)
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.metadata.generation == 1
    # Without the wait, the restart is made (the pods change when they are deleted).
    done = execute_k8s_restart(make_ctx("k8s"), K8sRestartConfig(**cfg, wait=False))
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.spec.template.metadata.annotations[RESTARTED_AT] == done.outputs["restarted_at"]
