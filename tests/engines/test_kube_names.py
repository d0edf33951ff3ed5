"""The API server's name, namespace, container and label-selector rules (pure), as the
Kubernetes adapter applies them before any request: hostile values are refused with a message
naming the field, the value and the rule; what the cluster accepts passes."""

from __future__ import annotations

import pytest

from ansflow.engines.kube_errors import KubeError, KubeInvalid, KubeNameError
from ansflow.engines.kube_names import (
    check_container,
    check_name,
    check_namespace,
    check_selector,
    name_problem,
    name_rule,
    selector_problem,
)
from ansflow.engines.kube_objects import Resource

CONFIGMAPS = Resource("v1", "ConfigMap", "configmaps", True)
NAMESPACES = Resource("v1", "Namespace", "namespaces", False)
CLUSTERROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)

HOSTILE_NAMES = [
    "../", "..", ".", "%2e%2e/", "%2e%2e", "x/../../kube-system/secrets/victim",
    "x/../../../../nodes/kwok-node-0", "x/../../../../namespaces/prod", "a\x00b", "a\nb",
    "a\r\nX-Injected: 1", "x" * 254, "UPPER", "with space", "-leading", "trailing-",
    "a_b", "", "x?watch=true", "x#frag", "caf\u00e9",
]


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_names_are_refused_for_every_kind(value):
    for kind in ("ConfigMap", "Pod", "Deployment", "Namespace", "Service", "MyCustomThing"):
        assert name_problem(value, kind), (value, kind)
    with pytest.raises(KubeNameError):
        check_name(value, "ConfigMap")


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_namespaces_and_containers_are_refused(value):
    with pytest.raises(KubeNameError, match="not a valid Kubernetes namespace"):
        check_namespace(value)
    with pytest.raises(KubeNameError, match="not a valid Kubernetes container name"):
        check_container(value)


@pytest.mark.parametrize("value", ["web", "my-app.v2", "a", "0abc", "x" * 253,
                                   "a.b.c-d", "review-42"])
def test_valid_subdomain_names_pass(value):
    assert check_name(value, "Deployment") == value
    assert check_name(value, "Pod") == value


def test_each_kind_gets_the_api_servers_rule():
    assert name_rule("Namespace") == "dns1123-label"
    assert name_rule("Service") == "dns1035-label"
    assert name_rule("ClusterRole") == "path-segment"
    assert name_rule("Deployment") == name_rule("SomeCRD") == "dns1123-subdomain"
    # A namespace or container is one label: no dots, at most 63.
    assert name_problem("a.b", "Namespace") and name_problem("x" * 64, "Namespace")
    assert check_namespace("x" * 63) and check_container("main-2")
    # A Service's name must start with a letter.
    assert name_problem("1svc", "Service") and not name_problem("svc1", "Service")
    # RBAC names are only path segments: 'system:...' is valid, '..' and '/' are not.
    assert check_name("system:controller:job-controller", "ClusterRole")
    assert name_problem("..", "ClusterRole") and name_problem("a/b", "ClusterRole")
    assert name_problem("a%2Fb", "ClusterRole") and name_problem("a\x00", "ClusterRole")


def test_the_message_names_the_field_the_value_and_the_rule():
    with pytest.raises(KubeNameError) as caught:
        check_name("x/../y", "ConfigMap", "resource_name")
    text = str(caught.value)
    assert text.startswith("resource_name 'x/../y' is not a valid Kubernetes name for a "
                           "ConfigMap: may not contain '/'")
    assert "DNS-1123 subdomain" in text
    # An adapter error: the step layer's KubeError translation shows it as a step failure.
    assert isinstance(caught.value, KubeInvalid) and isinstance(caught.value, KubeError)
    assert caught.value.__cause__ is None


def test_a_very_long_value_is_shown_bounded():
    with pytest.raises(KubeNameError) as caught:
        check_name("A" * 100_000)
    assert len(str(caught.value)) < 500 and "100000 characters" in str(caught.value)


@pytest.mark.parametrize("value", [
    "", "app", "!app", "app=web", "app==web", "app!=web", "app=", "app=web,tier=db",
    "app=x,foo", "app in (a,b)", "app notin (a, b)", "app in ()", " app = web , tier ",
    "example.com/app=web", "app.kubernetes.io/name=my_app", "gen>3", "gen<10",
    "ansflow.dev/run-id=abc123,ansflow.dev/step-pod=true",
])
def test_selectors_the_api_server_parses_pass(value):
    assert selector_problem(value) is None
    assert check_selector(value) == value


@pytest.mark.parametrize("value", [
    "app=x&watch=true", "app=x\x00", "app=x\nfoo=y", "app=web,", ",app", "app=a b",
    "app in (a", "app in a", "app=(", "!app=web", "app=" + "v" * 64, "k" * 64 + "=v",
    "/app=v", "a/b/c=v", "UP.PER/app=v", "app=-x", "app=../x", "app=%2e%2e",
    "gen>x", "app===x", "app=x)", "app=x;rm", "app='x'",
])
def test_selectors_the_api_server_refuses_are_refused(value):
    assert selector_problem(value), value
    with pytest.raises(KubeNameError, match="pod_selector .* is not a valid Kubernetes label "
                                            "selector"):
        check_selector(value, "pod_selector")


def test_resource_paths_are_checked_and_quoted():
    assert CONFIGMAPS.path("team-a", "cfg.v1") == "/api/v1/namespaces/team-a/configmaps/cfg.v1"
    assert CONFIGMAPS.path("team-a") == "/api/v1/namespaces/team-a/configmaps"
    assert NAMESPACES.path(None, "prod") == "/api/v1/namespaces/prod"
    # An RBAC name with ':' travels quoted, as one segment.
    assert CLUSTERROLES.path(None, "system:x") == \
        "/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Ax"
    for name in HOSTILE_NAMES:
        with pytest.raises(KubeNameError):
            CONFIGMAPS.path("team-a", name)
        with pytest.raises(KubeNameError):
            CONFIGMAPS.path(name or "..")
    # An empty name would address the whole collection (a DELETE there deletes them all).
    with pytest.raises(KubeNameError, match="must not be empty"):
        CONFIGMAPS.path("team-a", "")


@pytest.mark.parametrize("path", ["/api/v1/namespaces/a/configmaps/x/../../../b/configmaps/v",
                                  "/api/v1/namespaces/a/configmaps/..", "/api/v1/./nodes",
                                  "/api/v1/namespaces/a\n/pods"])
def test_a_hand_built_path_that_would_be_collapsed_never_leaves(path):
    from ansflow.engines.kube_objects import request

    # No client needed: the refusal comes before anything is serialized or sent.
    with pytest.raises(KubeNameError, match="refused before sending"):
        request(None, "GET", path)


def test_a_label_selector_in_any_query_is_checked_before_sending():
    from ansflow.engines.kube_objects import list_objects, request

    with pytest.raises(KubeNameError, match="label selector"):
        request(None, "GET", "/api/v1/pods", query=[("labelSelector", "app=x&watch=true")])
    with pytest.raises(KubeNameError, match="label selector"):
        list_objects(None, CONFIGMAPS, "team-a", label_selector="a=b\nc")


def test_label_refusals_show_a_bounded_value():
    """A 100 KB label key, value or selector word is named in the refusal cut short, with its
    length, not repeated whole."""
    from ansflow.engines.kube_names import label_key_problem, label_value_problem

    key = label_key_problem("a" * 100_000 + "/x")
    value = label_value_problem("%" * 100_000)
    assert key is not None and len(key) < 400 and "100002 characters" in key
    assert value is not None and len(value) < 400 and "100000 characters" in value
