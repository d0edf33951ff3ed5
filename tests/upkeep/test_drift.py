"""The drift of an object ansflow applied (pure, table-driven), and one real round on the
dev cluster: k8s_deploy applies, another manager changes the image (drift, with its field
path), an HPA-like manager changes the replicas (not drift); describe shows it."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from ansflow.engines.kube_drift import (
    APPLIED_ANNOTATION,
    applied_manifest,
    diff,
    drift_markdown,
    hpa_targets,
    leaves,
    with_applied,
)

APPLIED = {"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web", "namespace": "n", "labels": {"app": "web"}},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "web", "image": "nginx:1",
                                                          "resources": {"limits": {
                                                              "cpu": "0.5"}}}]}}}}
IMAGE = "spec.template.spec.containers[name=web].image"
CPU = "spec.template.spec.containers[name=web].resources.limits.cpu"


def _fields(*paths: str) -> dict:
    """A fieldsV1 set of ``paths`` (the containers list keyed by name)."""
    root: dict = {}
    for path in paths:
        node = root
        for part in path.replace("[name=web]", ".[web]").split("."):
            key = 'k:{"name":"web"}' if part == "[web]" else f"f:{part}"
            node = node.setdefault(key, {})
    return root


ALL = ("metadata.labels.app", "spec.replicas", "spec.selector", IMAGE, CPU,
       "spec.template.metadata.labels.app", "spec.template.spec.containers[name=web].name")


def _live(changes: dict, entries: list[tuple[str, str, str, tuple[str, ...]]]) -> dict:
    live = copy.deepcopy(with_applied(APPLIED))
    live["spec"]["template"]["spec"]["containers"][0].update(
        {"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
    live["spec"]["strategy"] = {"type": "RollingUpdate"}  # a server default
    live["status"] = {"replicas": 2}
    for path, value in changes.items():
        node = live
        parts = path.split(".")
        for part in parts[:-1]:
            node = node["containers"][0] if part == "containers[name=web]" else node[part]
        if value is None:
            node.pop(parts[-1])
        else:
            node[parts[-1]] = value
    live["metadata"]["managedFields"] = [
        {"manager": m, "operation": op, "subresource": sub, "fieldsV1": _fields(*paths)}
        for m, op, sub, paths in entries]
    return live


ANSFLOW = ("ansflow", "Apply", "", ALL)
WITHOUT_IMAGE = ("ansflow", "Apply", "", tuple(p for p in ALL if p != IMAGE))
WITHOUT_REPLICAS = ("ansflow", "Apply", "", tuple(p for p in ALL if p != "spec.replicas"))

CASES = [
    # (name, live changes, managedFields entries, hpa_targeted, drifted fields -> manager)
    ("unchanged", {}, [ANSFLOW], False, {}),
    ("image changed by kubectl", {"spec.template.spec.containers[name=web].image": "nginx:2"},
     [WITHOUT_IMAGE, ("kubectl-set", "Update", "", (IMAGE,))], False, {IMAGE: "kubectl-set"}),
    ("replicas by an HPA (controller manager, /scale)", {"spec.replicas": 5},
     [WITHOUT_REPLICAS, ("kube-controller-manager", "Update", "scale", ("spec.replicas",))],
     False, {}),
    ("replicas by someone while an HPA targets it", {"spec.replicas": 5},
     [WITHOUT_REPLICAS, ("kubectl", "Update", "scale", ("spec.replicas",))], True, {}),
    ("replicas by kubectl scale, no HPA", {"spec.replicas": 5},
     [WITHOUT_REPLICAS, ("kubectl", "Update", "scale", ("spec.replicas",))], False,
     {"spec.replicas": "kubectl"}),
    ("server normalised the CPU, ansflow still owns it",
     {"spec.template.spec.containers[name=web].resources.limits.cpu": "500m"},
     [ANSFLOW], False, {}),
    ("a label removed by an update", {"metadata.labels.app": None},
     [("ansflow", "Apply", "", tuple(p for p in ALL if p != "metadata.labels.app"))], False,
     {"metadata.labels.app": "(removed)"}),
    ("a field another manager added is not drift", {"metadata.labels.extra": "x"},
     [ANSFLOW, ("kubectl-label", "Update", "", ("metadata.labels.extra",))], False, {}),
    ("replicas as a string still equal", {"spec.replicas": "2"}, [ANSFLOW], False, {}),
]


@pytest.mark.parametrize("name,changes,entries,hpa,expected", CASES, ids=[c[0] for c in CASES])
def test_drift_table(name, changes, entries, hpa, expected):
    live = _live(changes, entries)
    applied = applied_manifest(live)
    assert applied is not None
    assert APPLIED_ANNOTATION not in applied["metadata"].get("annotations", {})
    rows = diff(applied, live, hpa_targeted=hpa)
    assert {r["field"]: r["manager"] for r in rows} == expected
    for row in rows:
        assert row["applied"] != row["live"]


def test_leaves_name_lists_by_name_and_others_by_index():
    got = leaves({"spec": {"containers": [{"name": "a", "image": "x"}],
                           "ports": [{"port": 80}, {"port": 443}], "args": ["-v", "-q"]}})
    assert got == {"spec.containers[name=a].name": "a", "spec.containers[name=a].image": "x",
                   "spec.ports[0].port": 80, "spec.ports[1].port": 443,
                   "spec.args": ["-v", "-q"]}


@pytest.mark.parametrize("text", [None, "", "not json", "[1]", '{"metadata": 3}', "\x00",
                                  '{"a": {"b": "{{ x }}"}}'])
def test_a_hostile_or_broken_annotation_is_no_manifest(text):
    live = {"metadata": {"annotations": {APPLIED_ANNOTATION: text} if text is not None else {}}}
    assert applied_manifest(live) is None


def test_secrets_and_huge_manifests_get_no_annotation():
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "c2VjcmV0"}}
    assert with_applied(secret) is secret
    huge = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "x" * 200_000}}
    assert APPLIED_ANNOTATION not in (with_applied(huge)["metadata"].get("annotations") or {})
    small = with_applied({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
    assert json.loads(small["metadata"]["annotations"][APPLIED_ANNOTATION])["data"] == {"k": "v"}


def test_markdown_escapes_hostile_values_and_hpa_targets():
    md = drift_markdown([{"field": "data.a|b", "applied": "x\n| y", "live": "$(rm -rf /)",
                          "manager": "m"}])
    assert "data.a\\|b" in md and "x \\| y" in md and md.count("\n") == 3
    assert drift_markdown([]).startswith("No drift")
    hpas = [{"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}}}, "junk"]
    assert hpa_targets(hpas, "Deployment", "web") and not hpa_targets(hpas, "Deployment", "x")


def _describe(dev_cluster, make_ctx, ns: str, name: str):
    from ansflow.manage.describe import describe
    from ansflow.runtime.k8s_session import cluster_session

    ctx = make_ctx("manage")
    with cluster_session(ctx, dev_cluster.block_name, ns) as session:
        return describe(ctx, session, resource_type="deployment", resource_name=name)


@pytest.mark.k8s
def test_drift_on_the_dev_cluster_image_by_another_manager_replicas_by_a_scaler(
        dev_cluster, make_ctx):
    from kubernetes import client as k8s

    from ansflow.spec.steps import K8sDeployConfig
    from ansflow.tasks.k8s_deploy import execute_k8s_deploy

    ns = dev_cluster.namespace("drift")
    manifest = copy.deepcopy(APPLIED)
    del manifest["metadata"]["namespace"]
    ctx = make_ctx("k8s_deploy", pipeline=f"dr-{uuid.uuid4().hex[:8]}")
    execute_k8s_deploy(ctx, K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns,
                                            manifest=manifest, wait=False, timeout=60))
    described = _describe(dev_cluster, make_ctx, ns, "web")
    assert described.outputs["drift"] == "0", described.markdown
    assert "No drift" in described.markdown and '"replicas":2' not in described.markdown
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        # An HPA-like manager scales through /scale: not drift.
        apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}},
                                               field_manager="kube-controller-manager")
        assert _describe(dev_cluster, make_ctx, ns, "web").outputs["drift"] == "0"
        # Another manager sets the image: drift, with the field path and who changed it.
        apps.patch_namespaced_deployment(
            "web", ns, {"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:2"}]}}}}, field_manager="kubectl-set")
    described = _describe(dev_cluster, make_ctx, ns, "web")
    assert described.outputs["drift"] == "1", described.markdown
    assert f"| {IMAGE} | nginx:1 | nginx:2 | kubectl-set |" in described.markdown
