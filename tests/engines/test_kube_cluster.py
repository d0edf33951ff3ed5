"""The Kubernetes adapter's cluster-level calls (ansflow.engines.kube_cluster) and its raw
REST reads (kube_objects.get_raw, list_pages), on the dev cluster's real API server; and a
management operation's open session worked in as it is (one client, one masking)."""

from __future__ import annotations

import pytest

from ansflow.devcluster.components import node_manifest
from ansflow.engines.kube import build_api_client
from ansflow.engines.kube_cluster import (
    container_log,
    ensure_cluster_role_binding,
    node_ready_since,
    one_attempt_client,
    ready_nodes,
    rules_review,
    server_version,
    service_account_exists,
)
from ansflow.engines.kube_errors import KubeError, KubeNameError, KubeUnavailable
from ansflow.engines.kube_kinds import CONFIGMAPS
from ansflow.engines.kube_objects import get_raw, list_pages, request

HOSTILE = ["../kube-system", "a/b", "x\x00y", "{{ secrets.x }}", "a" * 300, "$(touch /tmp/m)"]


def test_cluster_reads_answer_from_the_api_server(dev_cluster):
    with dev_cluster.client() as api:
        assert server_version(api).startswith("v") and ready_nodes(api) >= 1
        assert service_account_exists(api, "default", "default")
        assert not service_account_exists(api, "default", "never-made-here")
        status = rules_review(api, "default")
        assert any("*" in (rule.verbs or []) for rule in status.resource_rules or [])
        node = node_manifest(0)["metadata"]["name"]
        assert node_ready_since(api, node, since=0)
        assert not node_ready_since(api, node, since=4_000_000_000)  # no heartbeat yet
        body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "ansflow-test-view"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "view"},
                "subjects": [{"kind": "Group", "name": "nobody-here",
                              "apiGroup": "rbac.authorization.k8s.io"}]}
        ensure_cluster_role_binding(api, body)
        assert ensure_cluster_role_binding(api, body) is False  # exists: nothing to do


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_names_are_refused_before_any_request(dev_cluster, hostile):
    with dev_cluster.client() as api:
        mark = dev_cluster.audit_mark()
        for call in (lambda: rules_review(api, hostile),
                     lambda: container_log(api, "default", hostile, "c"),
                     lambda: container_log(api, hostile, "p", "c"),
                     lambda: container_log(api, "default", "p", hostile),
                     lambda: node_ready_since(api, hostile, 0)):
            with pytest.raises(KubeNameError):
                call()
        assert not [e for e in dev_cluster.audit_events(mark)
                    if hostile[:20] in e.get("requestURI", "")]


@pytest.mark.parametrize("path", ["/api/v1/namespaces/../../apis", "/api/v1/x\x00y",
                                  "/api/./v1", "/version\nHost: evil"])
def test_a_raw_path_that_would_climb_or_split_is_refused_before_sending(dev_cluster, path):
    with dev_cluster.client() as api:
        with pytest.raises(KubeNameError):
            get_raw(api, path)


def test_get_raw_keeps_a_non_2xx_answer_and_list_pages_follows_continue(dev_cluster):
    ns = dev_cluster.namespace("pages")
    with dev_cluster.client() as api:
        status, body = get_raw(api, "/readyz", query=[("verbose", "true")])
        assert status == 200 and b"readyz check passed" in body
        status, body = get_raw(api, f"/api/v1/namespaces/{ns}/configmaps/none-such")
        assert status == 404 and b"NotFound" in body
        for i in range(5):
            request(api, "POST", CONFIGMAPS.path(ns),
                    body={"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
        pages = list(list_pages(api, CONFIGMAPS.path(ns), page_size=2))
        names = [item["metadata"]["name"] for page in pages for item in page["items"]]
        assert len(pages) >= 3 and {f"c{i}" for i in range(5)} <= set(names)
        assert len(names) == len(set(names))


def test_no_answer_is_the_adapters_unavailable():
    with build_api_client(server="https://127.0.0.1:9", verify_ssl=False) as api:
        api.configuration.retries = 0
        with pytest.raises(KubeUnavailable):
            get_raw(api, "/readyz", timeout=3)
        with pytest.raises(KubeError):
            server_version(api, timeout=3)


def test_one_attempt_client_sends_each_request_once(dev_cluster):
    with one_attempt_client(dev_cluster.block()) as api:
        assert api.configuration.retries == 0
        assert server_version(api).startswith("v")


def test_a_handed_over_session_is_worked_in_without_a_second_client_or_masking(dev_cluster):
    from ansflow.runtime.base import Masker, StepContext
    from ansflow.runtime.k8s_session import ClusterSession, cluster_session

    masker = Masker()
    added: list[str] = []
    original = masker.add
    masker.add = lambda value: (added.append(value), original(value))  # count each masking
    block = dev_cluster.block()
    ctx = StepContext(pipeline="p", run_id="r", build_number=1, step_id="s", step_name="s",
                      stage="x", step_type="k8s_get", workspace="/tmp", masker=masker,
                      blocks={"cluster": block})
    with cluster_session(ctx, "admin", "default") as outer:
        masked_once = list(added)
        assert masked_once  # the admin kubeconfig's client key
        ctx.blocks["cluster"] = outer
        with cluster_session(ctx, "ignored-name", None) as inner:
            assert inner.api is outer.api and inner.block is block
            assert inner.namespace == block.namespace  # a step's own namespace, else the block's
        assert added == masked_once  # no second masking, no second client
    assert isinstance(outer, ClusterSession)
