"""The `list` and `get` operations against the dev cluster: objects with their health as a
markdown artifact that cluster text cannot break, a Secret's key names only, the run form's
names checked before anything, and the served flow's form fields."""

from __future__ import annotations

import base64
import re

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.manage import OPERATIONS, load_operations
from ansflow.manage.listing import get, list_, list_markdown, md_cell

SECRET_VALUE = "c0rrect-h0rse-battery"


def test_cells_keep_cluster_text_as_text():
    for hostile in ("[click](http://evil.example)", "![i](http://e/x.png)", "<script>x</script>",
                    "a|b", "**b** _i_", "www.evil.example", "line\nbreak"):
        cell = md_cell(hostile)
        assert not re.search(r"(?<!\\)[\[\]()|*_]", cell), cell
        assert "<script>" not in cell and "\n" not in cell and "www." not in cell
    text = list_markdown([{"namespace": "a", "name": "[x](http://e)", "health": "Degraded",
                           "health_message": "|inject|\n| row |", "created": "",
                           "images": ["i" * 1000]}], "t", truncated=True)
    assert "\n| row |" not in text and "](http://e)" not in text
    assert "The listing stopped at its limit" in text and len(text) < 2000


def test_list_and_get_are_registered_read_only_with_their_form_fields():
    from ansflow.flows.manage import form_fields, operation_flow

    ops = load_operations()
    assert ops["list"].read_only and ops["get"].read_only
    assert not ops["list"].destructive and not ops["get"].destructive
    assert form_fields(ops["list"]) == ["cluster", "namespace", "resource_type",
                                        "label_selector", "all_namespaces", "limit"]
    assert form_fields(ops["get"]) == ["cluster", "namespace", "resource_type",
                                       "resource_name"]
    assert operation_flow(ops["list"]).name == "ansflow-k8s"


def test_a_runs_hostile_names_are_refused_before_anything():
    from ansflow.flows.manage import check_names

    ops = load_operations()
    for op, namespace, params in (
            ("get", None, {"resource_type": "cm", "resource_name": "../../kube-system/x"}),
            ("get", "x/../kube-system", {"resource_type": "cm", "resource_name": "v"}),
            ("list", None, {"resource_type": "pod", "label_selector": "a=b&watch=true"}),
            ("list", "a\x00b", {"resource_type": "pod"})):
        with pytest.raises(StepFailed, match=rf"^{op}: .* is not a valid Kubernetes"):
            check_names(ops[op], namespace, params)


@pytest.mark.k8s
def test_list_shows_health_and_get_shows_a_secret_without_its_values(
        dev_cluster, run_op, shown_to_user):
    ns = dev_cluster.namespace("op-list")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_secret(ns, {
            "metadata": {"name": "db", "labels": {"app": "db"}},
            "data": {"password": base64.b64encode(SECRET_VALUE.encode()).decode()}})
        core.create_namespaced_config_map(ns, {"metadata": {"name": "settings",
                                                            "labels": {"app": "db"}},
                                               "data": {"level": "debug"}})
    result, _ = run_op(list_, ns, resource_type="secret")
    assert result.outputs["count"] == "1" and result.outputs["names"] == "db"
    assert not result.changed and "Healthy" in result.summary
    assert "| " + ns + " | db | Healthy |" in result.markdown
    result, _ = run_op(list_, ns, resource_type="cm", label_selector="app=db")
    assert result.outputs["names"] == "settings"
    assert result.target.resource_id == f"ansflow.k8s.configmap.test.{ns}.app=db"
    result, _ = run_op(get, ns, resource_type="secret", resource_name="db")
    assert result.outputs["keys"] == "password" and result.outputs["health"] == "Healthy"
    assert "Keys: password (values are never shown)" in result.markdown
    assert result.target.resource_id == f"ansflow.k8s.secret.test.{ns}.db"
    shown = shown_to_user(result)
    assert SECRET_VALUE not in shown
    assert base64.b64encode(SECRET_VALUE.encode()).decode() not in shown
    result, _ = run_op(get, ns, resource_type="cm", resource_name="settings")
    assert "level: debug" in result.markdown and "managedFields" not in result.markdown
    with pytest.raises(StepFailed, match=rf"configmap/setings in namespace {ns} not found"):
        run_op(get, ns, resource_type="cm", resource_name="setings")


@pytest.mark.k8s
def test_list_across_namespaces_and_cluster_scoped_kinds(dev_cluster, run_op):
    ns = dev_cluster.namespace("op-list-all")
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(
            ns, {"metadata": {"name": "marker", "labels": {"mark": ns}}})
    result, _ = run_op(list_, "default", resource_type="configmap", all_namespaces=True,
                       label_selector=f"mark={ns}")
    assert result.outputs["names"] == f"{ns}/marker"
    assert result.target.namespace is None
    result, _ = run_op(list_, "default", resource_type="nodes")
    assert int(result.outputs["count"]) >= 1 and "| - |" in result.markdown
    assert OPERATIONS["list"].func is list_
