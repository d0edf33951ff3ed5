"""The `revert` operation: drift made by another field manager on what k8s_deploy applied,
reverted, drift gone; destructive like `delete`; hostile names refused before any request."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed

MANIFEST = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web",
                                                           "image": "nginx:1"}]}}}}


def test_revert_is_registered_destructive_confirmed_by_the_objects_name():
    from ansflow.manage import load_operations

    op = load_operations()["revert"]
    assert op.destructive and not op.read_only
    assert op.needs_confirmation({"resource_type": "deployment", "resource_name": "web"}) \
        == "web"


@pytest.mark.parametrize("name", ["../web", "web;rm -rf /", "{{ secrets.x }}", "a\x00b",
                                  "x" * 300, ".."])
def test_revert_refuses_hostile_names_before_any_request(name):
    from ansflow.manage.revert import revert

    class NoSession:  # any use of the session would fail with AttributeError
        pass

    with pytest.raises(StepFailed, match="resource_name"):
        revert(None, NoSession(), resource_type="deployment", resource_name=name)


@pytest.mark.k8s
def test_revert_puts_back_what_was_applied_and_the_drift_is_gone(dev_cluster, make_ctx,
                                                                  run_op):
    from ansflow.manage.describe import describe
    from ansflow.manage.revert import revert
    from ansflow.spec.steps import K8sDeployConfig
    from ansflow.tasks.k8s_deploy import execute_k8s_deploy

    ns = dev_cluster.namespace("revert")
    ctx = make_ctx("k8s_deploy", pipeline=f"rv-{uuid.uuid4().hex[:8]}")
    execute_k8s_deploy(ctx, K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns,
                                            manifest=MANIFEST, wait=False, timeout=60))
    unchanged, _ = run_op(revert, ns, resource_type="deployment", resource_name="web")
    assert not unchanged.changed and "no drift" in unchanged.summary
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.patch_namespaced_deployment(
            "web", ns, {"metadata": {"labels": {"app": "hacked"}},
                        "spec": {"template": {"spec": {"containers": [
                            {"name": "web", "image": "nginx:2"}]}}}},
            field_manager="kubectl-edit")
        described, _ = run_op(describe, ns, resource_type="deployment", resource_name="web")
        assert described.outputs["drift"] == "2", described.markdown
        result, _ = run_op(revert, ns, resource_type="deployment", resource_name="web")
        assert result.changed and result.after == {"drift": []}
        assert {d["field"] for d in result.before["drift"]} == {
            "metadata.labels.app", "spec.template.spec.containers[name=web].image"}
        live = apps.read_namespaced_deployment("web", ns)
        assert live.spec.template.spec.containers[0].image == "nginx:1"
        assert live.metadata.labels["app"] == "web"
        described, _ = run_op(describe, ns, resource_type="deployment", resource_name="web")
        assert described.outputs["drift"] == "0", described.markdown
        # An object k8s_deploy did not apply cannot be reverted.
        k8s.CoreV1Api(api).create_namespaced_config_map(
            ns, {"metadata": {"name": "plain"}, "data": {"a": "1"}})
    with pytest.raises(StepFailed, match="keeps no manifest ansflow applied"):
        run_op(revert, ns, resource_type="configmap", resource_name="plain")


@pytest.mark.k8s
def test_describe_shows_drift_to_an_identity_that_may_not_list_hpas(dev_cluster, make_ctx,
                                                                    run_op, read_only_block):
    from ansflow.manage.describe import describe
    from ansflow.spec.steps import K8sDeployConfig
    from ansflow.tasks.k8s_deploy import execute_k8s_deploy

    ns = dev_cluster.namespace("nohpa")
    ctx = make_ctx("k8s_deploy", pipeline=f"nh-{uuid.uuid4().hex[:8]}")
    execute_k8s_deploy(ctx, K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns,
                                            manifest=MANIFEST, wait=False, timeout=60))
    block, _ = read_only_block(ns, ["deployments"], "apps")
    with dev_cluster.client() as api:
        rbac = k8s.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(ns, {"metadata": {"name": "events"}, "rules": [
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "reader-events"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "events"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
        k8s.AppsV1Api(api).patch_namespaced_deployment(
            "web", ns, {"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:3"}]}}}}, field_manager="kubectl-set")
    described, _ = run_op(describe, ns, block=block, resource_type="deployment",
                          resource_name="web")
    assert described.outputs["drift"] == "1", described.markdown
    assert "| nginx:1 | nginx:3 | kubectl-set |" in described.markdown
