"""The management flow builder's pure parts: any registered operation's signature and
docstring become the run form, destructive ones get `confirm`, and what a run publishes is
masked and escaped. (The served runs are in tests/deployments/test_manage.py.)"""

from __future__ import annotations

import logging
from typing import Literal

import pytest

from ansflow.flows.manage import (
    ENGINE_ERROR,
    QuietRefusal,
    flow_docstring,
    form_fields,
    guessed_target,
    operation_deployment,
    operation_flow,
)
from ansflow.flows.manage_publish import artifact_key, cell, resource_of, result_markdown
from ansflow.manage import ObjectRef, Operation, OperationResult, load_operations
from ansflow.manage.workloads import delete_confirm_name
from ansflow.masking import Masker


def fake_op(ctx, session, *, name: str, size: int = 1,
            colour: Literal["red", "blue"] = "red",
            labels: dict[str, str] | None = None) -> OperationResult:
    """Make a thing.

    Args:
        name: The thing's name.
        size: How big.
        colour: Its colour.
        labels: Its labels.
    """
    raise AssertionError("not run here")


def test_any_operation_becomes_a_typed_documented_form_with_cluster_and_namespace_first():
    op = Operation("thing", fake_op)
    deployment = operation_deployment(op, ["prod", "test"])
    schema = deployment._parameter_openapi_schema.model_dump()
    props = schema["properties"]
    assert list(props) == ["cluster", "namespace", "name", "size", "colour", "labels"]
    assert props["cluster"]["enum"] == ["prod", "test"]
    assert props["size"] == {"default": 1, "description": "How big.", "position": 3,
                             "title": "size", "type": "integer"}
    assert props["colour"]["enum"] == ["red", "blue"]
    # Optional fields are plain ones (no str / None switch in the UI), left out of required.
    assert props["labels"] == {"additionalProperties": {"type": "string"}, "type": "object",
                               "description": "Its labels.", "position": 5,
                               "title": "labels"}  # a key-value editor
    assert props["namespace"] == {"type": "string", "position": 1, "title": "namespace",
                                  "description": "The namespace (empty: the cluster block's "
                                                 "namespace)."}
    assert schema["required"] == ["cluster", "name"]
    assert schema["additionalProperties"] is False
    assert deployment.name == "thing" and deployment.flow_name == "ansflow-k8s"
    assert deployment.entrypoint == "ansflow.flows.manage.manage_thing"
    assert "confirm" not in props


def test_a_destructive_operation_gets_confirm_and_its_help():
    op = Operation("wipe", fake_op, destructive=True)
    assert form_fields(op) == ["cluster", "namespace", "name", "size", "colour", "labels",
                               "confirm"]
    doc = flow_docstring(op)
    assert doc.startswith("Make a thing.\n\nArgs:\n    cluster: The saved KubernetesCluster")
    assert "    confirm: The object's name, to confirm" in doc and "    name: The thing's" in doc
    assert op.needs_confirmation({"name": "web"}) == "web"
    assert Operation("x", fake_op).needs_confirmation({"name": "web"}) is None
    assert delete_confirm_name({"resource_name": None, "label_selector": "app=web"}) == "app=web"
    assert load_operations()["delete"].needs_confirmation(
        {"resource_name": "old", "label_selector": None}) == "old"


def test_an_operation_taking_a_name_the_flow_adds_is_refused():
    def bad(ctx, session, *, namespace: str) -> OperationResult:
        raise AssertionError

    with pytest.raises(TypeError, match="parameter 'namespace' is added by the flow"):
        operation_flow(Operation("bad", bad))


def test_every_registered_workload_operation_builds_its_flow():
    ops = load_operations()
    assert {"scale", "restart", "rollback", "delete", "logs"} <= set(ops)
    assert ops["delete"].destructive and ops["logs"].read_only
    for op in ops.values():
        flow = operation_flow(op)
        assert flow.name == "ansflow-k8s" and flow.description


def test_artifact_cells_are_masked_one_line_and_escaped():
    masker = Masker()
    masker.add("s3cr3t-value-123")
    assert cell("a|b\nc `d`", masker) == "a\\|b c 'd'"
    assert cell("token s3cr3t-value-123", masker) == "token ***"
    assert len(cell("x" * 1000, masker)) == 300
    target = ObjectRef("prod", "Deployment", "web", "shop")
    result = OperationResult(target, "scaled it", {"replicas": "3"}, before={"replicas": "1"},
                             after={"replicas": "3", "note": "s3cr3t-value-123"},
                             markdown="extra s3cr3t-value-123")
    body = result_markdown("scale", result, masker)
    assert "| replicas | 1 | 3 |" in body and "| note |  | *** |" in body
    assert "s3cr3t" not in body and body.startswith(
        "# scale: deployment/web in namespace shop (cluster prod)")
    assert artifact_key("Scale Now!") == "ansflow-k8s-scale-now"


def test_event_resource_names_the_object_and_failures_are_guessed_from_the_form():
    target = ObjectRef("prod", "Deployment", "web", "shop")
    assert resource_of(target) == {
        "prefect.resource.id": "ansflow.k8s.deployment.prod.shop.web",
        "prefect.resource.name": "deployment/web", "ansflow.k8s.kind": "Deployment",
        "ansflow.k8s.name": "web", "ansflow.k8s.namespace": "shop",
        "ansflow.k8s.cluster": "prod"}
    op = load_operations()["logs"]
    assert guessed_target(op, "prod", None, {"pod_selector": "app=web"}).resource_id == \
        "ansflow.k8s.logs.prod._.app=web"


def test_only_the_engines_traceback_of_our_own_refusal_is_dropped():
    from prefect.exceptions import FailedRun

    quiet = QuietRefusal("no such thing")

    def record(msg: str, exc: BaseException | None) -> logging.LogRecord:
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, None,
                                 (type(exc), exc, None) if exc else None)

    assert not quiet.filter(record(ENGINE_ERROR, FailedRun("no such thing")))
    assert quiet.filter(record(ENGINE_ERROR, FailedRun("something else")))
    assert quiet.filter(record(ENGINE_ERROR, ValueError("no such thing")))
    assert quiet.filter(record("other", None))


def test_a_runs_names_are_checked_before_any_approval_is_asked():
    from ansflow.errors import StepFailed
    from ansflow.flows.manage import check_names

    ops = load_operations()
    for op_name, namespace, params in (
            ("delete", "team-a", {"resource_type": "configmap",
                                  "resource_name": "x/../../../kube-system/secrets/v"}),
            ("delete", "x/../kube-system", {"resource_type": "configmap",
                                            "resource_name": "v"}),
            ("delete", None, {"resource_type": "pod", "label_selector": "app=x&watch=true"}),
            ("logs", None, {"pod": "web-0", "container": "../x"}),
            ("scale", None, {"resource_name": "..", "replicas": 1})):
        with pytest.raises(StepFailed, match=rf"^{op_name}: .* is not a valid Kubernetes"):
            check_names(ops[op_name], namespace, params)
    check_names(ops["delete"], "team-a", {"resource_type": "configmap",
                                          "label_selector": "app=x,foo"})
    check_names(ops["rollback"], None, {"resource_name": "web.v2", "revision": None})


def test_the_hint_for_a_missing_cluster_quotes_the_name_for_a_shell(prefect_server):
    from ansflow.errors import StepFailed
    from ansflow.flows.manage import check_cluster

    with pytest.raises(StepFailed) as caught:
        check_cluster("x; touch /tmp/hv-mark")
    assert caught.value.hint == ("save one: ansflow cluster add 'x; touch /tmp/hv-mark' "
                                 "--kubeconfig FILE")
