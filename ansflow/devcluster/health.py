"""A dev cluster's health and status: what `status` reports per component (the control
plane's and the real node's), the readiness checks `up` waits on, its kubeconfig and logs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ansflow.devcluster import processes as proc
from ansflow.devcluster import realnode, realnode_net
from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.pki import Pki
from ansflow.devcluster.state import COMPONENTS, ClusterPaths, ClusterState, load_state


def apiserver_ready(paths: ClusterPaths, state: ClusterState) -> bool:
    pki = Pki(paths.pki)
    ctx = proc.tls_context(pki.ca_crt, pki.admin_crt, pki.admin_key)
    return proc.http_ok(f"{state.server}/readyz", ctx)


def etcd_healthy(paths: ClusterPaths, state: ClusterState) -> bool:
    pki = Pki(paths.pki)
    ctx = proc.tls_context(pki.ca_crt, pki.admin_crt, pki.admin_key)
    return proc.http_ok(f"https://127.0.0.1:{state.ports['etcd']}/health", ctx)


def is_running(paths: ClusterPaths, state: ClusterState | None) -> bool:
    """Whether every recorded component runs and the API server answers /readyz."""
    return bool(state) and all(state.alive().values()) and apiserver_ready(paths, state)


def probe(ctx, port: int, path: str = "/healthz") -> bool:
    return proc.http_ok(f"https://127.0.0.1:{port}{path}", ctx)


@dataclass(frozen=True)
class ComponentStatus:
    """One line of `status`."""

    name: str
    pid: int | None
    port: int | None
    running: bool
    healthy: bool


def status(name: str = "local") -> tuple[ClusterState | None, list[ComponentStatus]]:
    """Per-component process and health status of the named cluster.

    Raises:
        DevClusterError: the cluster is unknown.
    """
    paths = ClusterPaths.for_name(name)
    if not paths.root.exists():
        raise DevClusterError(f"no dev cluster named {name!r} (nothing under {paths.root})")
    state = load_state(paths)
    if state is None:
        return None, []
    alive = state.alive()
    pki = Pki(paths.pki)
    insecure = proc.tls_context(None)
    probes = {
        "etcd": lambda: etcd_healthy(paths, state),
        "kube-apiserver": lambda: apiserver_ready(paths, state),
        "kube-controller-manager": lambda: probe(
            insecure, state.ports["kube-controller-manager"]
        ),
        "kube-scheduler": lambda: probe(insecure, state.ports["kube-scheduler"]),
        "kwok": lambda: probe(
            proc.tls_context(None, pki.admin_crt, pki.admin_key), state.ports["kwok"]
        ),
    }
    rows = []
    for c in COMPONENTS:
        record = state.processes.get(c)
        rows.append(
            ComponentStatus(
                name=c,
                pid=record.pid if record else None,
                port=state.ports.get(c),
                running=alive[c],
                healthy=alive[c] and pki.exists() and probes[c](),
            )
        )
    if state.real_node:
        node = realnode.NodeSettings.from_dict(state.real_node)
        checks = {
            "containerd": (None, lambda: realnode.containerd_answers(node.key)),
            "kubelet": (node.port, lambda: proc.http_ok(
                f"http://127.0.0.1:{node.healthz}/healthz")),
            **({"kube-proxy": (node.proxy_healthz, lambda: proc.http_ok(
                f"http://127.0.0.1:{node.proxy_healthz}/healthz"))} if node.services else {}),
            "coredns": (53, lambda: proc.http_ok(f"http://127.0.0.1:{node.dns_ready}/ready")),
            "node-proxy": (state.ports["kube-apiserver"], lambda: realnode_net.port_open(
                realnode_net.gateway(node), state.ports["kube-apiserver"])),
        }
        for c, (port, check) in checks.items():
            record = state.processes.get(c)
            running = bool(record and proc.is_alive(record))
            rows.append(ComponentStatus(name=c, pid=record.pid if record else None, port=port,
                                        running=running, healthy=running and check()))
    return state, rows


def kubeconfig_path(name: str = "local") -> Path:
    """The admin kubeconfig of the named cluster.

    Raises:
        DevClusterError: the cluster has no kubeconfig yet.
    """
    paths = ClusterPaths.for_name(name)
    if not paths.kubeconfig.is_file():
        raise DevClusterError(f"dev cluster {name!r} has no kubeconfig: run `ansflow dev-cluster up"
                              f" --name {name}` first")
    return paths.kubeconfig


def last_logs(name: str, component: str) -> str:
    """The last lines of one component's log (for error messages)."""
    return proc.log_tail(ClusterPaths.for_name(name).logs / f"{component}.log")
