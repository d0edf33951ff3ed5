"""The `describe` operation against the dev cluster: status, conditions and events of a
Deployment, a Secret's key names only, cluster-scoped kinds, not-found suggestions."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.manage.objects import deployment, describe

pytestmark = pytest.mark.k8s


def test_describe_a_deployment_shows_status_conditions_and_events(dev_cluster, run_op):
    ns = dev_cluster.namespace("describe")
    run_op(deployment, ns, name="web", image="example.invalid/web:1", replicas=2, timeout=90)
    deadline = time.monotonic() + 30
    while True:  # the controller records its ScalingReplicaSet event a moment later
        result, _ = run_op(describe, ns, resource_type="deploy", resource_name="web")
        if result.outputs["events"] != "0" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.outputs["kind"] == "Deployment" and not result.changed
    assert result.target.resource_id == f"ansflow.k8s.deployment.test.{ns}.web"
    markdown = result.markdown
    assert markdown.startswith(f"## deployment/web in namespace {ns} (cluster test)\n")
    assert "### Conditions" in markdown and "| Available | True |" in markdown
    assert "readyReplicas: 2" in markdown
    assert "ScalingReplicaSet" in markdown and "Scaled up replica set web-" in markdown
    assert "managedFields" not in markdown


def test_describe_a_secret_shows_key_names_never_values(dev_cluster, run_op, shown_to_user):
    ns = dev_cluster.namespace("describe-secret")
    value = "c3VwZXItc2VjcmV0LXZhbHVl"
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_secret(ns, {
            "metadata": {"name": "db", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": f'{{"data":"{value}"}}'}},
            "data": {"password": value, "user": "YWRtaW4="}})
    result, _ = run_op(describe, ns, resource_type="secret", resource_name="db")
    assert "keys: password, user (values are never shown)" in result.markdown
    shown = shown_to_user(result)
    assert value not in shown and "super-secret-value" not in shown and "YWRtaW4=" not in shown


def test_describe_a_cluster_scoped_object(dev_cluster, run_op):
    ns = dev_cluster.namespace("describe-ns")
    result, _ = run_op(describe, "default", resource_type="namespaces", resource_name=ns)
    assert result.target.namespace is None and result.outputs["kind"] == "Namespace"
    assert result.markdown.startswith(f"## namespace/{ns} (cluster test)\n")
    assert "phase: Active" in result.markdown


def test_describe_of_a_missing_object_or_type_suggests_and_refuses(dev_cluster, run_op):
    ns = dev_cluster.namespace("describe-miss")
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {"name": "settings"}})
    with pytest.raises(StepFailed, match=rf"cluster 'test': configmap/setings in namespace "
                                         rf"{ns} not found; did you mean: settings\?"):
        run_op(describe, ns, resource_type="cm", resource_name="setings")
    with pytest.raises(StepFailed, match="the cluster has no resource type 'gizmo'"):
        run_op(describe, ns, resource_type="gizmo", resource_name="x")
    with pytest.raises(StepFailed, match=r"resource_name 'a/b' is not an object name"):
        run_op(describe, ns, resource_type="pod", resource_name="a/b")
