"""k8s_deploy with a helm chart: the helm command line, the post-renderer's namespace and
scope rules, and install / upgrade / rollback of a local chart on the dev cluster."""

from __future__ import annotations

import re

import pytest
import yaml
from k8s_workloads import configmap_body, deploy
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.spec.steps import K8sDeployConfig


def test_helm_command_line_and_rendered_objects():
    from ansflow.runtime.k8s_helm import helm_argv, manifest_objects

    cfg = K8sDeployConfig(cluster="c", namespace="n", create_namespace=True, timeout=90,
                          helm={"chart": "repo/app", "release": "r", "version": "1.2.3",
                                "values_file": "vals.yaml"})
    argv = helm_argv("helm", cfg, "n", "/k", "/v.yaml", {"l": "v"}, "/ws", context="ctx")
    assert argv[:10] == ["helm", "upgrade", "--install", "r", "repo/app", "--namespace", "n",
                         "--kubeconfig", "/k", "--kube-context"]
    assert argv[-4:] == ["--wait", "--timeout", "90s", "--atomic"]
    assert {"--create-namespace", "--post-renderer"} <= set(argv)
    assert argv[argv.index("--version") + 1] == "1.2.3"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-f"] == ["/ws/vals.yaml", "/v.yaml"]
    dry = K8sDeployConfig(cluster="c", namespace="n", dry_run=True,
                          helm={"chart": "./c", "release": "r"})
    assert helm_argv("helm", dry, "n", "/k", None, {}, "/ws")[-2:] == ["--dry-run=server",
                                                                      "--hide-secret"]
    text = "---\n# Source: x\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n"
    assert manifest_objects(text) == ["service/s"]


def _post_render(config: K8sDeployConfig, manifest: str, known=None):
    """Run the helm post-renderer of `config` as helm does (a real process, stdin/stdout)."""
    import subprocess

    from ansflow.runtime.k8s_helm import helm_argv, render_rules

    argv = helm_argv("helm", config, "n", "/k", None, {"run": "1"}, "/ws",
                     rules=render_rules(config, "n", known))
    at = argv.index("--post-renderer")
    command = [argv[at + 1]] + [argv[i + 1] for i, a in enumerate(argv)
                                if a == "--post-renderer-args"]
    return subprocess.run(command, input=manifest, capture_output=True, text=True, timeout=60)


def test_helm_post_renderer_applies_the_namespace_and_scope_rules():
    cfg = K8sDeployConfig(cluster="c", namespace="n", helm={"chart": "./c", "release": "r"})
    rendered = yaml.safe_dump_all([
        configmap_body("ok"), configmap_body("same", namespace="n"),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "cr"}},
        configmap_body("elsewhere", namespace="kube-system"),
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": {"name": "widgets.example.com"},
         "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"},
                  "versions": [{"name": "v1"}]}}])
    done = _post_render(cfg, rendered)
    assert done.returncode == 1 and not done.stdout
    assert done.stderr.strip() == (
        "ansflow: nothing installed: rendered object 3 (clusterrole/cr) is cluster-scoped "
        "(kind ClusterRole); set allow_cluster_scoped: true to install cluster-scoped objects; "
        "rendered object 4 (configmap/elsewhere) is in namespace 'kube-system', but the step "
        "deploys to namespace 'n'; rendered object 5 (widget/w) is cluster-scoped (kind "
        "Widget); set allow_cluster_scoped: true to install cluster-scoped objects; rendered "
        "object 6 (customresourcedefinition/widgets.example.com) is cluster-scoped (kind "
        "CustomResourceDefinition); set allow_cluster_scoped: true to install cluster-scoped "
        "objects")
    # Discovery decides over the built-in list; allowed, everything goes through labelled.
    known = {("rbac.authorization.k8s.io/v1", "ClusterRole"): True}
    allowed = cfg.model_copy(update={"allow_cluster_scoped": True})
    done = _post_render(allowed, yaml.safe_dump_all([configmap_body("ok"), configmap_body(
        "cr", namespace="n")]), known)
    assert done.returncode == 0, done.stderr
    assert [d["metadata"]["labels"] for d in yaml.safe_load_all(done.stdout)] == [
        {"run": "1"}, {"run": "1"}]


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    "values.yaml": "image: demo:1\nreplicas: 1\nnodeSelector: {}\n",
    "templates/deployment.yaml": """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      nodeSelector: {{ toJson .Values.nodeSelector }}
      containers:
        - name: app
          image: {{ .Values.image }}
""",
    "templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                "  name: {{ .Release.Name }}-cfg\ndata: {a: b}\n",
}


@pytest.mark.k8s
def test_helm_chart_installs_upgrades_labels_and_rolls_back(dev_cluster, make_ctx, tmp_path):
    for name, text in CHART.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    ns = f"helm-{dev_cluster.namespace('x')[2:]}"
    ctx, result = deploy(make_ctx, dev_cluster, ns, create_namespace=True,
                         helm={"chart": "./chart", "release": "demo",
                               "values": {"image": "demo:2", "replicas": 2}})
    assert result.outputs == {"objects": "configmap/demo-cfg,deployment/demo", "revision": "1"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("demo", ns)
    assert d.spec.template.spec.containers[0].image == "demo:2"
    assert d.status.available_replicas == 2
    assert d.metadata.labels["ansflow.dev/run-id"] == ctx.run_id
    assert "ansflow.dev/run-id" not in d.spec.template.metadata.labels
    # An upgrade that cannot become ready is rolled back by helm (--atomic).
    with pytest.raises(StepFailed, match="rolled back") as err:
        deploy(make_ctx, dev_cluster, ns, timeout=5,
               helm={"chart": "./chart", "release": "demo",
                     "values": {"image": "demo:3", "nodeSelector": {"no-such-node": "x"}}})
    assert "helm release 'demo'" in str(err.value)
    # A dry run talks to the server and changes nothing.
    _, result = deploy(make_ctx, dev_cluster, ns, dry_run=True,
                       helm={"chart": "./chart", "release": "demo", "values": {"image": "x:9"}})
    assert result.outputs == {"objects": "", "revision": ""}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("demo", ns)
    assert d.spec.template.spec.containers[0].image == "demo:2"


@pytest.mark.k8s
def test_a_helm_chart_with_a_cluster_role_needs_allow_cluster_scoped(dev_cluster, make_ctx,
                                                                      tmp_path):
    ns = dev_cluster.namespace("helm-cs")
    name = f"ansflow-{ns}"
    chart = dict(CHART)
    chart["templates/clusterrole.yaml"] = (
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n"
        f"  name: {name}\nrules: []\n")
    for file, text in chart.items():
        (tmp_path / "chart" / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / file).write_text(text)
    helm = {"chart": "./chart", "release": "cs"}
    rbac = k8s.RbacAuthorizationV1Api
    try:
        with pytest.raises(StepFailed) as err:
            deploy(make_ctx, dev_cluster, ns, helm=helm)
        assert re.search(rf"failed: nothing installed: rendered object \d \(clusterrole/{name}\) "
                         r"is cluster-scoped \(kind ClusterRole\); set allow_cluster_scoped: "
                         "true", str(err.value)), err.value
        with dev_cluster.client() as api:
            assert not k8s.AppsV1Api(api).list_namespaced_deployment(ns).items
            with pytest.raises(k8s.ApiException):
                rbac(api).read_cluster_role(name)
        _, result = deploy(make_ctx, dev_cluster, ns, helm=helm, allow_cluster_scoped=True)
        assert f"clusterrole/{name}" in result.outputs["objects"].split(",")
        with dev_cluster.client() as api:
            assert rbac(api).read_cluster_role(name).metadata.name == name
    finally:
        with dev_cluster.client() as api:
            try:
                rbac(api).delete_cluster_role(name)
            except k8s.ApiException as exc:
                assert exc.status == 404
