"""The served workload operations (delete, scale, restart, rollback, logs) given a `..` name,
a hostile namespace or label selector: refused with a clear message before any request (the
dev cluster's audit log shows none), and a victim ConfigMap in another namespace stays."""

from __future__ import annotations

import pytest
from kube_audit import assert_nothing_reached, events_after, victim_stays
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.manage.workloads import delete, logs, restart, rollback, scale

pytestmark = pytest.mark.k8s


def test_every_workload_operation_refuses_hostile_names_before_any_request(
        dev_cluster, run_op):
    victim_ns, ns = dev_cluster.namespace("victim"), dev_cluster.namespace("served")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_config_map(victim_ns, {"metadata": {"name": "victim"}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "legit"}})
    up = f"x/../../../{victim_ns}/configmaps/victim"
    cases = [
        (delete, ns, dict(resource_type="configmap", resource_name=up)),
        (delete, ns, dict(resource_type="configmap", label_selector="app=x&watch=true")),
        (delete, f"x/../../{victim_ns}", dict(resource_type="configmap",
                                              resource_name="victim")),
        (scale, ns, dict(resource_name=up, replicas=0)),
        (scale, f"review-{victim_ns}/..", dict(resource_name="web", replicas=0)),
        (restart, ns, dict(resource_name=up)),
        (rollback, ns, dict(resource_name=up)),
        (rollback, ns, dict(resource_name="..")),
        (logs, ns, dict(pod=up)),
        (logs, ns, dict(pod_selector="app=x&watch=true")),
    ]
    mark = dev_cluster.audit_mark()
    for op, namespace, params in cases:
        with pytest.raises(StepFailed) as caught:
            run_op(op, namespace, **params)
        text = str(caught.value)
        assert "is not a valid Kubernetes" in text, (op.__name__, params, text)
        assert "Traceback" not in text
    result, _ = run_op(delete, ns, resource_type="configmap", resource_name="legit")
    assert result.changed
    legit = f"/api/v1/namespaces/{ns}/configmaps/legit"
    events = events_after(dev_cluster, mark, lambda evs: any(
        e.get("verb") == "delete" and e.get("requestURI", "").startswith(legit) for e in evs))
    assert_nothing_reached(events, victim_ns, legit)
    victim_stays(dev_cluster, victim_ns)
