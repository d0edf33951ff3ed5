"""k8s_deploy: pure manifest helpers, then server-side apply, rollout and rollback on the
dev cluster, and a deploy -> wait -> exec pipeline run end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.spec.steps import DeploymentSpec, K8sDeployConfig
from ansflow.tasks.k8s_deploy import execute_k8s_deploy
from ansflow.tasks.k8s_manifests import (
    deployment_manifest,
    diff_objects,
    load_documents,
    rollback_patch,
)

# ---- pure ----------------------------------------------------------------------------------


def test_deployment_spec_becomes_a_deployment_selected_by_app():
    spec = DeploymentSpec(name="web", image="web:1", replicas=2, ports=[8080],
                          env={"A": "1"}, labels={"tier": "front"}, args=["--x"])
    d = deployment_manifest(spec)
    assert d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert d["spec"]["template"]["metadata"]["labels"] == {"app": "web", "tier": "front"}
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "web", "image": "web:1", "ports": [{"containerPort": 8080}],
                         "env": [{"name": "A", "value": "1"}], "args": ["--x"]}


def test_manifests_load_from_multi_document_yaml_lists_and_files(tmp_path):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n" \
           "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, " \
           "metadata: {name: b}}\n"
    cfg = K8sDeployConfig(cluster="c", namespace="n", manifest=text)
    assert [o["metadata"]["name"] for o in load_documents(cfg, str(tmp_path))] == ["a", "b"]
    (tmp_path / "m.yaml").write_text(text)
    cfg = K8sDeployConfig(cluster="c", namespace="n", manifest_path="m.yaml")
    assert len(load_documents(cfg, str(tmp_path))) == 2
    cfg = K8sDeployConfig(cluster="c", namespace="n", manifest={"apiVersion": "v1",
                                                               "kind": "ConfigMap"})
    with pytest.raises(StepFailed, match="document 1 \\(ConfigMap\\) has no metadata.name"):
        load_documents(cfg, str(tmp_path))
    cfg = K8sDeployConfig(cluster="c", namespace="n", manifest_path="missing.yaml")
    with pytest.raises(StepFailed, match="cannot read manifest_path missing.yaml"):
        load_documents(cfg, str(tmp_path))


def test_diff_names_changed_paths_and_ignores_server_fields():
    live = {"metadata": {"name": "w", "resourceVersion": "1", "managedFields": [{}]},
            "spec": {"image": "a", "keep": 1}, "status": {"x": 1}}
    planned = {"metadata": {"name": "w", "resourceVersion": "2"}, "spec": {"image": "b",
                                                                          "keep": 1}}
    assert diff_objects(live, planned) == ["spec.image: 'a' -> 'b'"]
    assert diff_objects(None, planned) == ["(new object)"]
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "b2xk"}}
    changed = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"pw": "bmV3"}}
    assert diff_objects(secret, changed) == ["data.pw: (secret value changed)"]


def test_rollback_patch_is_kubectls():
    rs = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1", "team": "x"}},
          "spec": {"template": {"metadata": {"labels": {"app": "w", "pod-template-hash": "h"}},
                                "spec": {"image": "old"}}}}
    dep = {"metadata": {"annotations": {"deployment.kubernetes.io/revision": "2"}},
           "spec": {"template": {"metadata": {"labels": {"app": "w"}}, "spec": {"image": "new"}}}}
    assert rollback_patch(dep, rs) == [
        {"op": "replace", "path": "/spec/template",
         "value": {"metadata": {"labels": {"app": "w"}}, "spec": {"image": "old"}}},
        {"op": "replace", "path": "/metadata/annotations",
         "value": {"deployment.kubernetes.io/revision": "2", "team": "x"}},
    ]
    dep["spec"]["template"]["spec"]["image"] = "old"
    assert rollback_patch(dep, rs) is None


def test_helm_command_line_and_rendered_objects():
    from ansflow.tasks.k8s_helm import helm_argv, manifest_objects

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


# ---- against the dev cluster ----------------------------------------------------------------


def deploy(make_ctx, dev_cluster, ns, **kw):
    ctx = make_ctx("k8s_deploy")
    kw.setdefault("timeout", 60)
    cfg = K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)
    return ctx, execute_k8s_deploy(ctx, cfg)


@pytest.mark.k8s
def test_deployment_spec_applies_waits_and_reports_revision(dev_cluster, make_ctx, caplog):
    ns = f"dep-{dev_cluster.namespace('x')[2:]}"  # fresh name, created by the step
    ctx, result = deploy(make_ctx, dev_cluster, ns, create_namespace=True,
                         deployment_spec={"name": "web", "image": "web:1", "replicas": 2})
    assert result.outputs == {"objects": "deployment/web", "revision": "1"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        namespace = k8s.CoreV1Api(api).read_namespace(ns)
    assert d.status.available_replicas == 2
    assert d.metadata.labels["app"] == "web"
    assert d.metadata.labels["ansflow.dev/run-id"] == ctx.run_id
    assert d.metadata.labels["ansflow.dev/step"] == "k8s_deploy-step"
    assert "ansflow.dev/run-id" not in d.spec.template.metadata.labels  # no rollout per run
    assert [(m.manager, m.operation) for m in d.metadata.managed_fields
            if m.operation == "Apply"] == [("ansflow", "Apply")]
    assert namespace.metadata.labels["ansflow.dev/run-id"] == ctx.run_id
    messages = [r.getMessage() for r in caplog.records]
    assert f"deployment/web in namespace {ns} created" in messages
    assert "deployment 'web' successfully rolled out" in messages
    # A new image is a new revision; the same spec again changes nothing.
    _, result = deploy(make_ctx, dev_cluster, ns,
                       deployment_spec={"name": "web", "image": "web:2", "replicas": 2})
    assert result.outputs["revision"] == "2"
    _, result = deploy(make_ctx, dev_cluster, ns,
                       deployment_spec={"name": "web", "image": "web:2", "replicas": 2})
    assert result.outputs["revision"] == "2"


@pytest.mark.k8s
def test_multi_document_manifest_and_dry_run_diff(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("dep-m")
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
         "data": {"mode": "a"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
         "spec": {"selector": {"app": "api"}, "ports": [{"port": 80}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                  "template": {"metadata": {"labels": {"app": "api"}}, "spec": {
                      "containers": [{"name": "api", "image": "api:1"}]}}}},
    ]
    _, result = deploy(make_ctx, dev_cluster, ns, manifest=yaml.safe_dump_all(docs))
    assert result.outputs == {"objects": "configmap/cfg,service/api,deployment/api",
                              "revision": "1"}
    docs[0]["data"]["mode"] = "b"
    docs[2]["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2"
    caplog.clear()
    _, result = deploy(make_ctx, dev_cluster, ns, manifest=docs, dry_run=True)
    assert result.outputs["revision"] == "1"
    messages = [r.getMessage() for r in caplog.records]
    assert f"would change configmap/cfg in namespace {ns}" in messages
    assert "  data.mode: 'a' -> 'b'" in messages
    assert "  spec.template.spec.containers[0].image: 'api:1' -> 'api:2'" in messages
    assert f"unchanged: service/api in namespace {ns}" in messages
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("cfg", ns).data == {"mode": "a"}


@pytest.mark.k8s
def test_failed_rollout_rolls_back_to_the_recorded_revision(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("dep-rb")

    def manifest(image: str, **pod_spec) -> dict:
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc"},
                "spec": {"replicas": 1, "progressDeadlineSeconds": 2,
                         "selector": {"matchLabels": {"app": "svc"}},
                         "template": {"metadata": {"labels": {"app": "svc"}}, "spec": {
                             "containers": [{"name": "svc", "image": image}], **pod_spec}}}}

    _, good = deploy(make_ctx, dev_cluster, ns, manifest=manifest("svc:1"))
    assert good.outputs["revision"] == "1"
    # Pods no node accepts never become available: the progress deadline passes.
    with pytest.raises(StepFailed) as err:
        deploy(make_ctx, dev_cluster, ns,
               manifest=manifest("svc:2", nodeSelector={"no-such-node": "x"}))
    message = str(err.value)
    assert f"cluster '{dev_cluster.block_name}'" in message
    assert "deployment/svc" in message and "exceeded its progress deadline" in message
    assert "rolled back to revision 1 (rolled out)" in message
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("svc", ns)
    assert d.spec.template.spec.containers[0].image == "svc:1"
    assert not d.spec.template.spec.node_selector
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "3"


@pytest.mark.k8s
def test_api_refusals_and_helm_are_clean_step_failures(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("dep-err")
    with pytest.raises(StepFailed, match=rf"cluster 'test'.*deployment/bad in namespace {ns}"
                                         ".*invalid"):
        deploy(make_ctx, dev_cluster, ns, manifest={
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
            "spec": {"selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "y"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    with pytest.raises(StepFailed, match="not found"):
        deploy(make_ctx, dev_cluster, "no-such-namespace",
               deployment_spec={"name": "web", "image": "web:1"})
    with pytest.raises(StepFailed, match="no kind 'Gizmo'"):
        deploy(make_ctx, dev_cluster, ns, manifest={"apiVersion": "v1", "kind": "Gizmo",
                                                    "metadata": {"name": "g"}})
    with pytest.raises(StepFailed, match=rf"helm release 'r' \(cluster 'test', namespace {ns}\) "
                                         "failed: .*no-such-chart"):
        deploy(make_ctx, dev_cluster, ns, helm={"chart": "./no-such-chart", "release": "r"})


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


SEED = Path(__file__).resolve().parents[2] / "examples" / "seed" / "k8s-steps.yaml"


@pytest.mark.k8s
def test_seed_k8s_example_deploys_waits_and_execs_on_the_dev_cluster(dev_cluster, run_pipeline):
    seed = SEED.read_text(encoding="utf-8")
    assert 'cluster: "local-minikube"' in seed and 'namespace: "development"' in seed
    ns = dev_cluster.namespace("seed")
    # kwok runs exec'd commands on the host, so the seed's pytest command becomes `echo ok`.
    text = (seed.replace("local-minikube", dev_cluster.block_name)
            .replace('"development"', f'"{ns}"')
            .replace("python -m pytest tests/integration/", "echo ok"))
    state, summary = run_pipeline(text)
    assert state.is_completed(), summary
    steps = {s["name"]: s for s in summary["steps"]}
    assert [s["state"] for s in summary["steps"]] == ["completed"] * 3, summary
    assert steps["部署到开发环境"]["outputs"] == {"objects": "deployment/my-app",
                                               "revision": "1"}
    assert steps["等待部署就绪"]["outputs"]["status"] == \
        "deployment 'my-app' successfully rolled out"
    assert steps["运行集成测试"]["outputs"]["stdout_tail"] == "ok"
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("my-app", ns)
    assert d.spec.template.spec.containers[0].image == f"my-app:{summary['build_number']}"


@pytest.mark.k8s
def test_statefulset_and_daemonset_rollouts_are_awaited(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("dep-sts")

    def workload(kind: str, name: str) -> dict:
        spec = {"selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {
                    "containers": [{"name": name, "image": f"{name}:1"}]}}}
        if kind == "StatefulSet":
            spec.update(replicas=2, serviceName=name)
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}

    _, result = deploy(make_ctx, dev_cluster, ns, manifest=[
        workload("StatefulSet", "db"), workload("DaemonSet", "agent")])
    assert result.outputs == {"objects": "statefulset/db,daemonset/agent", "revision": ""}
    messages = [r.getMessage() for r in caplog.records]
    # The API server defaults rollingUpdate.partition to 0: kubectl's partitioned branch.
    assert "statefulset 'db' partitioned roll out complete" in messages
    assert "daemonset 'agent' successfully rolled out" in messages
    with dev_cluster.client() as api:
        sts = k8s.AppsV1Api(api).read_namespaced_stateful_set("db", ns)
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert sts.status.ready_replicas == 2
    assert ds.status.number_available == ds.status.desired_number_scheduled >= 1
