"""`ansflow dev-cluster` against real processes: up/down/status/kubeconfig, recovery, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from typer.testing import CliRunner

from ansflow.cli.app import app
from ansflow.devcluster import manager
from ansflow.devcluster.binaries import find_binaries
from ansflow.devcluster.processes import is_alive
from ansflow.devcluster.state import COMPONENTS, ClusterPaths, load_state
from ansflow.engines.kube import build_api_client

pytestmark = pytest.mark.k8s
runner = CliRunner()


def _cli(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in result.output
    return result


def test_api_server_reports_its_real_stamped_version(dev_cluster):
    with dev_cluster.client() as api:
        version = k8s.VersionApi(api).get_code()
    assert version.git_version == dev_cluster.versions["kubernetes"]
    assert version.git_version.startswith("v1.") and "master" not in version.git_version
    assert version.git_tree_state == "clean"


def test_second_up_of_a_running_cluster_is_a_noop_and_saves_the_block(dev_cluster):
    before = load_state(dev_cluster.paths)
    result = _cli("dev-cluster", "up", "--name", dev_cluster.name)
    assert result.exit_code == 0, result.output
    assert "already running" in result.output
    assert "saved Prefect block ansflow-kubernetes-cluster/test" in result.output
    assert load_state(dev_cluster.paths).processes == before.processes


def test_status_shows_every_component_healthy_with_pid_port_and_versions(dev_cluster):
    result = _cli("dev-cluster", "status", "--name", dev_cluster.name)
    assert result.exit_code == 0, result.output
    for component in COMPONENTS:
        line = next(li for li in result.output.splitlines() if li.startswith(component + " "))
        assert line.rstrip().endswith("healthy")
    assert f"kubernetes {dev_cluster.versions['kubernetes']}" in result.output


def test_kubeconfig_command_prints_a_path_kubectl_can_use(dev_cluster):
    result = _cli("dev-cluster", "kubeconfig", "--name", dev_cluster.name)
    assert result.exit_code == 0
    path = result.output.strip()
    assert Path(path) == dev_cluster.kubeconfig
    assert oct(Path(path).stat().st_mode & 0o777) == "0o600"
    out = subprocess.run(
        [str(dev_cluster.kubectl), "--kubeconfig", path, "get", "nodes", "-o", "name"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert "node/kwok-node-0" in out


def test_unknown_cluster_and_invalid_name_are_clear_errors(dev_cluster):
    result = _cli("dev-cluster", "status", "--name", "nope")
    assert result.exit_code == 1 and "no dev cluster named 'nope'" in result.output
    result = _cli("dev-cluster", "up", "--name", "Bad_Name", "--no-block")
    assert result.exit_code == 1 and "invalid cluster name" in result.output


def test_missing_binaries_fail_up_with_how_to_build_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_K8S_BIN", str(tmp_path))
    result = _cli("dev-cluster", "up", "--name", "nobins", "--no-block")
    assert result.exit_code == 1
    assert "scripts/build-k8s.sh" in result.output and "kube-apiserver" in result.output


def test_a_component_dying_on_start_shows_its_last_log_lines(tmp_path, monkeypatch):
    real = find_binaries().directory
    fake = tmp_path / "bin"
    fake.mkdir()
    for binary in real.iterdir():
        if binary.is_file():
            (fake / binary.name).symlink_to(binary)
    (fake / "etcd").unlink()
    (fake / "etcd").write_text("#!/bin/sh\necho 'simulated etcd failure: disk on fire' >&2\n"
                               "exit 3\n")
    (fake / "etcd").chmod(0o755)
    monkeypatch.setenv("ANSFLOW_K8S_BIN", str(fake))
    result = _cli("dev-cluster", "up", "--name", "broken", "--no-block", "--timeout", "20")
    assert result.exit_code == 1
    assert "etcd exited during start-up" in result.output
    assert "simulated etcd failure: disk on fire" in result.output
    state = load_state(ClusterPaths.for_name("broken"))
    assert not any(state.alive().values())
    manager.down("broken", wipe=True)


def test_crashed_cluster_is_recovered_keeps_its_data_and_avoids_taken_ports():
    name = "crashy"
    first = manager.up(name).state
    try:
        with build_api_client(kubeconfig=ClusterPaths.for_name(name).kubeconfig.read_text()) as api:
            k8s.CoreV1Api(api).create_namespaced_config_map(
                "default", {"metadata": {"name": "survivor"}, "data": {"k": "v"}}
            )
        # A crash: the scheduler and the API server die without `down`.
        for component in ("kube-scheduler", "kube-apiserver"):
            os.kill(first.processes[component].pid, signal.SIGKILL)
        # A killed Go process takes a moment to lose its last thread on a busy machine.
        deadline = time.monotonic() + 30
        while any(is_alive(first.processes[c]) for c in ("kube-scheduler", "kube-apiserver")):
            assert time.monotonic() < deadline, "killed components still alive after 30 s"
            time.sleep(0.1)
        status = _cli("dev-cluster", "status", "--name", name)
        assert status.exit_code == 1 and "stopped" in status.output
        again = manager.up(name)
        assert not again.already_running
        assert set(again.recovered) == {"etcd", "kube-controller-manager", "kwok"}
        assert all(again.state.alive().values())
        # Stopped cleanly, one of its ports taken by someone else: up picks fresh ports.
        stopped = manager.down(name)
        assert set(stopped) == set(COMPONENTS)
        assert not any(again.state.alive().values())
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
            squatter.bind(("127.0.0.1", again.state.ports["kube-apiserver"]))
            squatter.listen()
            third = manager.up(name).state
        assert third.ports["kube-apiserver"] != again.state.ports["kube-apiserver"]
        kubeconfig = ClusterPaths.for_name(name).kubeconfig.read_text()
        with build_api_client(kubeconfig=kubeconfig) as api:
            cm = k8s.CoreV1Api(api).read_namespaced_config_map("survivor", "default")
        assert cm.data == {"k": "v"}  # etcd data kept across down/up
    finally:
        manager.down(name, wipe=True)
    assert not ClusterPaths.for_name(name).root.exists()


def test_a_port_taken_during_start_up_is_retried_on_fresh_ports(tmp_path, monkeypatch):
    real = find_binaries().directory
    fake = tmp_path / "bin"
    fake.mkdir()
    for binary in real.iterdir():
        if binary.is_file() and binary.name != "kube-apiserver":
            (fake / binary.name).symlink_to(binary)
    marker = tmp_path / "failed-once"
    (fake / "kube-apiserver").write_text(
        "#!/bin/sh\n"
        f"if [ ! -e {marker} ]; then touch {marker}; "
        "echo 'E1124 run.go:72] listen tcp 127.0.0.1:1: bind: address already in use' >&2; "
        "exit 1; fi\n"
        f"exec {real / 'kube-apiserver'} \"$@\"\n"
    )
    (fake / "kube-apiserver").chmod(0o755)
    monkeypatch.setenv("ANSFLOW_K8S_BIN", str(fake))
    try:
        result = _cli("dev-cluster", "up", "--name", "portrace", "--no-block")
        assert result.exit_code == 0, result.output
        assert marker.exists()
        log = (ClusterPaths.for_name("portrace").logs / "kube-apiserver.log").read_text()
        assert log.count("=== ansflow: starting") == 2
    finally:
        manager.down("portrace", wipe=True)


def test_helm_installs_a_chart_into_the_dev_cluster(dev_cluster, tmp_path):
    chart = tmp_path / "demo"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: demo\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cfg\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    ns = dev_cluster.namespace("helm")
    env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "hc"),
           "HELM_CONFIG_HOME": str(tmp_path / "hcfg"), "HELM_DATA_HOME": str(tmp_path / "hd")}
    out = subprocess.run(
        [str(dev_cluster.helm), "install", "demo", str(chart), "--kubeconfig",
         str(dev_cluster.kubeconfig), "-n", ns, "--set", "greeting=hi", "--wait"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert out.returncode == 0, out.stderr
    with dev_cluster.client() as api:
        cm = k8s.CoreV1Api(api).read_namespaced_config_map("demo-cfg", ns)
    assert cm.data == {"greeting": "hi"}


# ---- authentication: only holders of a certificate of the cluster's CA get in -------------


def _https_status(url: str, context) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_api_server_refuses_anonymous_requests(dev_cluster):
    from ansflow.devcluster.pki import Pki
    from ansflow.devcluster.processes import tls_context

    pki = Pki(dev_cluster.paths.pki)
    server = load_state(dev_cluster.paths).server
    anonymous = tls_context(pki.ca_crt)
    for path in ("/api/v1/namespaces/default/pods", "/version", "/livez", "/readyz"):
        assert _https_status(server + path, anonymous) == 401, path
    admin = tls_context(pki.ca_crt, pki.admin_crt, pki.admin_key)
    assert _https_status(server + "/readyz", admin) == 200


def test_etcd_refuses_clients_and_peers_without_a_certificate_of_the_cluster(dev_cluster,
                                                                              tmp_path):
    import ssl

    from ansflow.devcluster.pki import Pki, create_pki
    from ansflow.devcluster.processes import tls_context

    pki = Pki(dev_cluster.paths.pki)
    ports = load_state(dev_cluster.paths).ports
    stranger = create_pki(tmp_path / "other", "stranger")  # a valid cert of another CA
    for port in (ports["etcd"], ports["etcd-peer"]):
        # Plain HTTP is not spoken at all.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b'"health"' not in sock.recv(4096)
        for context in (tls_context(pki.ca_crt),
                        tls_context(pki.ca_crt, stranger.admin_crt, stranger.admin_key)):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    with context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                        tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                        tls.recv(4096)  # TLS 1.3: the refusal arrives as an alert here
    admin = tls_context(pki.ca_crt, pki.admin_crt, pki.admin_key)
    assert _https_status(f"https://127.0.0.1:{ports['etcd']}/health", admin) == 200


def test_a_running_cluster_of_the_previous_release_is_restarted_with_authentication():
    import json

    name = "oldrel"
    paths = ClusterPaths.for_name(name)
    first = manager.up(name).state
    try:
        with build_api_client(kubeconfig=paths.kubeconfig.read_text()) as api:
            k8s.CoreV1Api(api).create_namespaced_config_map(
                "default", {"metadata": {"name": "survivor"}, "data": {"k": "v"}})
        # The state file as the previous release wrote it: no `security` entry.
        data = json.loads(paths.state.read_text())
        data.pop("security", None)
        paths.state.write_text(json.dumps(data))
        result = _cli("dev-cluster", "up", "--name", name, "--no-block")
        assert result.exit_code == 0, result.output
        assert "started by an older ansflow without client authentication" in result.output
        assert "already running" not in result.output
        again = load_state(paths)
        assert again.security >= 1
        assert all(again.alive().values())
        assert not any(is_alive(first.processes[c]) for c in COMPONENTS)
        with build_api_client(kubeconfig=paths.kubeconfig.read_text()) as api:
            cm = k8s.CoreV1Api(api).read_namespaced_config_map("survivor", "default")
        assert cm.data == {"k": "v"}  # data and certificates kept
        assert manager.up(name).already_running
    finally:
        manager.down(name, wipe=True)


def test_a_running_cluster_without_the_audit_log_is_restarted_with_it():
    import json

    name = "noaudit"
    paths = ClusterPaths.for_name(name)
    first = manager.up(name).state
    try:
        # The state file as the release before the audit log wrote it.
        data = json.loads(paths.state.read_text())
        data["security"] = 1
        paths.state.write_text(json.dumps(data))
        paths.audit_log.unlink(missing_ok=True)
        result = _cli("dev-cluster", "up", "--name", name, "--no-block")
        assert result.exit_code == 0, result.output
        assert "started by an older ansflow without the API server's audit log" in \
            result.output
        assert not any(is_alive(first.processes[c]) for c in COMPONENTS)
        with build_api_client(kubeconfig=paths.kubeconfig.read_text()) as api:
            k8s.CoreV1Api(api).read_namespace("default")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "/api/v1/namespaces/default" not in (
                paths.audit_log.read_text() if paths.audit_log.exists() else ""):
            time.sleep(0.2)
        events = [json.loads(line) for line in paths.audit_log.read_text().splitlines()]
        assert any(e["requestURI"] == "/api/v1/namespaces/default" and e["verb"] == "get"
                   and e["level"] == "Metadata" and "requestObject" not in e for e in events)
        assert manager.up(name).already_running
    finally:
        manager.down(name, wipe=True)


def _running_pod(dev_cluster, ns: str) -> str:
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, {"metadata": {"name": "p"}, "spec": {
            "nodeName": "kwok-node-0", "containers": [{"name": "c", "image": "i"}]}})
        deadline = time.monotonic() + 60
        while core.read_namespaced_pod("p", ns).status.phase != "Running":
            assert time.monotonic() < deadline, "pod never Running"
            time.sleep(0.2)
    return "p"


def test_kwoks_kubelet_api_refuses_exec_without_a_client_certificate(dev_cluster, tmp_path):
    import ssl
    import urllib.parse

    import websocket

    from ansflow.devcluster.kwok_guard import isolation_available
    from ansflow.devcluster.pki import Pki, create_pki

    if not isolation_available():
        pytest.skip("kwok is isolated only where a network namespace can be made (root)")
    pki = Pki(dev_cluster.paths.pki)
    port = load_state(dev_cluster.paths).ports["kwok"]
    ns = dev_cluster.namespace("kwok-auth")
    pod = _running_pod(dev_cluster, ns)
    marker = tmp_path / "ran"
    query = "&".join(["command=touch", f"command={urllib.parse.quote(str(marker))}",
                      "output=1", "error=1"])
    path = f"/exec/{ns}/{pod}/c?{query}"
    stranger = create_pki(tmp_path / "other", "stranger")  # a valid cert of another CA
    attempts = [(f"ws://127.0.0.1:{port}{path}", {}),  # what a web page can open
                (f"wss://127.0.0.1:{port}{path}", {"cert_reqs": ssl.CERT_NONE}),
                (f"wss://127.0.0.1:{port}{path}", {
                    "cert_reqs": ssl.CERT_NONE, "certfile": str(stranger.admin_crt),
                    "keyfile": str(stranger.admin_key)})]
    for url, sslopt in attempts:
        try:
            ws = websocket.create_connection(url, sslopt=sslopt, timeout=10,
                                             subprotocols=["v4.channel.k8s.io"])
        except (websocket.WebSocketException, OSError, ssl.SSLError):
            continue
        try:  # TLS 1.3 may report a refused client certificate only on the first read
            ws.recv()
        except (websocket.WebSocketException, OSError, ssl.SSLError):
            pass
        finally:
            ws.close()
    time.sleep(1)
    assert not marker.exists(), "kwok ran a command for a client without the cluster's cert"
    # The same request with the cluster's certificate (what the API server presents) runs.
    ws = websocket.create_connection(
        f"wss://127.0.0.1:{port}{path}", timeout=10, subprotocols=["v4.channel.k8s.io"],
        sslopt={"cert_reqs": ssl.CERT_NONE, "certfile": str(pki.admin_crt),
                "keyfile": str(pki.admin_key)})
    try:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            try:
                ws.recv()
            except websocket.WebSocketException:
                time.sleep(0.2)
    finally:
        ws.close()
    assert marker.exists()
    marker.unlink()
    # Through the API server (which presents its kubelet client certificate) exec works.
    from ansflow.engines.kube import exec_in_pod

    with dev_cluster.client() as api:
        result = exec_in_pod(api, namespace=ns, pod=pod, command=["touch", str(marker)],
                             timeout=30)
    assert result.exit_code == 0 and marker.exists()
    with dev_cluster.client() as api:
        log = k8s.CoreV1Api(api).read_namespaced_pod_log(pod, ns, container="c")
    assert "simulated container log" in log
