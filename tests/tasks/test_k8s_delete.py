"""k8s_delete against the dev cluster: real deletions, real garbage collection, real RBAC."""

from __future__ import annotations

import time

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.spec.steps import K8sDeleteConfig
from ansflow.tasks.k8s_delete import close_names, execute_k8s_delete

pytestmark = pytest.mark.k8s


def config(dev_cluster, ns, **kw) -> K8sDeleteConfig:
    return K8sDeleteConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


def configmap(api, ns, name, labels=None) -> None:
    k8s.CoreV1Api(api).create_namespaced_config_map(
        ns, {"metadata": {"name": name, "labels": labels or {}}, "data": {"k": "v"}})


def configmaps(api, ns) -> set[str]:
    return {c.metadata.name for c in k8s.CoreV1Api(api).list_namespaced_config_map(ns).items
            if c.metadata.name != "kube-root-ca.crt"}


def deployment_with_replicaset(api, ns, name) -> str:
    """A Deployment `name` and the name of its ReplicaSet (once the controller made it)."""
    labels = {"app": name}
    k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "main", "image": "example.invalid/app:1"}]}}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = k8s.AppsV1Api(api).list_namespaced_replica_set(
            ns, label_selector=f"app={name}").items
        if items:
            return items[0].metadata.name
        time.sleep(0.3)
    raise AssertionError("the ReplicaSet never appeared")


def test_delete_by_name_waits_until_gone(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("del")
    with dev_cluster.client() as api:
        configmap(api, ns, "cfg-main")
        configmap(api, ns, "other")
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="cm", resource_name="cfg-main"))
    assert result.outputs == {"deleted": "configmap/cfg-main", "count": "1"}
    with dev_cluster.client() as api:
        assert configmaps(api, ns) == {"other"}
    assert f"deleted configmap/cfg-main in namespace {ns} (propagation background)" in \
        caplog.messages


def test_delete_by_selector_deletes_only_the_matching_ones(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("del")
    with dev_cluster.client() as api:
        configmap(api, ns, "a", {"tier": "tmp"})
        configmap(api, ns, "b", {"tier": "tmp"})
        configmap(api, ns, "keep", {"tier": "prod"})
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="configmap", label_selector="tier=tmp"))
    assert result.outputs == {"deleted": "configmap/a,configmap/b", "count": "2"}
    with dev_cluster.client() as api:
        assert configmaps(api, ns) == {"keep"}


def test_orphan_leaves_the_replicaset_foreground_takes_it_first(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("del")
    with dev_cluster.client() as api:
        rs_orphan = deployment_with_replicaset(api, ns, "orphaned")
        rs_fg = deployment_with_replicaset(api, ns, "fg")
    execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="deployment", resource_name="orphaned",
        propagation="orphan"))
    execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="deploy", resource_name="fg", propagation="foreground"))
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        assert {d.metadata.name for d in apps.list_namespaced_deployment(ns).items} == set()
        left = {r.metadata.name: r for r in apps.list_namespaced_replica_set(ns).items}
    # Orphaned: the ReplicaSet stays, without its owner. Foreground: the Deployment was gone
    # only once its ReplicaSet was (the wait returned after that).
    assert rs_orphan in left and not left[rs_orphan].metadata.owner_references
    assert rs_fg not in left


def test_ignore_not_found_both_ways_and_the_close_name_is_suggested(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("del")
    with dev_cluster.client() as api:
        configmap(api, ns, "settings-web")
        configmap(api, ns, "zzz")
    with pytest.raises(StepFailed) as err:
        execute_k8s_delete(make_ctx("k8s_delete"), config(
            dev_cluster, ns, resource_type="configmap", resource_name="setings-web"))
    message = str(err.value)
    assert f"cluster 'test': configmap/setings-web in namespace {ns} not found" in message
    assert "did you mean 'settings-web'?" in message and "zzz" not in message
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="configmap", resource_name="setings-web",
        ignore_not_found=True))
    assert result.outputs == {"deleted": "", "count": "0"}
    with pytest.raises(StepFailed, match=rf"no configmaps match the selector 'app=none' in "
                                         rf"namespace {ns}"):
        execute_k8s_delete(make_ctx("k8s_delete"), config(
            dev_cluster, ns, resource_type="configmap", label_selector="app=none"))
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="configmap", label_selector="app=none",
        ignore_not_found=True))
    assert result.outputs["count"] == "0"
    with dev_cluster.client() as api:
        assert configmaps(api, ns) == {"settings-web", "zzz"}  # nothing else was touched


def test_namespace_deletion_needs_the_flag(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("victim")
    with pytest.raises(StepFailed, match="refusing to delete namespaces \\(a namespace and "
                                         "everything in it\\); nothing was deleted") as err:
        execute_k8s_delete(make_ctx("k8s_delete"), config(
            dev_cluster, "default", resource_type="namespace", resource_name=ns))
    assert "allow_cluster_scoped: true" in str(err.value)
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespace(ns).status.phase == "Active"
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, "default", resource_type="ns", resource_name=ns,
        allow_cluster_scoped=True, timeout=90))
    assert result.outputs == {"deleted": f"namespace/{ns}", "count": "1"}
    with dev_cluster.client() as api:
        assert ns not in {n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items}


def test_forbidden_names_verb_resource_namespace_and_cluster_and_deletes_nothing(
        dev_cluster, make_ctx):
    from ansflow.blocks.kubernetes import KubernetesCluster

    ns = dev_cluster.namespace("rbac")
    with dev_cluster.client() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        configmap(api, ns, "precious")
        core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
        rbac.create_namespaced_role(ns, {"metadata": {"name": "read"}, "rules": [
            {"apiGroups": [""], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "reader-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
        token = core.create_namespaced_service_account_token(
            "reader", ns, {"spec": {"expirationSeconds": 600}}).status.token
    block = KubernetesCluster(server=dev_cluster.server, token=token, namespace=ns,
                              certificate_authority=(dev_cluster.paths.pki / "ca.crt").read_text())
    with pytest.raises(StepFailed) as err:
        execute_k8s_delete(make_ctx("k8s_delete", blocks={"cluster": block}), K8sDeleteConfig(
            cluster="reader", resource_type="configmap", resource_name="precious"))
    message = str(err.value)
    assert f"cluster 'reader': delete configmaps precious in namespace {ns}: 403 Forbidden" \
        in message and "RBAC" in message and token not in message
    with dev_cluster.client() as api:
        assert configmaps(api, ns) == {"precious"}


def test_close_names_are_the_similar_ones_best_first():
    assert close_names("web-frontend", ["web-frontend-2", "db", "web-backend"]) == [
        "web-frontend-2", "web-backend"]
    assert close_names("x", ["completely", "different"]) == []


def test_unreachable_cluster_says_so_in_one_line(make_ctx):
    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.errors import EngineUnavailable

    block = KubernetesCluster(server="https://127.0.0.1:9", verify_ssl=False, namespace="x")
    with pytest.raises(EngineUnavailable, match="cluster 'gone': resolve resource type "
                                                "'configmap': the API server is unreachable"):
        execute_k8s_delete(make_ctx("k8s_delete", blocks={"cluster": block}), K8sDeleteConfig(
            cluster="gone", resource_type="configmap", resource_name="x"))


def test_a_pipeline_deploys_reads_logs_deletes_and_uses_their_outputs(dev_cluster,
                                                                      run_pipeline):
    ns = dev_cluster.namespace("pipe")
    marker = f"pipeline-log-{time.monotonic_ns()}"
    with dev_cluster.pod_logs.open("a") as fh:
        fh.write(f"2026-01-01T00:00:01Z stdout F {marker}\n")
    state, summary = run_pipeline(f"""\
        pipeline:
          name: manage
          defaults: {{k8s: {{cluster: {dev_cluster.block_name}, namespace: {ns}}}}}
          steps:
            - name: deploy
              type: k8s_deploy
              config:
                deployment_spec: {{name: web, image: "web:1", replicas: 1}}
            - name: logs
              type: k8s_logs
              config: {{pod_selector: app=web, tail_lines: 1}}
            - name: delete
              type: k8s_delete
              config: {{resource_type: deployment, label_selector: app=web}}
            - name: report
              type: command
              config:
                command: "echo {{{{ steps.delete.outputs.count }}}}"
        """)
    assert state.is_completed(), summary
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["logs"]["outputs"]["lines"] == "1"
    assert steps["logs"]["outputs"]["pods"].startswith("web-")
    assert steps["delete"]["outputs"] == {"deleted": "deployment/web", "count": "1"}
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).list_namespaced_deployment(ns).items == []


def test_a_pod_its_statefulset_recreates_under_the_same_name_counts_as_gone(dev_cluster,
                                                                            make_ctx):
    ns = dev_cluster.namespace("del")
    labels = {"app": "db"}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_stateful_set(ns, {
            "metadata": {"name": "db"},
            "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "example.invalid/db:1"}]}}}})
        core = k8s.CoreV1Api(api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not core.list_namespaced_pod(ns).items:
            time.sleep(0.3)
        old = core.read_namespaced_pod("db-0", ns).metadata.uid
    started = time.monotonic()
    result = execute_k8s_delete(make_ctx("k8s_delete"), config(
        dev_cluster, ns, resource_type="pod", resource_name="db-0", timeout=20))
    assert result.outputs == {"deleted": "pod/db-0", "count": "1"}
    assert time.monotonic() - started < 15
    with dev_cluster.client() as api:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pods = k8s.CoreV1Api(api).list_namespaced_pod(ns).items
            if pods and pods[0].metadata.uid != old:
                break
            time.sleep(0.3)
        else:
            raise AssertionError("the StatefulSet did not recreate db-0")
