"""k8s_list and k8s_get against the dev cluster: any kind through discovery, health with
each object, a real Secret's values never returned, hostile names refused before any
request (ansflow.engines.kube_names), limits, all namespaces; plus the pure summaries."""

from __future__ import annotations

import base64
import json
import time

import pytest
from kubernetes import client as k8s
from pydantic import ValidationError

from ansflow.errors import StepFailed
from ansflow.spec.steps_k8s import K8sGetConfig, K8sListConfig
from ansflow.tasks.k8s_get import execute_k8s_get, shown_object
from ansflow.tasks.k8s_list import execute_k8s_list, summarize

SECRET_VALUE = "hunter2-s3cr3t-value"

# ---- pure -----------------------------------------------------------------------------------


def test_a_secret_summary_and_shown_object_hold_key_names_only():
    secret = {"kind": "Secret", "type": "Opaque",
              "metadata": {"name": "db", "annotations": {
                  "kubectl.kubernetes.io/last-applied-configuration":
                      json.dumps({"stringData": {"password": SECRET_VALUE}})},
                  "managedFields": [{"manager": "kubectl"}]},
              "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
              "stringData": {"token": SECRET_VALUE}}
    summary = summarize(secret, "Secret")
    assert summary["keys"] == ["password", "token"] and summary["type"] == "Opaque"
    shown, cut = shown_object(secret)
    text = json.dumps([summary, shown])
    assert SECRET_VALUE not in text and base64.b64encode(SECRET_VALUE.encode()).decode() \
        not in text
    assert "data" not in shown and "stringData" not in shown and not cut
    assert "managedFields" not in shown["metadata"]
    assert secret["data"] and secret["metadata"]["managedFields"]  # the input is untouched


def test_a_huge_object_is_cut_down_to_fit():
    cm = {"kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": "x" * 300_000}}
    shown, cut = shown_object(cm)
    assert cut and shown["data"] == {"a": "(300000 characters, omitted)"}
    many = {"kind": "Thing", "metadata": {"name": "t", "uid": "u"},
            "spec": {"items": ["y" * 1000] * 400}}
    shown, cut = shown_object(many)
    assert cut and shown["metadata"] == {"name": "t", "uid": "u"} and "spec" not in shown


def test_summaries_say_what_kubectl_get_shows_with_health():
    deploy = {"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"},
                           "creationTimestamp": "2026-12-01T00:00:00Z", "generation": 1},
              "spec": {"replicas": 3, "template": {"spec": {"containers": [
                  {"name": "a", "image": "web:1"}]}}},
              "status": {"observedGeneration": 1, "replicas": 3, "readyReplicas": 1,
                         "updatedReplicas": 3, "availableReplicas": 1}}
    s = summarize(deploy, "Deployment")
    assert s["ready"] == "1/3" and s["images"] == ["web:1"] and s["labels"] == {"app": "web"}
    assert s["health"] == "Progressing" and s["health_message"]
    hostile = summarize({"metadata": {"name": "x" * 10_000, "labels": {"k": "v" * 10_000}},
                         "spec": "not a mapping", "status": ["odd"]}, "Widget")
    assert len(hostile["name"]) == 253 and len(hostile["labels"]["k"]) == 63
    assert hostile["health"] == "Unknown"


@pytest.mark.parametrize("fields, message", [
    ({"resource_type": "configmap", "resource_name": "../kube-system/secrets/x"},
     "resource_name"),
    ({"resource_type": "configmap", "resource_name": "a/b"}, "resource_name"),
    ({"resource_type": "configmap", "resource_name": "x\x00y"}, "resource_name"),
    ({"resource_type": "configmap", "resource_name": "ok", "namespace": "../kube-system"},
     "namespace"),
    ({"resource_type": "configmaps/../secrets", "resource_name": "x"}, "resource_type"),
    ({"resource_type": "", "resource_name": "x"}, "resource_type"),
    ({"resource_type": "c" * 300, "resource_name": "x"}, "resource_type"),
])
def test_hostile_get_fields_are_refused_by_the_model(fields, message):
    with pytest.raises(ValidationError, match=message):
        K8sGetConfig(cluster="c", **fields)


@pytest.mark.parametrize("selector", ["app=web&watch=true", "app=web;rm", "a b",
                                      "app in (a", "x" * 300 + "=1"])
def test_hostile_selectors_are_refused_by_the_model(selector):
    with pytest.raises(ValidationError, match="label_selector"):
        K8sListConfig(cluster="c", resource_type="pod", label_selector=selector)
    K8sListConfig(cluster="c", resource_type="pod", label_selector="{{ vars.sel }}")


def test_the_list_limit_is_bounded():
    with pytest.raises(ValidationError, match="limit"):
        K8sListConfig(cluster="c", resource_type="pod", limit=0)
    with pytest.raises(ValidationError, match="limit"):
        K8sListConfig(cluster="c", resource_type="pod", limit=5001)


# ---- against the dev cluster ----------------------------------------------------------------


def _seed(dev_cluster, ns):
    labels = {"app": "web"}
    with dev_cluster.client() as api:
        core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
        core.create_namespaced_secret(ns, {
            "metadata": {"name": "creds", "labels": labels, "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    json.dumps({"stringData": {"password": SECRET_VALUE}})}},
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()},
            "stringData": {"token": SECRET_VALUE}})
        for i in range(5):
            core.create_namespaced_config_map(ns, {
                "metadata": {"name": f"cfg-{i}", "labels": {"app": "web" if i < 2 else "db"}},
                "data": {"k": "v"}})
        apps.create_namespaced_deployment(ns, {
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "example.invalid/web:1"}]}}}})


@pytest.mark.k8s
def test_list_any_kind_with_health_selectors_limits_and_all_namespaces(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("list")
    _seed(dev_cluster, ns)
    cluster = dev_cluster.block_name

    def run(**kw):
        return execute_k8s_list(make_ctx("k8s_list"),
                                K8sListConfig(cluster=cluster, namespace=ns, **kw)).outputs

    out = run(resource_type="cm", label_selector="app=web")
    assert out["count"] == "2" and out["names"] == "cfg-0,cfg-1" and out["truncated"] == "false"
    items = json.loads(out["items"])
    assert {i["kind"] for i in items} == {"ConfigMap"} and items[0]["keys"] == ["k"]
    assert all(i["health"] == "Healthy" and i["namespace"] == ns for i in items)
    out = run(resource_type="configmaps", limit=3)
    assert out["count"] == "3" and out["truncated"] == "true"
    out = run(resource_type="configmaps", label_selector="app notin (web),app")
    assert out["names"] == "cfg-2,cfg-3,cfg-4"
    # Deployments: health from the object as Argo CD judges it, once it settled.
    deadline = time.monotonic() + 60
    while True:
        [web] = json.loads(run(resource_type="deployments.apps")["items"])
        if web["health"] == "Healthy" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert web["health"] == "Healthy" and web["ready"] == "1/1"
    assert web["images"] == ["example.invalid/web:1"]
    # Cluster-scoped kinds and every namespace.
    nodes = json.loads(run(resource_type="node")["items"])
    assert nodes and nodes[0]["namespace"] == "" and nodes[0]["kind"] == "Node"
    out = run(resource_type="secret", all_namespaces=True, label_selector="app=web")
    assert f"{ns}/creds" in out["names"].split(",")
    out = run(resource_type="namespaces", label_selector=f"kubernetes.io/metadata.name={ns}")
    assert out["names"] == ns and json.loads(out["items"])[0]["health"] == "Healthy"


@pytest.mark.k8s
def test_a_real_secret_is_never_returned_by_list_or_get(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("list-secret")
    _seed(dev_cluster, ns)
    cluster = dev_cluster.block_name
    listed = execute_k8s_list(make_ctx("k8s_list"), K8sListConfig(
        cluster=cluster, namespace=ns, resource_type="secrets")).outputs
    got = execute_k8s_get(make_ctx("k8s_get"), K8sGetConfig(
        cluster=cluster, namespace=ns, resource_type="secret", resource_name="creds")).outputs
    assert got["found"] == "true" and got["kind"] == "Secret" and got["uid"]
    assert got["keys"] == "password,token" and got["health"] == "Healthy"
    obj = json.loads(got["object"])
    assert "data" not in obj and "stringData" not in obj and obj["type"] == "Opaque"
    assert obj["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"] == "(omitted)"
    [item] = [i for i in json.loads(listed["items"]) if i["name"] == "creds"]
    assert item["keys"] == ["password", "token"]
    shown = json.dumps([listed, got]) + "\n".join(caplog.messages)
    encoded = base64.b64encode(SECRET_VALUE.encode()).decode()
    assert SECRET_VALUE not in shown and encoded not in shown


@pytest.mark.k8s
def test_get_any_kind_missing_objects_and_refusals(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("get")
    _seed(dev_cluster, ns)
    cluster = dev_cluster.block_name

    def run(**kw):
        return execute_k8s_get(make_ctx("k8s_get"),
                               K8sGetConfig(cluster=cluster, namespace=ns, **kw)).outputs

    out = run(resource_type="cm", resource_name="cfg-0")
    assert out["kind"] == "ConfigMap" and out["keys"] == "k"
    assert json.loads(out["object"])["data"] == {"k": "v"}
    assert "managedFields" not in json.loads(out["object"])["metadata"]
    out = run(resource_type="namespace", resource_name=ns)
    assert out["namespace"] == "" and out["health"] == "Healthy"
    with pytest.raises(StepFailed, match=rf"configmap/cfg-9 in namespace {ns} not found; "
                                         r"did you mean: cfg-\d"):
        run(resource_type="configmap", resource_name="cfg-9")
    out = run(resource_type="deployment", resource_name="gone", ignore_not_found=True)
    assert out["found"] == "false" and out["health"] == "Missing" and out["object"] == "null"
    with pytest.raises(StepFailed, match="no resource type 'gizmo'"):
        run(resource_type="gizmo", resource_name="x")


@pytest.mark.k8s
def test_hostile_names_never_reach_the_api_server(dev_cluster, make_ctx):
    """A name that would leave its namespace or kind is refused by the API server's rules
    (kube_names) before any request: checked again at the adapter for a rendered value that
    bypassed the model (a config built without validation)."""
    ns = dev_cluster.namespace("get-hostile")
    audit = dev_cluster.audit_mark()
    ctx = make_ctx("k8s_get")
    for name in ("../../kube-system/secrets/x", "a/b", "..", "x%2F..%2Fy", "UPPER"):
        config = K8sGetConfig.model_construct(
            cluster=dev_cluster.block_name, namespace=ns, resource_type="configmap",
            resource_name=name, ignore_not_found=False)
        with pytest.raises(StepFailed, match="is not a valid Kubernetes name"):
            execute_k8s_get(ctx, config)
    config = K8sListConfig.model_construct(
        cluster=dev_cluster.block_name, namespace=ns, resource_type="configmap",
        label_selector="app=x&watch=true", all_namespaces=False, limit=5)
    with pytest.raises(StepFailed, match="is not a valid Kubernetes label selector"):
        execute_k8s_list(ctx, config)
    seen = [e for e in dev_cluster.audit_events(audit)
            if "kube-system" in e.get("requestURI", "") or "%2F" in e.get("requestURI", "")
            or "watch=true" in e.get("requestURI", "")]
    assert seen == []
