"""`ansflow cluster add` keeps the files a kubeconfig names in the block (so it works on every
worker), and refuses what it cannot read with an error naming the kubeconfig field;
`ansflow cluster remove`; `ansflow cluster check` with the inventory's health counts."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from typer.testing import CliRunner

from ansflow.blocks.kubernetes import KubernetesCluster, inline_kubeconfig_files
from ansflow.cli.app import app

runner = CliRunner()


def _cli(*args: str, input: str | None = None):
    result = runner.invoke(app, list(args), input=input)
    assert "Traceback" not in result.output
    return result


def _ansflow(*args: str, cwd: Path, timeout: float = 120):
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _file_kubeconfig(dev_cluster, folder: Path, *, token: str | None = None) -> Path:
    """The dev cluster's admin kubeconfig rewritten to name files (relative paths, in a
    sub-folder, as minikube and kind write theirs), or a token file instead of the cert."""
    doc = yaml.safe_load(dev_cluster.kubeconfig.read_text())
    (folder / "certs").mkdir(parents=True)
    cluster, user = doc["clusters"][0]["cluster"], doc["users"][0]["user"]
    for body, data_field, name in ((cluster, "certificate-authority-data", "ca.crt"),
                                   (user, "client-certificate-data", "admin.crt"),
                                   (user, "client-key-data", "admin.key")):
        (folder / "certs" / name).write_bytes(base64.b64decode(body.pop(data_field)))
        body[data_field.removesuffix("-data")] = f"certs/{name}"
    if token is not None:
        user.clear()
        (folder / "certs" / "token").write_text(f"\n{token}\n")
        user["tokenFile"] = "certs/token"
    path = folder / "kubeconfig.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _nodes_from_elsewhere(name: str, cwd: Path) -> str:
    code = ("from kubernetes import client; from ansflow.blocks.kubernetes import "
            f"load_saved_cluster as l\nwith l({name!r}).get_client() as api:\n"
            "    print(sorted(n.metadata.name for n in client.CoreV1Api(api).list_node().items))")
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.k8s
def test_files_are_kept_in_the_block_and_it_works_after_they_are_gone(
    prefect_server, dev_cluster, tmp_path
):
    folder = tmp_path / "home" / ".kube"
    kubeconfig = _file_kubeconfig(dev_cluster, folder)
    name = f"files-{uuid.uuid4().hex[:6]}"
    # Added from another folder: the relative paths are the kubeconfig's folder's, not cwd's.
    other = tmp_path / "elsewhere"
    other.mkdir()
    added = _ansflow("cluster", "add", name, "--kubeconfig", str(kubeconfig), cwd=other)
    assert added.returncode == 0, added.stderr
    assert dev_cluster.server in added.stdout
    saved = yaml.safe_load(KubernetesCluster.load(name).kubeconfig.get_secret_value())
    cluster, user = saved["clusters"][0]["cluster"], saved["users"][0]["user"]
    assert "certificate-authority" not in cluster and "client-key" not in user
    assert base64.b64decode(user["client-key-data"]) == (folder / "certs/admin.key").read_bytes()
    for f in (folder / "certs").iterdir():
        f.unlink()
    (folder / "certs").rmdir()
    kubeconfig.unlink()
    assert "kwok-node-0" in _nodes_from_elsewhere(name, tmp_path)
    assert _cli("cluster", "remove", name, "--yes").exit_code == 0


@pytest.mark.k8s
def test_a_token_file_is_kept_stripped_as_client_go_reads_it(prefect_server, dev_cluster,
                                                             tmp_path):
    ns = dev_cluster.namespace("tokfile")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
        token = core.create_namespaced_service_account_token(
            "reader", ns, {"spec": {"expirationSeconds": 600}}).status.token
    kubeconfig = _file_kubeconfig(dev_cluster, tmp_path / "kc", token=token)
    name = f"tokfile-{uuid.uuid4().hex[:6]}"
    assert _cli("cluster", "add", name, "--kubeconfig", str(kubeconfig)).exit_code == 0
    (tmp_path / "kc" / "certs" / "token").unlink()
    block = KubernetesCluster.load(name)
    assert yaml.safe_load(block.kubeconfig.get_secret_value())["users"][0]["user"] == {
        "token": token}
    with block.get_client() as api:
        review = k8s.AuthenticationV1Api(api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert review.status.user_info.username == f"system:serviceaccount:{ns}:reader"
    assert _cli("cluster", "remove", name, "--yes").exit_code == 0


def _doc(**user) -> dict:
    return {"clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1",
                                                   "certificate-authority": "ca.crt"}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x"}


def test_unreadable_files_are_errors_naming_the_field(tmp_path):
    ctx = {"cluster": "c", "user": "u"}
    with pytest.raises(ValueError, match=r"cluster 'c' certificate-authority .*ca\.crt.* "
                                         r"cannot be read: No such file"):
        inline_kubeconfig_files(_doc(), ctx, tmp_path)
    (tmp_path / "ca.crt").write_text("PEM")
    (tmp_path / "big").write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(ValueError, match="user 'u' client-key .* larger than 1024 KiB"):
        inline_kubeconfig_files(_doc(**{"client-key": "big"}), ctx, tmp_path)
    (tmp_path / "empty").write_text("\n \n")
    with pytest.raises(ValueError, match="user 'u' tokenFile .* holds no single-line token"):
        inline_kubeconfig_files(_doc(tokenFile="empty"), ctx, tmp_path)
    (tmp_path / "two").write_text("a\nb\n")
    with pytest.raises(ValueError, match="no single-line token"):
        inline_kubeconfig_files(_doc(tokenFile="two"), ctx, tmp_path)
    (tmp_path / "latin").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="tokenFile .* is not UTF-8"):
        inline_kubeconfig_files(_doc(tokenFile="latin"), ctx, tmp_path)
    with pytest.raises(ValueError, match="user 'u' client-certificate .* is not a regular"):
        inline_kubeconfig_files(_doc(**{"client-certificate": str(tmp_path)}), ctx, tmp_path)
    with pytest.raises(ValueError, match="user 'u' client-key .* is not a regular file"):
        inline_kubeconfig_files(_doc(**{"client-key": "/dev/zero"}), ctx, tmp_path)
    for hostile in ("", "a\x00b", 7, ["x"]):
        with pytest.raises(ValueError, match="user 'u' tokenFile: no file path"):
            inline_kubeconfig_files(_doc(tokenFile=hostile), ctx, tmp_path)
    if os.geteuid() != 0:
        (tmp_path / "secret").write_text("t")
        (tmp_path / "secret").chmod(0)
        with pytest.raises(ValueError, match="tokenFile .* Permission denied"):
            inline_kubeconfig_files(_doc(tokenFile="secret"), ctx, tmp_path)


def test_what_kubectl_resolves_is_what_is_kept(tmp_path):
    ctx = {"cluster": "c", "user": "u"}
    (tmp_path / "ca.crt").write_bytes(b"CA-BYTES")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tok").write_text("  tok-1 \n")
    outside = tmp_path.parent / f"outside-{uuid.uuid4().hex[:6]}"
    outside.write_text("CERT")  # the user's own file, wherever it is
    (tmp_path / "link").symlink_to(outside)
    doc = _doc(tokenFile="sub/../sub/tok", token="", **{"client-certificate": "link",
                                                         "client-key": "nope",
                                                         "client-key-data": "S0VZ"})
    assert inline_kubeconfig_files(doc, ctx, tmp_path)
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == base64.b64encode(
        b"CA-BYTES").decode()
    user = doc["users"][0]["user"]
    # The -data form wins (its path is never read: "nope" does not exist); token: stripped.
    assert user == {"token": "tok-1", "client-certificate-data": base64.b64encode(
        b"CERT").decode(), "client-key-data": "S0VZ"}
    # Entries of other contexts are not touched (never used by this block).
    doc = _doc(tokenFile="missing")
    doc["users"][0]["name"] = "other"
    assert inline_kubeconfig_files(doc, ctx, tmp_path)  # the CA of cluster c only
    assert doc["users"][0]["user"] == {"tokenFile": "missing"}
    assert not inline_kubeconfig_files({"clusters": "junk", "users": [None, 3]}, ctx, tmp_path)


def test_a_fifo_or_device_is_refused_without_hanging(prefect_server, tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    doc = _doc(**{"client-key": str(fifo)})
    doc["clusters"][0]["cluster"].pop("certificate-authority")
    (tmp_path / "kc").write_text(yaml.safe_dump(doc))
    out = _ansflow("cluster", "add", "fifo", "--kubeconfig", str(tmp_path / "kc"),
                   cwd=tmp_path, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "user 'u' client-key" in out.stderr and "is not a regular file" in out.stderr
    assert "Traceback" not in out.stderr
    # The kubeconfig itself as a FIFO or a device.
    for path in (fifo, Path("/dev/zero")):
        out = _ansflow("cluster", "add", "fifo", "--kubeconfig", str(path), cwd=tmp_path,
                       timeout=60)
        assert out.returncode == 1 and "is not a regular file" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_hostile_kubeconfigs_are_one_line_errors(prefect_server, tmp_path):
    cases = {"notyaml": "a: [\n", "list": "- 1\n", "nocontexts": "contexts: 3\n",
             "badutf8": b"\xff\xfe: {{ }}\n", "nul": "a: \x00\n",
             "nocontext": yaml.safe_dump({**_doc(), "current-context": "$(id)"})}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        out = _cli("cluster", "add", "hostile", "--kubeconfig", str(path))
        assert out.exit_code == 1 and out.output.startswith("error: cluster 'hostile'"), (
            name, out.output)
    out = _cli("cluster", "add", "hostile", "--kubeconfig", str(tmp_path / "absent"))
    assert out.exit_code == 1 and "cannot be read: No such file" in out.output


# ---- remove, and check with the inventory's health counts ---------------------------------


@pytest.mark.k8s
def test_remove_asks_refuses_unknown_names_and_removes(prefect_server, dev_cluster):
    name = f"rm-{uuid.uuid4().hex[:6]}"
    dev_cluster.block().save(name, overwrite=True)
    for answer in ("n\n", "", "garbage\n\n"):  # no, EOF, nonsense: nothing removed
        out = _cli("cluster", "remove", name, input=answer)
        assert out.exit_code == 1 and f"cluster {name!r} not removed" in out.output, out.output
    assert KubernetesCluster.load(name).namespace == "default"
    out = _cli("cluster", "remove", name, input="y\n")
    assert out.exit_code == 0 and f"removed cluster {name!r}" in out.output
    out = _cli("cluster", "remove", name, "--yes")
    assert out.exit_code == 1 and f"no saved Kubernetes cluster block named {name!r}" in out.output
    for hostile in ("../x", "a;rm -rf /", "{{ x }}", "A" * 5000, "x\x00y", "\udcff"):
        out = _cli("cluster", "remove", hostile, "--yes")
        assert out.exit_code == 1 and "is not a block name" in out.output
        assert len(out.output) < 400


@pytest.mark.k8s
def test_remove_takes_a_block_that_no_longer_loads(prefect_server, dev_cluster):
    from prefect.client.orchestration import get_client

    name = f"broken-{uuid.uuid4().hex[:6]}"
    dev_cluster.block().save(name, overwrite=True)
    with get_client(sync_client=True) as client:  # a block whose data fails validation
        doc = client.read_block_document_by_name(name, "ansflow-kubernetes-cluster")
        from prefect.client.schemas.actions import BlockDocumentUpdate
        client.update_block_document(doc.id, BlockDocumentUpdate(
            data={"kubeconfig": None, "server": None, "in_cluster": False}))
    from ansflow.blocks.kubernetes import ClusterNotFound, load_saved_cluster

    with pytest.raises(ClusterNotFound, match="cannot load its block"):
        load_saved_cluster(name)
    assert _cli("cluster", "remove", name, "--yes").exit_code == 0
    assert "no saved" in _cli("cluster", "remove", name, "--yes").output


@pytest.mark.k8s
def test_check_reports_the_inventory_s_health_counts(prefect_server, dev_cluster, tmp_path,
                                                     monkeypatch):
    from ansflow.upkeep.inventory import Inventory
    from ansflow.upkeep.sync import sync_cluster

    monkeypatch.setenv("ANSFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/inventory.db")
    name = f"hc-{uuid.uuid4().hex[:6]}"
    block = dev_cluster.block()
    block.save(name, overwrite=True)
    before = _cli("cluster", "check", name)
    assert before.exit_code == 0 and f"objects: not synced yet (`ansflow sync {name}`" in (
        before.output)
    ns = dev_cluster.namespace("hc")
    with dev_cluster.client() as api:  # a Deployment that can never be available: Degraded
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
            "metadata": {"name": "stuck"},
            "spec": {"replicas": 1, "progressDeadlineSeconds": 1,
                     "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"nodeSelector": {"no": "such-node"},
                                           "containers": [{"name": "c", "image": "x"}]}}}})
    with Inventory() as inv:
        sync_cluster(name, block, inventory=inv)
        counts = inv.health_counts(name)
    out = _cli("cluster", "check", name)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    summary = next(li for li in lines if li.startswith("objects at the last sync ("))
    total = sum(sum(per.values()) for per in counts.values())
    assert total > 5 and str(sum(c.get("Healthy", 0) for c in counts.values())) in summary
    for kind, per in counts.items():
        row = next(li for li in lines if li.strip().startswith(kind + " "))
        for status, n in per.items():
            assert f"{n} {status or 'not assessed'}" in row
    # The health counts come from the inventory of that cluster only.
    other = _cli("cluster", "check", dev_cluster.block_name)
    assert "objects: not synced yet" in other.output
