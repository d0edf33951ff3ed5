"""The Kubernetes adapter's object access (ansflow/engines/kube_objects.py) against the dev
cluster: discovery, server-side apply, get, list, watch, and its error tree; and the one
translation into step errors (tasks/k8s_session.api_errors)."""

from __future__ import annotations

import threading
import time

import pytest
import urllib3
from kubernetes import client as k8s

from ansflow.engines.kube import build_api_client
from ansflow.engines.kube_objects import (
    FIELD_MANAGER,
    KubeConflict,
    KubeForbidden,
    KubeNotFound,
    KubeUnavailable,
    apply_object,
    get_object,
    list_objects,
    request,
    resolve_kind,
    resolve_type,
    watch_events,
)
from ansflow.errors import EngineUnavailable, StepFailed
from ansflow.runtime.k8s_session import api_errors

pytestmark = pytest.mark.k8s


def test_discovery_resolves_kinds_short_names_and_says_what_is_missing(dev_cluster):
    with dev_cluster.client() as api:
        deploy = resolve_type(api, "deploy")
        assert (deploy.api_version, deploy.kind, deploy.plural, deploy.namespaced) == (
            "apps/v1", "Deployment", "deployments", True)
        assert resolve_type(api, "jobs.batch").kind == "Job"
        assert not resolve_kind(api, "v1", "Namespace").namespaced
        with pytest.raises(KubeNotFound, match="no resource type 'gizmos'"):
            resolve_type(api, "gizmos")
        with pytest.raises(KubeNotFound, match="does not serve apiVersion 'nope.io/v1'"):
            resolve_kind(api, "nope.io/v1", "Thing")


def test_server_side_apply_creates_then_updates_under_one_field_manager(dev_cluster):
    ns = dev_cluster.namespace("ssa")
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "cfg", "namespace": ns}, "data": {"a": "1"}}
    with dev_cluster.client() as api:
        res = resolve_kind(api, "v1", "ConfigMap")
        assert get_object(api, res, "cfg", ns) is None
        dry = apply_object(api, res, obj, dry_run=True)
        assert dry["data"] == {"a": "1"} and get_object(api, res, "cfg", ns) is None
        apply_object(api, res, obj)
        apply_object(api, res, {**obj, "data": {"a": "2", "b": "3"}})
        live = get_object(api, res, "cfg", ns)
        listed = list_objects(api, res, ns)
    assert live["data"] == {"a": "2", "b": "3"}
    assert [(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]] == [
        (FIELD_MANAGER, "Apply")]
    # Every namespace also gets the controller manager's kube-root-ca.crt.
    assert "cfg" in [item["metadata"]["name"] for item in listed["items"]]


def test_watch_sees_added_modified_and_deleted_events(dev_cluster):
    ns = dev_cluster.namespace("watch")
    with dev_cluster.client() as api:
        res = resolve_kind(api, "v1", "ConfigMap")
        rv = list_objects(api, res, ns)["metadata"]["resourceVersion"]
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(ns, {"metadata": {"name": "w"}, "data": {"x": "1"}})
        core.patch_namespaced_config_map("w", ns, {"data": {"x": "2"}})
        core.delete_namespaced_config_map("w", ns)
        seen = []
        for event in watch_events(api, res, ns, "w", rv, seconds=10):
            seen.append(event["type"])
            if event["type"] == "DELETED":
                break
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


def test_a_watch_can_be_closed_from_another_thread(dev_cluster):
    ns = dev_cluster.namespace("watch-close")
    with dev_cluster.client() as api:
        res = resolve_kind(api, "v1", "ConfigMap")
        rv = list_objects(api, res, ns)["metadata"]["resourceVersion"]
        opened = []
        threading.Timer(1.0, lambda: opened[0].shutdown()).start()
        started = time.monotonic()
        try:  # a closed watch ends, or its read fails: either way at once, not after 60 s
            events = list(watch_events(api, res, ns, "never", rv, seconds=60,
                                       on_open=opened.append))
        except (urllib3.exceptions.HTTPError, OSError):
            events = []
    assert events == [] and opened and time.monotonic() - started < 30


def test_conflict_is_kube_conflict_with_the_client_error_chained(dev_cluster):
    ns = dev_cluster.namespace("conflict")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    with dev_cluster.client() as api:
        res = resolve_kind(api, "v1", "ConfigMap")
        request(api, "POST", res.path(ns), body=body)
        with pytest.raises(KubeConflict) as caught:
            request(api, "POST", res.path(ns), body=body)
    assert caught.value.status == 409 and isinstance(caught.value.__cause__, k8s.ApiException)
    with pytest.raises(StepFailed, match=r"cluster 'x': create c: 409 Conflict: .*already exists"):
        with api_errors("x", "create c"):
            raise caught.value


def test_read_only_token_is_kube_forbidden_then_a_clean_403_naming_the_cluster(dev_cluster):
    ns = dev_cluster.namespace("rbac")
    with dev_cluster.client() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
        rbac.create_namespaced_role(ns, {
            "metadata": {"name": "read"},
            "rules": [{"apiGroups": ["", "apps"], "resources": ["*"],
                       "verbs": ["get", "list", "watch"]}],
        })
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "reader-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        })
        token = core.create_namespaced_service_account_token(
            "reader", ns, {"spec": {"expirationSeconds": 600}}).status.token
    ca = (dev_cluster.paths.pki / "ca.crt").read_text()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": ns}}
    with build_api_client(server=dev_cluster.server, token=token, ca_cert=ca) as reader:
        deployments = resolve_kind(reader, "apps/v1", "Deployment")
        assert list_objects(reader, deployments, ns)["items"] == []  # reading is allowed
        with pytest.raises(KubeForbidden) as caught:
            apply_object(reader, resolve_kind(reader, "v1", "ConfigMap"), cm)
    with pytest.raises(StepFailed) as err:
        with api_errors(dev_cluster.name, f"apply configmap/x in {ns}"):
            raise caught.value
    assert type(err.value) is StepFailed and caught.value.status == 403
    assert f"cluster '{dev_cluster.name}'" in str(err.value)
    assert f"system:serviceaccount:{ns}:reader" in str(err.value)
    assert token not in str(err.value)


def test_unreachable_server_is_kube_unavailable_then_engine_unavailable():
    with build_api_client(server="https://127.0.0.1:9", verify_ssl=False) as api:
        api.configuration.retries = 0
        with pytest.raises(KubeUnavailable) as caught:
            request(api, "GET", "/version", timeout=3)
    with pytest.raises(EngineUnavailable, match="cluster 'gone': read the version: the API "
                                                "server is unreachable"):
        with api_errors("gone", "read the version"):
            raise caught.value
