"""Object names become URL paths: a `..` name, a hostile namespace or label selector in any
Kubernetes step is refused before any request, proved with the dev cluster's own audit log
(every request the API server received), and a victim ConfigMap in another namespace stays."""

from __future__ import annotations

import pytest
from kube_audit import assert_nothing_reached, events_after, victim_stays
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.flows.step_task import validate_config_for
from ansflow.spec.steps import K8sExecConfig, K8sWaitConfig
from ansflow.spec.steps_k8s import (
    K8sDeleteConfig,
    K8sLogsConfig,
    K8sRestartConfig,
    K8sRollbackConfig,
    K8sScaleConfig,
)
from ansflow.tasks.k8s_delete import execute_k8s_delete
from ansflow.tasks.k8s_exec import execute_k8s_exec
from ansflow.tasks.k8s_logs import execute_k8s_logs
from ansflow.tasks.k8s_restart import execute_k8s_restart
from ansflow.tasks.k8s_rollback import execute_k8s_rollback
from ansflow.tasks.k8s_scale import execute_k8s_scale
from ansflow.tasks.k8s_wait import execute_k8s_wait

pytestmark = pytest.mark.k8s

STEPS = {
    "k8s_delete": (execute_k8s_delete, K8sDeleteConfig),
    "k8s_scale": (execute_k8s_scale, K8sScaleConfig),
    "k8s_restart": (execute_k8s_restart, K8sRestartConfig),
    "k8s_rollback": (execute_k8s_rollback, K8sRollbackConfig),
    "k8s_logs": (execute_k8s_logs, K8sLogsConfig),
    "k8s_wait": (execute_k8s_wait, K8sWaitConfig),
    "k8s_exec": (execute_k8s_exec, K8sExecConfig),
}


def hostile_cases(victim_ns: str) -> list[tuple[str, dict]]:
    """(step type, config fields) that would reach `victim_ns` if sent unchecked."""
    up = f"x/../../../{victim_ns}/configmaps/victim"  # collapses onto the victim's path
    bad_ns = f"review-x/../../{victim_ns}"  # a namespace built from a value
    selector = "app=x&watch=true"
    return [
        ("k8s_delete", dict(resource_type="configmap", resource_name=up)),
        ("k8s_delete", dict(resource_type="configmap", resource_name="%2e%2e")),
        ("k8s_delete", dict(resource_type="configmap", resource_name="victim",
                            namespace=bad_ns)),
        ("k8s_delete", dict(resource_type="configmap", label_selector=selector)),
        ("k8s_delete", dict(resource_type="namespace",
                            resource_name=f"x/../../../../namespaces/{victim_ns}",
                            allow_cluster_scoped=True)),
        ("k8s_scale", dict(resource_name=up, replicas=0)),
        ("k8s_restart", dict(resource_name=up)),
        ("k8s_rollback", dict(resource_name=up)),
        ("k8s_logs", dict(pod=up)),
        ("k8s_logs", dict(pod_selector=selector)),
        ("k8s_wait", dict(resource_type="configmap", resource_name=up, condition="deleted",
                          timeout=5)),
        ("k8s_wait", dict(resource_type="configmap", resource_name="victim",
                          namespace=bad_ns, condition="deleted", timeout=5)),
        ("k8s_exec", dict(pod=up, command=["true"])),
        ("k8s_exec", dict(pod_selector=selector, command=["true"])),
    ]


def victim_and_target(dev_cluster) -> tuple[str, str]:
    victim_ns, ns = dev_cluster.namespace("victim"), dev_cluster.namespace("hostile")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(victim_ns, {"metadata": {"name": "victim"}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "legit"}})
    return victim_ns, ns


def test_every_k8s_step_refuses_hostile_names_at_the_adapter_before_any_request(
        dev_cluster, make_ctx):
    victim_ns, ns = victim_and_target(dev_cluster)
    mark = dev_cluster.audit_mark()
    for step_type, fields in hostile_cases(victim_ns):
        executor, model = STEPS[step_type]
        # Past the spec's checks (as if a template rendered it): the adapter's own check.
        config = model.model_construct(**{"cluster": dev_cluster.block_name, "namespace": ns,
                                          **fields})
        with pytest.raises(StepFailed) as caught:
            executor(make_ctx(step_type), config)
        text = str(caught.value)
        assert "is not a valid Kubernetes" in text, (step_type, fields, text)
        assert f"cluster {dev_cluster.block_name!r}" in text and "\n" not in text.split(
            "  hint:")[0]
    result = execute_k8s_delete(make_ctx("k8s_delete"), K8sDeleteConfig(
        cluster=dev_cluster.block_name, namespace=ns, resource_type="configmap",
        resource_name="legit"))
    assert result.outputs["deleted"] == "configmap/legit"
    legit = f"/api/v1/namespaces/{ns}/configmaps/legit"
    events = events_after(dev_cluster, mark, lambda evs: any(
        e.get("verb") == "delete" and e.get("requestURI", "").startswith(legit) for e in evs))
    assert_nothing_reached(events, victim_ns, legit)
    victim_stays(dev_cluster, victim_ns)


def test_a_rendered_hostile_value_fails_the_step_with_the_rule_named(dev_cluster):
    victim_ns = "kube-system"
    for step_type, fields in hostile_cases(victim_ns):
        rendered = {"cluster": dev_cluster.block_name, "namespace": "default", **fields}
        with pytest.raises(StepFailed) as caught:
            validate_config_for(step_type, rendered)
        text = str(caught.value)
        assert text.startswith("invalid config after rendering templates"), text
        assert "is not a valid Kubernetes" in text, (step_type, fields, text)


def test_a_namespace_the_block_gives_is_checked_too(dev_cluster, make_ctx):
    from ansflow.blocks.kubernetes import KubernetesCluster

    victim_ns, _ = victim_and_target(dev_cluster)
    block = KubernetesCluster.from_kubeconfig_file(dev_cluster.kubeconfig)
    block.namespace = f"x/../../../../api/v1/namespaces/{victim_ns}"
    mark = dev_cluster.audit_mark()
    ctx = make_ctx("k8s_delete")
    ctx.blocks["cluster"] = block
    config = K8sDeleteConfig(cluster="given", resource_type="configmap",
                             resource_name="victim")
    with pytest.raises(StepFailed, match="namespace .* is not a valid Kubernetes namespace"):
        execute_k8s_delete(ctx, config)
    with dev_cluster.client() as api:  # a request after: the log is live
        k8s.CoreV1Api(api).read_namespace("default")
    events = events_after(dev_cluster, mark, lambda evs: any(
        e.get("requestURI", "").startswith("/api/v1/namespaces/default") for e in evs))
    assert_nothing_reached(events, victim_ns, "/api/v1/namespaces/default")
    victim_stays(dev_cluster, victim_ns)


def test_the_audit_check_sees_an_unchecked_dotdot_path_land_in_the_victim_namespace(
        dev_cluster):
    """Why the check matters and that the audit assertions can fail: the same client,
    bypassing the adapter, sends `x/../../../V/configmaps/victim` as the victim's own path."""
    victim_ns, ns = victim_and_target(dev_cluster)
    mark = dev_cluster.audit_mark()
    with dev_cluster.client() as api:
        raw = f"/api/v1/namespaces/{ns}/configmaps/x/../../../{victim_ns}/configmaps/victim"
        args = api.param_serialize("GET", raw, header_params={"Accept": "application/json"},
                                   auth_settings=["BearerToken"])
        answer = api.call_api(*args)
        answer.read()
        assert answer.status == 200  # the GET read the victim in the other namespace
        k8s.CoreV1Api(api).read_namespaced_config_map("legit", ns)
    legit = f"/api/v1/namespaces/{ns}/configmaps/legit"
    events = events_after(dev_cluster, mark, lambda evs: any(
        e.get("requestURI", "").startswith(legit) for e in evs))
    assert any(e.get("requestURI") == f"/api/v1/namespaces/{victim_ns}/configmaps/victim"
               for e in events)
    with pytest.raises(AssertionError):
        assert_nothing_reached(events, victim_ns, legit)
