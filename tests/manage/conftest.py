"""Running a management operation the way the serving flow does: a StepContext, an open
session on the dev cluster (or on a given block), the operation's own keyword parameters."""

from __future__ import annotations

import dataclasses
import json

import pytest
from kubernetes import client as k8s


@pytest.fixture
def run_op(dev_cluster, make_ctx):
    """``run_op(op, namespace, block=None, ctx=None, **params)`` -> (OperationResult, ctx)."""
    from ansflow.runtime.k8s_session import cluster_session

    def run(op, namespace, *, block=None, ctx=None, **params):
        ctx = ctx or make_ctx("manage")
        if block is not None:
            ctx.blocks["cluster"] = block
        name = "reader" if block is not None else dev_cluster.block_name
        with cluster_session(ctx, name, namespace) as session:
            return op(ctx, session, **params), ctx

    return run


@pytest.fixture
def shown_to_user(caplog):
    """``shown_to_user(result)``: all a user can see of a run, the result's fields and every
    log line so far, as one text."""

    def shown(result) -> str:
        text = json.dumps(dataclasses.asdict(result), default=str)
        return text + "\n".join(r.getMessage() for r in caplog.records)

    return shown


@pytest.fixture
def read_only_block(dev_cluster):
    """``read_only_block(ns, resources)`` -> (KubernetesCluster block, token) of a service
    account that may only get / list / watch ``resources`` in ``ns``."""
    return lambda ns, resources, api_group="": _read_only_block(dev_cluster, ns, resources,
                                                                api_group)


def _read_only_block(dev_cluster, ns: str, resources: list[str], api_group: str):
    from ansflow.blocks.kubernetes import KubernetesCluster

    with dev_cluster.client() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
        rbac.create_namespaced_role(ns, {"metadata": {"name": "read"}, "rules": [
            {"apiGroups": [api_group], "resources": resources,
             "verbs": ["get", "list", "watch"]}]})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "reader-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
        token = core.create_namespaced_service_account_token(
            "reader", ns, {"spec": {"expirationSeconds": 600}}).status.token
    return KubernetesCluster(server=dev_cluster.server, token=token,
                             certificate_authority=(dev_cluster.paths.pki / "ca.crt").read_text(),
                             namespace=ns), token
