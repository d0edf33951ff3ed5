"""Which Prefect Secret blocks the manage `secret` form may read (ANSFLOW_MANAGE_SECRET_BLOCKS,
none by default), and values a manage run put into a cluster masked in later runs' logs."""

from __future__ import annotations

import secrets as random
import uuid

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, REAL_NODE_POD_SPEC
from fixtures_pipeline import logs
from kubernetes import client as k8s
from polling import until

from ansflow.errors import StepFailed
from ansflow.manage.objects import secret
from ansflow.manage.secret_blocks import SECRET_BLOCKS_ENV, allowed_patterns, is_allowed

pytestmark = pytest.mark.k8s


def test_patterns_are_whole_name_globs(monkeypatch):
    monkeypatch.delenv(SECRET_BLOCKS_ENV, raising=False)
    assert allowed_patterns() == [] and not is_allowed("anything")
    monkeypatch.setenv(SECRET_BLOCKS_ENV, " app-*, shared-db ,,")
    assert allowed_patterns() == ["app-*", "shared-db"]
    assert is_allowed("app-token") and is_allowed("shared-db")
    for refused in ("prod-db-password", "shared-db-2", "xapp-token", "App-token", ""):
        assert not is_allowed(refused), refused


def _no_secret(dev_cluster, ns: str, name: str) -> bool:
    with dev_cluster.client() as api:
        return k8s.CoreV1Api(api).list_namespaced_secret(
            ns, field_selector=f"metadata.name={name}").items == []


def test_the_form_reads_only_blocks_the_operator_allowed(dev_cluster, run_op, monkeypatch):
    from prefect.blocks.system import Secret

    ns = dev_cluster.namespace("secret-allow")
    suffix = uuid.uuid4().hex[:8]
    prod, app = f"prod-db-password-{suffix}", f"app-token-{suffix}"
    prod_value = f"prod-{random.token_hex(12)}"
    Secret(value=prod_value).save(prod, overwrite=True)
    Secret(value=f"app-{random.token_hex(12)}").save(app, overwrite=True)
    monkeypatch.delenv(SECRET_BLOCKS_ENV, raising=False)
    with pytest.raises(StepFailed) as err:
        run_op(secret, ns, name="stolen", keys={"pw": prod})
    assert str(err.value).startswith(
        f"secret: refused, nothing was changed: the operator has not allowed this form to "
        f"read key 'pw': block '{prod}' ({SECRET_BLOCKS_ENV}: none (it is not set))")
    assert prod_value not in str(err.value) and _no_secret(dev_cluster, ns, "stolen")
    # one allowed key does not let another through
    monkeypatch.setenv(SECRET_BLOCKS_ENV, "app-token-*")
    with pytest.raises(StepFailed, match=f"key 'pw': block '{prod}'"):
        run_op(secret, ns, name="stolen", keys={"token": app, "pw": prod})
    assert _no_secret(dev_cluster, ns, "stolen")
    created, _ = run_op(secret, ns, name="app", keys={"token": app})
    assert created.outputs["state"] == "created"


def _printer(name: str) -> dict:
    env = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {**REAL_NODE_POD_SPEC, "restartPolicy": "Never", "containers": [
                {"name": "main", "image": BUSYBOX_IMAGE, "env": env, "command": [
                    "sh", "-c", 'echo "pw=$PW"; printf %s "$PW" | base64']}]}}


def test_a_value_a_manage_run_put_into_a_cluster_is_masked_in_a_later_runs_logs(
        real_node_cluster, monkeypatch):
    from prefect import flow
    from prefect.blocks.system import Secret

    from ansflow.flows.manage import run_operation
    from ansflow.manage import load_operations

    ops = load_operations()
    ns = real_node_cluster.namespace("secret-mask")
    suffix = uuid.uuid4().hex[:8]
    block, value = f"mask-db-{suffix}", f"v{random.token_hex(14)}"
    Secret(value=value).save(block, overwrite=True)
    monkeypatch.setenv(SECRET_BLOCKS_ENV, "mask-db-*")

    @flow(name="manage-secret-then-logs", persist_result=False)
    def one_run(op: str, params: dict):
        return run_operation(ops[op], {"cluster": real_node_cluster.block_name,
                                       "namespace": ns, **params})

    made = one_run("secret", {"name": "db", "keys": {"pw": block}}, return_state=True)
    assert made.is_completed(), made.message
    with real_node_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, _printer("printer"))
        until(lambda: core.read_namespaced_pod("printer", ns).status.phase == "Succeeded", 120,
              "the printer pod to finish")
        raw = core.read_namespaced_pod_log("printer", ns)
    assert f"pw={value}" in raw  # the pod did print it: the masking below is what hides it
    read = one_run("logs", {"pod": "printer"}, return_state=True)
    assert read.is_completed(), read.message
    outputs = read.result()
    lines = until(lambda: [line for line in logs(read.state_details.flow_run_id)
                           if "pw=" in line] and logs(read.state_details.flow_run_id), 60,
                  "the logs run's log lines")
    shown = "\n".join(lines) + repr(outputs)
    assert "pw=***" in shown
    assert value not in shown
    assert raw.splitlines()[1] not in shown  # its base64 form
