"""A saved cluster block's kubeconfig `exec:` plugin runs only where the worker's operator
allows its command (ANSFLOW_ALLOW_KUBECONFIG_EXEC): a real plugin program that writes a
marker and prints an ExecCredential, refused (and never run) without the setting."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from kubernetes import client as k8s
from pydantic import SecretStr

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.errors import EngineError
from ansflow.engines.kube_exec import EXEC_ENV, check_exec_plugins
from ansflow.errors import StepFailed

PLUGIN = """#!/bin/sh
echo ran >> "{marker}"
printf '{{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
  "status": {{"token": "%s"}}}}' "$PLUGIN_TOKEN"
"""


def _plugin(tmp_path) -> tuple[str, object]:
    marker = tmp_path / "plugin-ran"
    path = tmp_path / "kube-token-plugin"
    path.write_text(PLUGIN.format(marker=marker))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path), marker


def _kubeconfig(server: str, ca: str, command: str, env: list | None = None) -> dict:
    plugin = {"apiVersion": "client.authentication.k8s.io/v1", "command": command,
              "interactiveMode": "Never", "env": env or []}
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "k", "cluster": {
                "server": server,
                "certificate-authority-data": base64.b64encode(ca.encode()).decode()}}],
            "users": [{"name": "plugin-user", "user": {"exec": plugin}}],
            "contexts": [{"name": "c", "context": {"cluster": "k", "user": "plugin-user"}}]}


def _block(doc: dict) -> KubernetesCluster:
    import yaml

    return KubernetesCluster(kubeconfig=SecretStr(yaml.safe_dump(doc)))


def test_the_operators_list_decides_and_resolves_the_command(tmp_path, monkeypatch):
    command, marker = _plugin(tmp_path)
    doc = _kubeconfig("https://127.0.0.1:1", "x", command)
    monkeypatch.delenv(EXEC_ENV, raising=False)
    with pytest.raises(EngineError, match=f"exec credential plugin refused: it would run "
                                         f"'{command}' and {EXEC_ENV} is not set"):
        check_exec_plugins(doc)
    monkeypatch.setenv(EXEC_ENV, "aws, kubelogin")
    with pytest.raises(EngineError, match="is not one of the allowed commands"):
        check_exec_plugins(doc)
    monkeypatch.setenv(EXEC_ENV, "true")  # a bare name: found on the worker's own PATH
    bare = check_exec_plugins(_kubeconfig("https://127.0.0.1:1", "x", "true"))
    assert os.path.isabs(bare["users"][0]["user"]["exec"]["command"])
    monkeypatch.setenv(EXEC_ENV, "*")
    for env in ([{"name": "PATH", "value": str(tmp_path)}],
                [{"name": "LD_PRELOAD", "value": str(tmp_path / "x.so")}]):
        with pytest.raises(EngineError, match=f"its env sets {env[0]['name']}"):
            check_exec_plugins(_kubeconfig("https://127.0.0.1:1", "x", command, env))
    with pytest.raises(EngineError, match="relative path"):
        check_exec_plugins(_kubeconfig("https://127.0.0.1:1", "x", "./kube-token-plugin"))
    assert not marker.exists()


def test_the_plugin_program_runs_only_with_the_setting(tmp_path, monkeypatch):
    """Without a cluster: the kubernetes client's own loader runs the real program (or not);
    the health check of the upkeep worker is refused before anything runs."""
    from ansflow.upkeep.health import check_health

    command, marker = _plugin(tmp_path)
    block = _block(_kubeconfig("https://127.0.0.1:9", "not a CA", command,
                               [{"name": "PLUGIN_TOKEN", "value": "tok-from-plugin"}]))
    monkeypatch.delenv(EXEC_ENV, raising=False)
    report = check_health("exec-plugin", block, store=False)
    assert report.status == "unreachable" and "exec credential plugin refused" in \
        report.message
    with pytest.raises(StepFailed, match="exec credential plugin refused"):
        block.get_client()
    assert not marker.exists()
    monkeypatch.setenv(EXEC_ENV, f"/usr/bin/aws, {command}")
    with block.get_client() as api:
        assert api.configuration.api_key["BearerToken"] == "Bearer tok-from-plugin"
    assert marker.read_text() == "ran\n"


@pytest.mark.k8s
def test_a_plugin_runs_only_when_allowed(dev_cluster, tmp_path, monkeypatch):
    from ansflow.upkeep.health import check_health

    ns = dev_cluster.namespace("exec-plugin")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "plugin"}})
        k8s.RbacAuthorizationV1Api(api).create_namespaced_role_binding(ns, {
            "metadata": {"name": "plugin-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "plugin", "namespace": ns}]})
        token = core.create_namespaced_service_account_token(
            "plugin", ns, {"spec": {"expirationSeconds": 600}}).status.token
    command, marker = _plugin(tmp_path)
    block = _block(_kubeconfig(dev_cluster.server,
                               (dev_cluster.paths.pki / "ca.crt").read_text(), command,
                               [{"name": "PLUGIN_TOKEN", "value": token}]))

    monkeypatch.delenv(EXEC_ENV, raising=False)
    with pytest.raises(StepFailed, match="exec credential plugin refused"):
        block.get_client()
    with pytest.raises(StepFailed, match="exec credential plugin refused"):
        block.to_kubeconfig_dict()  # what helm and prefect-kubernetes are given
    report = check_health("exec-plugin", block, store=False)  # the upkeep worker's check
    assert report.status == "unreachable" and "exec credential plugin refused" in \
        report.message
    assert not marker.exists()  # refused before it ran, every time

    monkeypatch.setenv(EXEC_ENV, command)
    with block.get_client() as api:
        assert k8s.CoreV1Api(api).list_namespaced_service_account(ns).items
    assert marker.read_text() == "ran\n"
