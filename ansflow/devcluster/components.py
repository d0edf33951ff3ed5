"""Command lines and config files of the dev cluster's components (pure: no process started)."""

from __future__ import annotations

import sys
from importlib import resources

from ansflow.devcluster.binaries import Binaries
from ansflow.devcluster.pki import Pki
from ansflow.devcluster.state import ClusterPaths

# The ports a cluster needs, all on 127.0.0.1.
PORT_NAMES = (
    "etcd",
    "etcd-peer",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)
STAGE_FILES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
)
SERVICE_CIDR = "10.0.0.0/24"
POD_CIDR = "10.244.0.0/16"
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"
# What a cluster's components were started with, recorded in its state. 0: the first release
# (etcd without TLS, anonymous API requests); 1: etcd client and peer TLS with client
# certificates, no anonymous API requests, kwok's serving cert verified; 2: the API server
# writes an audit log (what tests prove "refused before any request" with). `up` restarts a
# running cluster recorded with less.
SECURITY = 2
# Every request at level Metadata (who, verb, URI, status; no bodies, so no secret values),
# except the lease renewals and events that would fill it with noise.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: None
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: ""
    resources: ["events"]
  - group: events.k8s.io
    resources: ["events"]
- level: Metadata
"""
AUDIT_LOG_MAX_MB = 50
AUDIT_LOG_BACKUPS = 2


def etcd_argv(
    bins: Binaries, paths: ClusterPaths, ports: dict[str, int], pki: Pki
) -> list[str]:
    """etcd: one member on loopback, HTTPS with client certificates required (clients and
    peer), no fsync (a throw-away test store)."""
    client = f"https://127.0.0.1:{ports['etcd']}"
    peer = f"https://127.0.0.1:{ports['etcd-peer']}"
    return [
        bins.path("etcd"),
        "--name=node0",
        f"--data-dir={paths.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=node0={peer}",
        f"--cert-file={pki.admin_crt}",
        f"--key-file={pki.admin_key}",
        "--client-cert-auth=true",
        f"--trusted-ca-file={pki.ca_crt}",
        f"--peer-cert-file={pki.admin_crt}",
        f"--peer-key-file={pki.admin_key}",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file={pki.ca_crt}",
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=2147483648",
        "--log-level=warn",
    ]


def apiserver_argv(
    bins: Binaries, paths: ClusterPaths, ports: dict[str, int], pki: Pki
) -> list[str]:
    """kube-apiserver: RBAC, no anonymous requests, admin cert as serving, etcd-client and
    kubelet-client cert (kwok's serving cert checked against the CA), SA tokens, an audit
    log of every request (bounded: rotated at AUDIT_LOG_MAX_MB, AUDIT_LOG_BACKUPS kept)."""
    return [
        bins.path("kube-apiserver"),
        f"--etcd-servers=https://127.0.0.1:{ports['etcd']}",
        f"--etcd-cafile={pki.ca_crt}",
        f"--etcd-certfile={pki.admin_crt}",
        f"--etcd-keyfile={pki.admin_key}",
        "--anonymous-auth=false",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['kube-apiserver']}",
        f"--tls-cert-file={pki.admin_crt}",
        f"--tls-private-key-file={pki.admin_key}",
        f"--client-ca-file={pki.ca_crt}",
        f"--kubelet-client-certificate={pki.admin_crt}",
        f"--kubelet-client-key={pki.admin_key}",
        f"--kubelet-certificate-authority={pki.ca_crt}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.sa_key}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC",
        "--allow-privileged=true",
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        f"--audit-policy-file={paths.audit_policy}",
        f"--audit-log-path={paths.audit_log}",
        f"--audit-log-maxsize={AUDIT_LOG_MAX_MB}",
        f"--audit-log-maxbackup={AUDIT_LOG_BACKUPS}",
    ]


def controller_manager_argv(
    bins: Binaries, paths: ClusterPaths, ports: dict[str, int], pki: Pki
) -> list[str]:
    """kube-controller-manager: Deployments, ReplicaSets, Jobs, GC, SA tokens, node lifecycle."""
    return [
        bins.path("kube-controller-manager"),
        f"--kubeconfig={paths.kubeconfig}",
        f"--authentication-kubeconfig={paths.kubeconfig}",
        f"--authorization-kubeconfig={paths.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-controller-manager']}",
        "--leader-elect=false",
        f"--root-ca-file={pki.ca_crt}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--authorization-always-allow-paths={HEALTH_PATHS}",
        "--profiling=false",
    ]


def scheduler_argv(bins: Binaries, paths: ClusterPaths, ports: dict[str, int]) -> list[str]:
    """kube-scheduler (kwok does not schedule pods)."""
    return [
        bins.path("kube-scheduler"),
        f"--kubeconfig={paths.kubeconfig}",
        f"--authentication-kubeconfig={paths.kubeconfig}",
        f"--authorization-kubeconfig={paths.kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['kube-scheduler']}",
        "--leader-elect=false",
        f"--authorization-always-allow-paths={HEALTH_PATHS}",
        "--profiling=false",
    ]


def kwok_argv(bins: Binaries, paths: ClusterPaths, ports: dict[str, int], pki: Pki,
              isolate: bool = False) -> list[str]:
    """kwok: plays every node; serves exec and logs (the kubelet API) on its own port.

    With `isolate`, kwok runs under ``ansflow.devcluster.kwok_guard``: in a network namespace
    of its own, its port on the host requiring a client certificate of the cluster's CA."""
    if isolate:
        return [sys.executable, "-m", "ansflow.devcluster.kwok_guard", str(pki.ca_crt),
                str(pki.admin_crt), str(pki.admin_key), str(ports["kwok"]),
                str(ports["kube-apiserver"]), "--", *kwok_argv(bins, paths, ports, pki)]
    return [
        bins.path("kwok"),
        f"--kubeconfig={paths.kubeconfig}",
        f"--config={paths.kwok_config}",
        # Only the kwok nodes (node_manifest's annotation): a real kubelet node is left alone.
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        "--node-ip=127.0.0.1",
        f"--node-port={ports['kwok']}",
        f"--server-address=127.0.0.1:{ports['kwok']}",
        f"--tls-cert-file={pki.admin_crt}",
        f"--tls-private-key-file={pki.admin_key}",
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
    ]


def kwok_config(paths: ClusterPaths) -> str:
    """kwok's --config: the packaged stages plus exec-on-host and the shared log file."""
    stages = resources.files("ansflow.devcluster").joinpath("stages")
    docs = [stages.joinpath(name).read_text() for name in STAGE_FILES]
    docs.append(
        "apiVersion: kwok.x-k8s.io/v1alpha1\n"
        "kind: ClusterExec\n"
        "metadata:\n  name: ansflow-exec-on-host\n"
        f"spec:\n  execs:\n  - local:\n      workDir: {paths.exec_dir}\n"
    )
    docs.append(
        "apiVersion: kwok.x-k8s.io/v1alpha1\n"
        "kind: ClusterLogs\n"
        "metadata:\n  name: ansflow-logs\n"
        f"spec:\n  logs:\n  - logsFile: {paths.pod_logs}\n    follow: false\n"
    )
    return "\n---\n".join(doc.strip() + "\n" for doc in docs)


def cri_log_line(text: str, stream: str = "stdout", when: str = "2026-01-01T00:00:00Z") -> str:
    """One line in the CRI log format kwok serves (`<time> <stream> F <text>`)."""
    return f"{when} {stream} F {text}\n"


# On a cluster with a real node, kwok's nodes carry this taint (as kwok's own examples do):
# a pod lands on the real node unless it tolerates it (scale tests, simulated fleets).
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def node_manifest(index: int, tainted: bool = False) -> dict:
    """The plain v1 Node kwok takes over and fills in (status, lease, addresses); with
    ``tainted``, it carries :data:`KWOK_TAINT` (the cluster has a real node)."""
    name = f"kwok-node-{index}"
    spec = {"spec": {"taints": [dict(KWOK_TAINT)]}} if tainted else {}
    return {
        **spec,
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
    }
