"""Pure parts of the dev-cluster manager: names, state files, command lines, PKI, binaries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from cryptography import x509

from ansflow.devcluster import components as comp
from ansflow.devcluster.binaries import Binaries, find_binaries
from ansflow.devcluster.errors import BinariesMissing, DevClusterError
from ansflow.devcluster.pki import admin_kubeconfig, create_pki
from ansflow.devcluster.processes import (
    ProcessRecord,
    free_ports,
    is_alive,
    start_process,
    stop_process,
)
from ansflow.devcluster.state import ClusterPaths, ClusterState, load_state, save_state


@pytest.mark.parametrize("bad", ["", "Local", "a_b", "-x", "x-", "a" * 41, "a/b"])
def test_invalid_cluster_names_are_rejected_with_the_rules(bad):
    with pytest.raises(DevClusterError, match="lowercase letters"):
        ClusterPaths.for_name(bad)


def test_state_round_trips_and_a_corrupt_state_file_reads_as_not_running(tmp_path):
    paths = ClusterPaths(tmp_path / "c1")
    paths.root.mkdir()
    state = ClusterState(
        name="c1",
        ports={"kube-apiserver": 1234},
        processes={"etcd": ProcessRecord(1, 2, "/x.log")},
        versions={"kubernetes": "v1.36.3"},
    )
    save_state(paths, state)
    again = load_state(paths)
    assert again == state and again.server == "https://127.0.0.1:1234"
    paths.state.write_text('{"name": "c1", "po')  # a crash mid-write
    assert load_state(paths) is None


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(6)
    assert len(set(ports)) == 6 and all(1024 < p < 65536 for p in ports)


def test_kwok_config_has_the_stages_exec_on_host_and_the_log_file(tmp_path):
    paths = ClusterPaths(tmp_path / "c1")
    docs = list(yaml.safe_load_all(comp.kwok_config(paths)))
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Stage") == len(comp.STAGE_FILES)
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "Stage"}
    assert {"node-initialize", "pod-ready", "pod-complete", "pod-delete"} <= names
    exec_doc = next(d for d in docs if d["kind"] == "ClusterExec")
    assert exec_doc["spec"]["execs"][0]["local"]["workDir"] == str(paths.exec_dir)
    logs_doc = next(d for d in docs if d["kind"] == "ClusterLogs")
    assert logs_doc["spec"]["logs"][0]["logsFile"] == str(paths.pod_logs)


def test_component_command_lines_bind_loopback_and_use_the_recorded_ports(tmp_path):
    paths = ClusterPaths(tmp_path / "c1")
    bins = Binaries(tmp_path / "bin", {})
    ports = dict(zip(comp.PORT_NAMES, range(20001, 20007), strict=True))
    pki = create_pki(paths.pki, "c1")
    argvs = [
        comp.etcd_argv(bins, paths, ports, pki),
        comp.apiserver_argv(bins, paths, ports, pki),
        comp.controller_manager_argv(bins, paths, ports, pki),
        comp.scheduler_argv(bins, paths, ports),
        comp.kwok_argv(bins, paths, ports, pki),
    ]
    joined = " ".join(" ".join(a) for a in argvs)
    assert "=0.0.0.0" not in joined and "//0.0.0.0" not in joined
    assert all("--bind-address=127.0.0.1" in a for a in argvs[1:4])
    for port in ports.values():
        assert str(port) in joined
    assert "--secure-port=20003" in argvs[1]
    assert "--authorization-mode=RBAC" in argvs[1]
    # Nobody without a certificate of the cluster's CA: etcd (clients and peer), the API server.
    assert "http://" not in joined
    assert {"--client-cert-auth=true", f"--trusted-ca-file={pki.ca_crt}",
            "--peer-client-cert-auth=true"} <= set(argvs[0])
    assert {"--anonymous-auth=false", f"--etcd-cafile={pki.ca_crt}",
            f"--etcd-certfile={pki.admin_crt}", f"--kubelet-certificate-authority={pki.ca_crt}",
            "--etcd-servers=https://127.0.0.1:20001"} <= set(argvs[1])
    guarded = comp.kwok_argv(bins, paths, ports, pki, isolate=True)
    assert guarded[1:9] == ["-m", "ansflow.devcluster.kwok_guard", str(pki.ca_crt),
                            str(pki.admin_crt), str(pki.admin_key), "20006", "20003", "--"]
    assert guarded[9:] == argvs[4]
    # Every request in the cluster's own audit log, bounded, under the cluster's directory.
    assert {f"--audit-policy-file={paths.audit_policy}",
            f"--audit-log-path={paths.audit_log}"} <= set(argvs[1])
    assert paths.audit_log.is_relative_to(paths.root)
    assert any(a.startswith("--audit-log-maxsize=") for a in argvs[1])
    assert any(a.startswith("--audit-log-maxbackup=") for a in argvs[1])
    policy = yaml.safe_load(comp.AUDIT_POLICY)
    assert policy["kind"] == "Policy" and policy["rules"][-1] == {"level": "Metadata"}


def test_pki_gives_a_system_masters_identity_valid_for_loopback_and_private_keys(tmp_path):
    pki = create_pki(tmp_path / "pki", "c1")
    cert = x509.load_pem_x509_certificate(pki.admin_crt.read_bytes())
    org = cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)[0].value
    assert org == "system:masters"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)][0] == "127.0.0.1"
    for key in (pki.ca_key, pki.admin_key, pki.sa_key):
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    before = pki.admin_crt.read_bytes()
    assert create_pki(tmp_path / "pki", "c1").admin_crt.read_bytes() == before  # reused
    doc = yaml.safe_load(admin_kubeconfig(pki, "https://127.0.0.1:1", "c1"))
    assert doc["current-context"] == "ansflow-c1"
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_missing_binaries_say_how_to_build_them(tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_K8S_BIN", str(tmp_path))
    with pytest.raises(BinariesMissing, match="scripts/build-k8s.sh") as err:
        find_binaries()
    assert "kube-apiserver" in str(err.value)
    monkeypatch.delenv("ANSFLOW_K8S_BIN")
    monkeypatch.setenv("ANSFLOW_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(BinariesMissing, match="no dev-cluster binaries found"):
        find_binaries()


def test_stop_process_stops_exactly_the_recorded_process(tmp_path):
    record = start_process([sys.executable, "-c", "import time; time.sleep(60)"],
                           tmp_path / "sleep.log", tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert is_alive(record)
        # Same PID but another start time: not ours (PID reuse), never signalled.
        assert not is_alive(ProcessRecord(record.pid, record.start_ticks + 1, record.log))
        stop_process(record)
        assert not is_alive(record)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        if is_alive(record):
            os.kill(record.pid, 9)
