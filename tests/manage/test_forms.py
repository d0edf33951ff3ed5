"""The create-or-update operations against the dev cluster: each kind created, updated and
left unchanged, read back from the cluster; bad input, refusals and conflicts change nothing;
a Secret's values come from saved Prefect Secret blocks and are never shown."""

from __future__ import annotations

import base64
import secrets as random
import uuid

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.manage import OPERATIONS
from ansflow.manage.objects import configmap, deployment, namespace, secret, service

pytestmark = pytest.mark.k8s


def test_object_operations_are_registered_with_their_flags():
    assert {"apply", "describe", "namespace", "configmap", "secret", "deployment",
            "service"} <= set(OPERATIONS)
    assert OPERATIONS["describe"].read_only and not OPERATIONS["apply"].destructive
    assert not any(OPERATIONS[n].read_only for n in ("apply", "namespace", "secret"))


def test_namespace_created_then_updated_with_labels_and_quota(dev_cluster, run_op):
    name = f"team-{uuid.uuid4().hex[:8]}"
    created, _ = run_op(namespace, None, name=name, labels={"team": "a", "tier": "dev"},
                        quota_cpu="4", quota_memory="8Gi", quota_pods=20)
    assert created.outputs == {"state": "created", "name": name, "quota": "created"}
    assert created.target.kind == "Namespace" and created.target.namespace is None
    assert created.before is None and created.after["quota"] == {
        "limits.cpu": "4", "limits.memory": "8Gi", "pods": "20"}
    updated, _ = run_op(namespace, None, name=name, labels={"team": "b"}, quota_pods=5)
    assert updated.outputs["state"] == "updated" and updated.changed
    assert updated.before["labels"]["tier"] == "dev" and "tier" not in updated.after["labels"]
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        labels = core.read_namespace(name).metadata.labels
        quota = core.read_namespaced_resource_quota("ansflow-quota", name)
    assert labels["team"] == "b" and "tier" not in labels
    assert quota.spec.hard == {"pods": "5"}
    again, _ = run_op(namespace, None, name=name, labels={"team": "b"}, quota_pods=5)
    assert again.outputs["state"] == "unchanged" and not again.changed
    assert "No field changed." in again.markdown


def test_bad_namespace_fields_are_refused_and_nothing_is_created(dev_cluster, run_op):
    name = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StepFailed) as err:
        run_op(namespace, None, name=name, labels={"ok": "-bad-"}, quota_memory="8 GB")
    assert "value '-bad-' of 'ok' is not a valid label value" in str(err.value)
    assert "quota_memory '8 GB' is not a quantity" in str(err.value)
    with dev_cluster.client() as api:
        names = [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items]
    assert name not in names


def test_configmap_created_updated_and_unchanged(dev_cluster, run_op):
    ns = dev_cluster.namespace("cm")
    created, _ = run_op(configmap, ns, name="app-config", data={"a.conf": "x=1", "b": "2"})
    assert created.outputs == {"state": "created", "name": "app-config"}
    assert str(created.target) == f"configmap/app-config in namespace {ns} (cluster test)"
    updated, _ = run_op(configmap, ns, name="app-config", data={"a.conf": "x=2"},
                        labels={"app": "web"})
    assert updated.outputs["state"] == "updated"
    assert updated.before["data"] == {"a.conf": "x=1", "b": "2"}
    assert updated.after["data"] == {"a.conf": "x=2"}
    for line in ("-  a.conf: x=1\n", "-  b: '2'\n", "+  a.conf: x=2\n", "+    app: web\n"):
        assert line in updated.markdown
    with dev_cluster.client() as api:
        cm = k8s.CoreV1Api(api).read_namespaced_config_map("app-config", ns)
    assert cm.data == {"a.conf": "x=2"} and cm.metadata.labels == {"app": "web"}
    assert [m.manager for m in cm.metadata.managed_fields] == ["ansflow"]
    again, _ = run_op(configmap, ns, name="app-config", data={"a.conf": "x=2"},
                      labels={"app": "web"})
    assert again.outputs["state"] == "unchanged"
    with pytest.raises(StepFailed, match="data: key 'a/b' is not a valid key"):
        run_op(configmap, ns, name="app-config", data={"a/b": "x"})
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("app-config", ns).data == \
            {"a.conf": "x=2"}


def test_a_field_owned_by_another_manager_is_a_conflict_naming_both(dev_cluster, run_op):
    ns = dev_cluster.namespace("cm-conflict")
    with dev_cluster.client() as api:
        api.call_api(*api.param_serialize(
            "PATCH", f"/api/v1/namespaces/{ns}/configmaps/shared",
            query_params=[("fieldManager", "other-tool")],
            header_params={"Content-Type": "application/apply-patch+yaml",
                           "Accept": "application/json"},
            body={"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": "shared"}, "data": {"mode": "theirs"}},
            auth_settings=["BearerToken"])).read()
    with pytest.raises(StepFailed) as err:
        run_op(configmap, ns, name="shared", data={"mode": "ours"})
    message = str(err.value)
    assert message.startswith(f"cluster 'test': apply (patch) configmaps 'shared' in namespace "
                              f"{ns}: configmap/shared in namespace {ns}: 1 field(s) owned by "
                              'other field managers: .data.mode (owned by "other-tool")')
    assert "hint: set force_conflicts: true" in message
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("shared", ns).data == \
            {"mode": "theirs"}
    forced, _ = run_op(configmap, ns, name="shared", data={"mode": "ours"},
                       force_conflicts=True)
    assert forced.outputs["state"] == "updated"
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("shared", ns).data == \
            {"mode": "ours"}


def test_forbidden_names_the_verb_resource_namespace_and_cluster(dev_cluster, run_op,
                                                                read_only_block):
    ns = dev_cluster.namespace("cm-rbac")
    block, token = read_only_block(ns, ["configmaps"])
    with pytest.raises(StepFailed) as err:
        run_op(configmap, ns, block=block, name="app", data={"a": "1"})
    message = str(err.value)
    assert message.startswith(f"cluster 'reader': apply (patch) configmaps 'app' in namespace "
                              f"{ns}: 403 Forbidden: ")
    assert 'cannot patch resource "configmaps"' in message and token not in message
    with dev_cluster.client() as api:
        names = [c.metadata.name for c in k8s.CoreV1Api(api).list_namespaced_config_map(ns).items]
    assert "app" not in names


def test_secret_values_come_from_prefect_secret_blocks_and_are_never_shown(
        dev_cluster, run_op, shown_to_user, monkeypatch):
    from prefect.blocks.system import Secret

    ns = dev_cluster.namespace("secret")
    password, token = f"pw-{random.token_hex(12)}", f"tok-{random.token_hex(12)}"
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("ANSFLOW_MANAGE_SECRET_BLOCKS", f"db-password-{suffix},api-*-{suffix}")
    Secret(value=password).save(f"db-password-{suffix}", overwrite=True)
    Secret(value=token).save(f"api-token-{suffix}", overwrite=True)
    created, ctx = run_op(secret, ns, name="db", keys={"password": f"db-password-{suffix}"})
    assert created.outputs == {"state": "created", "name": "db", "keys": "password"}
    assert created.after == {"labels": {}, "type": "Opaque", "keys": ["password"]}
    updated, _ = run_op(secret, ns, name="db", keys={"password": f"db-password-{suffix}",
                                                      "token": f"api-token-{suffix}"})
    assert updated.outputs["state"] == "updated" and updated.after["keys"] == ["password",
                                                                              "token"]
    with dev_cluster.client() as api:
        data = k8s.CoreV1Api(api).read_namespaced_secret("db", ns).data
    assert {k: base64.b64decode(v).decode() for k, v in data.items()} == {
        "password": password, "token": token}
    shown = shown_to_user(created) + shown_to_user(updated)
    for value in (password, token):
        assert value not in shown
        assert base64.b64encode(value.encode()).decode() not in shown
    assert "+  token: '***'" in updated.markdown
    assert ctx.masker(f"x {password} y") == "x *** y"


def test_a_secret_naming_a_missing_block_changes_nothing(dev_cluster, run_op, monkeypatch):
    ns = dev_cluster.namespace("secret-miss")
    monkeypatch.setenv("ANSFLOW_MANAGE_SECRET_BLOCKS", "no-such-block-*")
    with pytest.raises(StepFailed) as err:
        run_op(secret, ns, name="db", keys={"password": "no-such-block-xyz"})
    assert "key 'password': no saved Prefect Secret block named 'no-such-block-xyz'; nothing " \
           "was changed" in str(err.value)
    with pytest.raises(StepFailed, match="type 'generic' is not one of Opaque"):
        run_op(secret, ns, name="db", keys={"password": "x"}, type="generic")
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).list_namespaced_secret(
            ns, field_selector="metadata.name=db").items == []


def test_deployment_created_rolled_out_then_updated(dev_cluster, run_op):
    ns = dev_cluster.namespace("deploy-form")
    created, _ = run_op(deployment, ns, name="web", image="example.invalid/web:1", replicas=2,
                        ports=[8080], env={"MODE": "prod"}, requests_cpu="100m",
                        limits_memory="128Mi", max_surge="1", max_unavailable="0",
                        labels={"tier": "front"}, timeout=90)
    assert created.outputs == {"state": "created", "name": "web",
                               "image": "example.invalid/web:1", "replicas": "2"}
    assert "Rollout: " in created.markdown
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.status.ready_replicas == 2 and d.metadata.labels == {"app": "web", "tier": "front"}
    c = d.spec.template.spec.containers[0]
    assert c.ports[0].container_port == 8080 and c.env[0].value == "prod"
    assert c.resources.requests == {"cpu": "100m"} and c.resources.limits == {"memory": "128Mi"}
    assert d.spec.strategy.rolling_update.max_surge == 1
    updated, _ = run_op(deployment, ns, name="web", image="example.invalid/web:2", replicas=3,
                        strategy="Recreate", timeout=90)
    assert updated.outputs["state"] == "updated"
    assert updated.before["image"] == "example.invalid/web:1"
    assert updated.after["image"] == "example.invalid/web:2" and updated.after["replicas"] == 3
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.spec.strategy.type == "Recreate" and d.spec.strategy.rolling_update is None
    assert d.spec.template.spec.containers[0].env is None and d.status.ready_replicas == 3
    with pytest.raises(StepFailed, match="requests_memory '1 GB' is not a quantity"):
        run_op(deployment, ns, name="web", image="example.invalid/web:3", replicas=1,
               requests_memory="1 GB")
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.spec.replicas == 3 and d.spec.template.spec.containers[0].image.endswith(":2")


def test_service_created_then_changed_to_node_port(dev_cluster, run_op):
    ns = dev_cluster.namespace("svc-form")
    created, _ = run_op(service, ns, name="web", ports=[{"port": 80, "target_port": 8080}])
    assert created.outputs["state"] == "created" and created.outputs["type"] == "ClusterIP"
    assert created.outputs["cluster_ip"].startswith("10.0.0.")
    updated, _ = run_op(service, ns, name="web", type="NodePort", selector={"app": "api"},
                        ports=[{"port": 80, "target_port": 8080, "name": "http",
                                "node_port": 30080},
                               {"port": 53, "protocol": "UDP", "name": "dns"}])
    assert updated.outputs["state"] == "updated"
    assert updated.before["type"] == "ClusterIP" and updated.after["type"] == "NodePort"
    with dev_cluster.client() as api:
        svc = k8s.CoreV1Api(api).read_namespaced_service("web", ns)
    assert svc.spec.type == "NodePort" and svc.spec.selector == {"app": "api"}
    assert [(p.name, p.port, p.protocol, p.node_port is not None) for p in svc.spec.ports] == [
        ("http", 80, "TCP", True), ("dns", 53, "UDP", True)]
    assert svc.spec.ports[0].node_port == 30080
    with pytest.raises(StepFailed, match=r"ports\[0\].port 0 is not a port number"):
        run_op(service, ns, name="web", ports=[{"port": 0}])
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_service("web", ns).spec.type == "NodePort"


def test_an_unreachable_cluster_says_so(run_op):
    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.errors import EngineUnavailable

    block = KubernetesCluster(server="https://127.0.0.1:9", verify_ssl=False, namespace="x")
    with pytest.raises(EngineUnavailable, match=r"cluster 'reader': get configmaps 'app' in "
                                                "namespace x: the API server is unreachable"):
        run_op(configmap, None, block=block, name="app", data={"a": "1"})
