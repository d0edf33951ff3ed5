"""The KubernetesCluster block and `ansflow cluster`, on the Prefect server and dev clusters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml
from kubernetes import client as k8s
from pydantic import ValidationError
from typer.testing import CliRunner

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.cli.app import app

runner = CliRunner()
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleQ==\n-----END PRIVATE KEY-----\n"


def _cli(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def _sa_token(dev_cluster, ns: str) -> str:
    with dev_cluster.client() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "viewer"}})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "viewer-view"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": ns}],
        })
        return core.create_namespaced_service_account_token(
            "viewer", ns, {"spec": {"expirationSeconds": 600}}
        ).status.token


def test_secrets_never_show_in_repr_or_dump():
    block = KubernetesCluster(server="https://127.0.0.1:1", token="tok-123",
                              client_certificate="PEM", client_key=FAKE_KEY)
    text = repr(block) + json.dumps(block.model_dump(mode="json")) + str(block)
    assert "tok-123" not in text and "c2VjcmV0LWtleQ" not in text
    kc = KubernetesCluster(kubeconfig="apiVersion: v1\nusers: [{user: {token: s3cr3t}}]")
    assert "s3cr3t" not in repr(kc) + json.dumps(kc.model_dump(mode="json"))


def test_incomplete_credentials_are_rejected():
    with pytest.raises(ValidationError, match="give a kubeconfig"):
        KubernetesCluster()
    with pytest.raises(ValidationError, match="go together"):
        KubernetesCluster(server="https://x", client_certificate="PEM")


def test_block_type_is_registered_with_a_documented_form(prefect_server, dev_cluster):
    from prefect.client.orchestration import get_client

    assert KubernetesCluster.get_block_type_slug() == "ansflow-kubernetes-cluster"
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("ansflow-kubernetes-cluster")
        schema = client.get_most_recent_block_schema_for_block_type(block_type.id)
    assert block_type.name == "Ansflow Kubernetes Cluster" and block_type.logo_url
    assert "Example" in (block_type.code_example or "") + (block_type.description or "") or \
        "KubernetesCluster.load" in (block_type.code_example or "")
    props = schema.fields["properties"]
    assert set(props) >= {"kubeconfig", "context", "server", "token", "certificate_authority",
                          "client_certificate", "client_key", "in_cluster", "verify_ssl",
                          "namespace"}
    assert all(p.get("description") for p in props.values())
    for secret in ("kubeconfig", "token", "client_key"):
        assert secret in schema.fields.get("secret_fields", [])


@pytest.mark.k8s
def test_saved_block_loads_with_its_secret_and_reaches_the_cluster(prefect_server, dev_cluster):
    block = KubernetesCluster.load(dev_cluster.block_name)
    assert block.auth_method == "kubeconfig"
    with block.get_client() as api:
        assert k8s.VersionApi(api).get_code().git_version == dev_cluster.versions["kubernetes"]


@pytest.mark.k8s
def test_two_clusters_through_two_blocks_never_interfere(
    prefect_server, dev_cluster, second_dev_cluster
):
    default_before = k8s.Configuration._default
    a = KubernetesCluster.load(dev_cluster.block_name)
    b = KubernetesCluster.load(second_dev_cluster.block_name)
    marker = f"only-in-a-{uuid.uuid4().hex[:6]}"
    with a.get_client() as api_a, b.get_client() as api_b:
        assert api_a.configuration.host == dev_cluster.server
        assert api_b.configuration.host == second_dev_cluster.server
        k8s.CoreV1Api(api_a).create_namespaced_config_map("default",
                                                          {"metadata": {"name": marker}})
        for _ in range(3):  # interleaved calls
            names_a = {c.metadata.name for c in
                       k8s.CoreV1Api(api_a).list_namespaced_config_map("default").items}
            names_b = {c.metadata.name for c in
                       k8s.CoreV1Api(api_b).list_namespaced_config_map("default").items}
            assert marker in names_a and marker not in names_b
    assert k8s.Configuration._default is default_before  # the process-global is untouched


@pytest.mark.k8s
def test_token_and_client_certificate_blocks_work(dev_cluster):
    ns = dev_cluster.namespace("auth")
    ca = (dev_cluster.paths.pki / "ca.crt").read_text()
    token = KubernetesCluster(server=dev_cluster.server, token=_sa_token(dev_cluster, ns),
                              certificate_authority=ca, namespace=ns)
    with token.get_client() as api:
        assert k8s.CoreV1Api(api).list_namespaced_pod(ns).items == []
    cert = KubernetesCluster(
        server=dev_cluster.server, certificate_authority=ca,
        client_certificate=(dev_cluster.paths.pki / "admin.crt").read_text(),
        client_key=(dev_cluster.paths.pki / "admin.key").read_text(),
    )
    with cert.get_client() as api:
        assert any(n.metadata.name == "kwok-node-0" for n in k8s.CoreV1Api(api).list_node().items)
    # The kubeconfig form of a token block is usable by kubectl.
    path = dev_cluster.paths.root / f"token-{ns}.kubeconfig"
    path.write_text(yaml.safe_dump(token.to_kubeconfig_dict()))
    out = subprocess.run([str(dev_cluster.kubectl), "--kubeconfig", str(path), "auth", "whoami",
                          "-o", "jsonpath={.status.userInfo.username}"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout == f"system:serviceaccount:{ns}:viewer", out.stderr


@pytest.mark.k8s
def test_prefect_kubernetes_credentials_from_the_block_work(prefect_server, dev_cluster):
    # prefect-kubernetes changes kubernetes' global configuration: keep it out of this process.
    code = (
        "import asyncio\n"
        "from ansflow.blocks.kubernetes import KubernetesCluster\n"
        f"creds = KubernetesCluster.load({dev_cluster.block_name!r})"
        ".to_prefect_kubernetes_credentials()\n"
        "async def main():\n"
        "    async with creds.get_client('core') as core:\n"
        "        nodes = await core.list_node()\n"
        "    print(','.join(n.metadata.name for n in nodes.items))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert "kwok-node-0" in out.stdout


@pytest.mark.k8s
def test_cluster_add_list_check(prefect_server, dev_cluster, tmp_path):
    name = f"added-{uuid.uuid4().hex[:6]}"
    result = _cli("cluster", "add", name, "--kubeconfig", str(dev_cluster.kubeconfig))
    assert result.exit_code == 0, result.output
    assert dev_cluster.server in result.output
    again = _cli("cluster", "add", name, "--kubeconfig", str(dev_cluster.kubeconfig))
    assert again.exit_code == 1 and "--overwrite" in again.output
    listing = _cli("cluster", "list")
    assert listing.exit_code == 0
    line = next(li for li in listing.output.splitlines() if li.startswith(name))
    assert "kubeconfig" in line and dev_cluster.server in line
    check = _cli("cluster", "check", name)
    assert check.exit_code == 0, check.output
    assert f"Kubernetes {dev_cluster.versions['kubernetes']}" in check.output
    assert "*" in check.output  # admin: every verb on every resource
    key = (dev_cluster.paths.pki / "admin.key").read_text().splitlines()[1]
    assert key not in listing.output + check.output + result.output


@pytest.mark.k8s
def test_cluster_check_shows_a_read_only_identity_s_rules(prefect_server, dev_cluster):
    ns = dev_cluster.namespace("ro")
    token = _sa_token(dev_cluster, ns)
    KubernetesCluster(server=dev_cluster.server, token=token, namespace=ns,
                      certificate_authority=(dev_cluster.paths.pki / "ca.crt").read_text()
                      ).save(f"ro-{ns}", overwrite=True)
    check = _cli("cluster", "check", f"ro-{ns}")
    assert check.exit_code == 0, check.output
    pods = next(li for li in check.output.splitlines() if " pods" in li or ",pods" in li)
    assert "get" in pods and "create" not in pods
    assert token not in check.output


@pytest.mark.k8s
def test_cluster_check_errors_name_the_cluster_and_the_cause(
    prefect_server, dev_cluster, second_dev_cluster
):
    ca = (dev_cluster.paths.pki / "ca.crt").read_text()
    KubernetesCluster(server=dev_cluster.server, token="not-a-real-token",
                      certificate_authority=ca).save("bad-token", overwrite=True)
    out = _cli("cluster", "check", "bad-token")
    assert out.exit_code == 1 and "cluster 'bad-token'" in out.output
    assert "401 Unauthorized" in out.output and "not-a-real-token" not in out.output
    other_ca = (second_dev_cluster.paths.pki / "ca.crt").read_text()
    KubernetesCluster(server=dev_cluster.server, token="t",
                      certificate_authority=other_ca).save("wrong-ca", overwrite=True)
    out = _cli("cluster", "check", "wrong-ca")
    assert out.exit_code == 1 and "cluster 'wrong-ca'" in out.output and "TLS" in out.output
    KubernetesCluster(server="https://127.0.0.1:9", token="t",
                      certificate_authority=ca).save("nowhere", overwrite=True)
    out = _cli("cluster", "check", "nowhere")
    assert out.exit_code == 1 and "unreachable" in out.output
    out = _cli("cluster", "check", "no-such-block")
    assert out.exit_code == 1
    assert "no saved Kubernetes cluster block named 'no-such-block'" in out.output
    assert "hint: save one: ansflow cluster add no-such-block --kubeconfig FILE" in out.output


def test_a_refused_cluster_block_never_repeats_its_secrets():
    """pydantic shows the whole input of a failed validation by default: the token and the
    client key would be in the error a user sees."""
    from pydantic import ValidationError

    from ansflow.blocks.kubernetes import KubernetesCluster

    with pytest.raises(ValidationError) as err:
        KubernetesCluster(server="https://127.0.0.1:6443", token="tok-secret-123456",
                          client_key="secret-key-text")
    text = str(err.value)
    assert "client_certificate" in text
    assert "tok-secret-123456" not in text and "secret-key-text" not in text
