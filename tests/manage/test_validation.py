"""The run-form checks (pure): Kubernetes' rules for names, labels, keys, quantities and
ports, and the manifests the forms build once every field passed."""

from __future__ import annotations

import base64

import pytest

from ansflow.errors import StepFailed
from ansflow.manage.builders import (
    check_secret_form,
    configmap_object,
    deployment_object,
    namespace_objects,
    secret_object,
    service_object,
)
from ansflow.manage.validation import (
    Problems,
    check_data_keys,
    check_dns_1035,
    check_dns_label,
    check_int_or_percent,
    check_labels,
    check_object_name,
    check_port,
    check_quantity,
    check_subdomain,
    require_namespace,
)


def problems_of(check, *args, **kw) -> list[str]:
    problems = Problems("x")
    check(problems, "f", *args, **kw)
    return problems.items


@pytest.mark.parametrize("good", ["a", "web-1", "0abc", "a" * 63])
def test_dns_labels_accepted(good):
    assert problems_of(check_dns_label, good) == []


@pytest.mark.parametrize("bad", ["", "Web", "-a", "a-", "a.b", "a_b", "a" * 64, "ä"])
def test_dns_labels_refused_with_the_rule(bad):
    found = problems_of(check_dns_label, bad)
    assert len(found) == 1 and ("is empty" in found[0] or "at most 63 lower-case" in found[0])


def test_subdomains_allow_dots_and_253_characters_service_names_start_with_a_letter():
    assert problems_of(check_subdomain, "app.config-1") == []
    assert problems_of(check_subdomain, ".a") and problems_of(check_subdomain, "a" * 254)
    assert problems_of(check_dns_1035, "web") == []
    assert "starting with a letter" in problems_of(check_dns_1035, "1web")[0]


def test_label_keys_and_values_follow_kubernetes_rules():
    good = {"app": "web", "example.com/tier": "front", "x": "", "a_b.c-d": "A.b_c-1"}
    assert problems_of(check_labels, good) == []
    found = problems_of(check_labels, {"-bad": "v", "Ex.com/a": "v", "k": "-v", "/a": "v",
                                       "ok": "x" * 64})
    assert len(found) == 5
    assert "'-bad' is not a valid label key" in found[0]
    assert "value '-v' of 'k' is not a valid label value" in " ".join(found)


def test_data_keys_refuse_slashes_and_dot_names():
    assert problems_of(check_data_keys, ["app.conf", "A_b-1"]) == []
    assert len(problems_of(check_data_keys, ["a/b", ".", "..", "", "a b"])) == 5


@pytest.mark.parametrize("good", ["500m", "2", "1.5", "256Mi", "1Gi", "1e3", "100k", ".5"])
def test_quantities_accepted(good):
    assert problems_of(check_quantity, good) == []


@pytest.mark.parametrize("bad", ["-1", "1GB", "one", "1 Gi", "5mi", "1.2.3"])
def test_quantities_refused_with_examples(bad):
    found = problems_of(check_quantity, bad)
    assert "write e.g. 500m or 2 (CPU), 256Mi or 1Gi (memory)" in found[0]


def test_ports_and_counts():
    assert problems_of(check_port, 80) == [] and problems_of(check_port, None, optional=True) == []
    for bad in (0, 65536, -1, True, "80", None):
        assert "is not a port number (1-65535)" in problems_of(check_port, bad)[0]
    assert problems_of(check_int_or_percent, "25%") == [] and \
        problems_of(check_int_or_percent, "2") == []
    assert problems_of(check_int_or_percent, "25 percent")


def test_object_names_cannot_escape_the_url_path():
    assert problems_of(check_object_name, "system:node-reader") == []
    for bad in ("a/b", "..", "a?watch=1", "a b", "%2e", "a#b", ""):
        assert problems_of(check_object_name, bad), bad


def test_every_problem_of_a_form_is_named_in_one_error():
    with pytest.raises(StepFailed) as err:
        deployment_object(name="Web", image="", replicas=-1, ports=[0, 80], env={"1X": "v"},
                          requests_cpu="lots", requests_memory="", limits_cpu="",
                          limits_memory="1GB", strategy="RollingUpdate", max_surge="x",
                          max_unavailable="0", labels={"app": "other"}, image_pull_policy=None)
    text = str(err.value)
    assert text.startswith("deployment: refused, nothing was changed: name 'Web' is not a valid")
    for part in ("image '' is not an image reference", "replicas -1 must be a whole number",
                 "ports[0] 0 is not a port number", "'1X' is not a valid environment variable",
                 "requests_cpu 'lots' is not a quantity", "limits_memory '1GB' is not",
                 "labels: app must be the Deployment's name", "max_surge 'x' is not a count"):
        assert part in text, part
    assert "hint: correct the form's fields" in text
    with pytest.raises(StepFailed, match="namespace: refused.*no namespace given"):
        require_namespace("namespace", None)


def test_namespace_form_builds_the_namespace_and_its_quota():
    ns, quota = namespace_objects("team-a", {"team": "a"}, "4", "8Gi", 20)
    assert ns == {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "team-a", "labels": {"team": "a"}}}
    assert quota["metadata"] == {"name": "ansflow-quota", "namespace": "team-a"}
    assert quota["spec"]["hard"] == {"limits.cpu": "4", "limits.memory": "8Gi", "pods": "20"}
    assert namespace_objects("team-a", None, "", "", None)[1] is None
    with pytest.raises(StepFailed, match="quota_pods -1 must be a whole number"):
        namespace_objects("team-a", None, "", "", -1)


def test_deployment_form_sets_strategy_resources_ports_and_env():
    obj = deployment_object(name="web", image="nginx:1.27", replicas=3, ports=[80, 8080],
                            env={"MODE": "prod"}, requests_cpu="250m", requests_memory="64Mi",
                            limits_cpu="1", limits_memory="", strategy="RollingUpdate",
                            max_surge="1", max_unavailable="25%", labels={"tier": "front"},
                            image_pull_policy="IfNotPresent")
    spec = obj["spec"]
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}}
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"},
                                  {"containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"},
                                      "limits": {"cpu": "1"}}
    assert container["env"] == [{"name": "MODE", "value": "prod"}]
    assert spec["template"]["metadata"]["labels"] == {"app": "web", "tier": "front"}
    recreate = deployment_object(name="web", image="nginx", replicas=1, ports=None, env=None,
                                 requests_cpu="", requests_memory="", limits_cpu="",
                                 limits_memory="", strategy="Recreate", max_surge="bad",
                                 max_unavailable="bad", labels=None, image_pull_policy=None)
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_service_form_ports_names_and_node_ports():
    obj = service_object(name="web", service_type="NodePort", selector=None, labels=None,
                         ports=[{"port": 80, "target_port": 8080, "name": "http",
                                 "node_port": 30080},
                                {"port": 443, "target_port": "https", "name": "https"}])
    assert obj["spec"] == {"type": "NodePort", "selector": {"app": "web"}, "ports": [
        {"port": 80, "protocol": "TCP", "targetPort": 8080, "name": "http", "nodePort": 30080},
        {"port": 443, "protocol": "TCP", "targetPort": "https", "name": "https"}]}
    with pytest.raises(StepFailed) as err:
        service_object(name="web", service_type="ClusterIP", selector={"a/b/c": "x"},
                       labels=None, ports=[{"port": 70000, "node_port": 30001},
                                           {"port": 81, "protocol": "QUIC"}])
    text = str(err.value)
    assert "ports[1].protocol: Input should be 'TCP', 'UDP' or 'SCTP'" in text
    assert "ports[0].port 70000 is not a port number" in text
    assert "a ClusterIP Service has no node ports" in text
    assert "'a/b/c' is not a valid label key" in text
    with pytest.raises(StepFailed, match="a Service needs at least one port"):
        service_object(name="web", service_type="ClusterIP", ports=[], selector=None,
                       labels=None)


def test_configmap_and_secret_forms():
    cm = configmap_object("app-config", {"a.conf": "x=1"}, None)
    assert cm == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
                  "data": {"a.conf": "x=1"}}
    with pytest.raises(StepFailed, match=r"data: key 'a/b' is not a valid key"):
        configmap_object("app-config", {"a/b": "x"}, None)
    with pytest.raises(StepFailed, match="keys is empty: map each key"):
        check_secret_form("db", "Opaque", {}, None)
    with pytest.raises(StepFailed, match="type 'generic' is not one of Opaque"):
        check_secret_form("db", "generic", {"password": "db-pw"}, None)
    obj = secret_object("db", "Opaque", {"password": "hunter22"}, {})
    assert obj["data"] == {"password": base64.b64encode(b"hunter22").decode()}
