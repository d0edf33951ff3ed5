"""k8s_deploy: pure manifest helpers, then server-side apply, rollout and rollback on the
dev cluster, and a deploy -> wait -> exec pipeline run end to end (helm: test_k8s_helm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from k8s_workloads import configmap_body, deploy
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.runtime.k8s_manifests import (
    deployment_manifest,
    diff_objects,
    load_documents,
    rollback_patch,
)
from ansflow.spec.steps import DeploymentSpec, K8sDeployConfig

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


# ---- against the dev cluster ----------------------------------------------------------------


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


# ---- apply rules: the step's namespace, cluster-scoped kinds, field-manager conflicts -------


def test_apply_conflicts_are_read_from_the_status_causes():
    from ansflow.engines.kube_objects import apply_conflicts, describe_conflicts

    body = {"kind": "Status", "code": 409, "reason": "Conflict", "details": {"causes": [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl" using apps/v1',
         "field": ".spec.replicas"},
        {"reason": "FieldManagerConflict", "message": 'conflict with "hpa\x1b[31m" using v1',
         "field": ".spec.template.spec.containers[name=\"app\"].image"},
        {"reason": "Other", "message": "x", "field": ".ignored"}]}}
    exc = k8s.ApiException(status=409, reason="Conflict")
    exc.body = __import__("json").dumps(body)
    found = apply_conflicts(exc)
    assert found == [(".spec.replicas", "kubectl"),
                     ('.spec.template.spec.containers[name="app"].image', "hpa?[31m")]
    assert describe_conflicts(found[:1]) == '.spec.replicas (owned by "kubectl")'
    exc.body = "not json"
    assert apply_conflicts(exc) == []


def test_scopes_without_discovery_come_from_a_crd_in_the_batch_then_the_known_list():
    import socket

    from ansflow.engines.kube import build_api_client
    from ansflow.tasks.k8s_deploy import _check_scopes, object_scopes

    with socket.socket() as sock:  # a port nobody listens on: discovery fails
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    objects = [configmap_body("cfg"),
               {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "cr"}},
               {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
               {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}},
               {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Cluster",
                         "names": {"kind": "Widget"}, "versions": [{"name": "v1"}]}}]
    with build_api_client(server=f"https://127.0.0.1:{port}", token="t",
                          verify_ssl=False) as api:
        scopes = object_scopes(api, "c", objects, {})
    assert scopes == [True, False, False, True, False]
    cfg = K8sDeployConfig(cluster="c", namespace="n", manifest=objects)
    with pytest.raises(StepFailed) as err:
        _check_scopes(cfg, objects, scopes, "n")
    refused = str(err.value)
    assert "object 2 (clusterrole/cr)" in refused and "object 3 (widget/w)" in refused
    assert "object 5 (customresourcedefinition/widgets.example.com)" in refused
    assert "gadget" not in refused and "configmap" not in refused
    allowed = cfg.model_copy(update={"allow_cluster_scoped": True})
    _check_scopes(allowed, objects, scopes, "n")  # nothing refused


@pytest.mark.k8s
def test_a_manifest_in_another_namespace_is_refused_before_anything_is_applied(
        dev_cluster, make_ctx, tmp_path):
    ns, other = dev_cluster.namespace("dep-ns"), dev_cluster.namespace("dep-other")
    docs = [configmap_body("first"), configmap_body("same", namespace=ns),
            configmap_body("elsewhere", namespace=other)]
    with pytest.raises(StepFailed) as err:
        deploy(make_ctx, dev_cluster, ns, manifest=docs)
    message = str(err.value)
    assert "nothing applied" in message
    assert (f"manifest: object 3 (configmap/elsewhere) is in namespace '{other}', but the "
            f"step deploys to namespace '{ns}'") in message
    assert "configmap/same" not in message
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(docs))
    with pytest.raises(StepFailed, match=r"manifest_path m.yaml: object 3 "
                                         r"\(configmap/elsewhere\)"):
        deploy(make_ctx, dev_cluster, ns, manifest_path="m.yaml")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        names = {c.metadata.name for c in core.list_namespaced_config_map(ns).items}
        names |= {c.metadata.name for c in core.list_namespaced_config_map(other).items}
        assert not names & {"first", "same", "elsewhere"}
    # Objects without a namespace, or with the step's own, are applied there.
    _, result = deploy(make_ctx, dev_cluster, ns, manifest=docs[:2])
    assert result.outputs["objects"] == "configmap/first,configmap/same"


@pytest.mark.k8s
def test_cluster_scoped_objects_need_allow_cluster_scoped(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("dep-cs")
    name = f"ansflow-{ns}"
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}
    rbac = k8s.RbacAuthorizationV1Api
    try:
        with pytest.raises(StepFailed) as err:
            deploy(make_ctx, dev_cluster, ns, manifest=[configmap_body("cfg"), role])
        message = str(err.value)
        assert f"object 2 (clusterrole/{name}) is cluster-scoped (kind ClusterRole)" in message
        assert "allow_cluster_scoped: true" in message
        with dev_cluster.client() as api:
            with pytest.raises(k8s.ApiException) as missing:
                rbac(api).read_cluster_role(name)
            assert missing.value.status == 404
            assert not k8s.CoreV1Api(api).list_namespaced_config_map(
                ns, field_selector="metadata.name=cfg").items
        _, result = deploy(make_ctx, dev_cluster, ns, manifest=[configmap_body("cfg"), role],
                           allow_cluster_scoped=True)
        assert result.outputs["objects"] == f"configmap/cfg,clusterrole/{name}"
        with dev_cluster.client() as api:
            assert rbac(api).read_cluster_role(name).rules[0].verbs == ["get"]
    finally:
        with dev_cluster.client() as api:
            try:
                rbac(api).delete_cluster_role(name)
            except k8s.ApiException as exc:
                assert exc.status == 404


@pytest.mark.k8s
def test_fields_owned_by_another_manager_fail_the_apply_unless_forced(dev_cluster, make_ctx):
    from ansflow.engines.kube_objects import Resource, apply_object

    ns = dev_cluster.namespace("dep-fc")
    spec = {"name": "web", "image": "web:1", "replicas": 1}
    deploy(make_ctx, dev_cluster, ns, deployment_spec=spec, wait=False)
    # Someone scales it with `kubectl apply --server-side --force-conflicts`: kubectl now
    # owns spec.replicas.
    deployments = Resource("apps/v1", "Deployment", "deployments", True)
    scaled = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": ns}, "spec": {"replicas": 3}}
    with dev_cluster.client() as api:
        from ansflow.engines import kube_objects

        kube_objects.request(api, "PATCH", deployments.path(ns, "web"), body=scaled,
                             query=[("fieldManager", "kubectl"), ("force", "true")],
                             content_type=kube_objects.APPLY_CONTENT_TYPE)
    with pytest.raises(StepFailed) as err:
        deploy(make_ctx, dev_cluster, ns, deployment_spec=spec, wait=False)
    message = str(err.value)
    assert f"deployment/web in namespace {ns}" in message
    assert '.spec.replicas (owned by "kubectl")' in message
    assert "force_conflicts: true" in message
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).spec.replicas == 3
        # The adapter's apply is the same for every caller: no force, no take-over.
        with pytest.raises(kube_objects.KubeApplyConflict) as conflict:
            apply_object(api, deployments, {**scaled, "spec": {"replicas": 2}})
        assert conflict.value.conflicts == [(".spec.replicas", "kubectl")]
    _, result = deploy(make_ctx, dev_cluster, ns, deployment_spec=spec, force_conflicts=True)
    assert result.outputs["objects"] == "deployment/web"
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.spec.replicas == 1
    owners = {m.manager for m in d.metadata.managed_fields if "f:replicas" in
              str((m.fields_v1 or {}).get("f:spec", {}))}
    assert owners == {"ansflow"}
