"""Bringing a named dev cluster up and down (its status and health checks: health.py,
re-exported here)."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from kubernetes import client as k8s

from ansflow.devcluster import components as comp
from ansflow.devcluster import processes as proc
from ansflow.devcluster import realnode, realnode_net
from ansflow.devcluster.binaries import Binaries, find_binaries
from ansflow.devcluster.errors import ComponentFailed, DevClusterError
from ansflow.devcluster.health import (
    ComponentStatus,
    apiserver_ready,
    etcd_healthy,
    is_running,
    kubeconfig_path,
    last_logs,
    probe,
    status,
)
from ansflow.devcluster.kwok_guard import isolation_available
from ansflow.devcluster.pki import Pki, admin_kubeconfig, create_pki, write_private_text
from ansflow.devcluster.state import (
    ClusterPaths,
    ClusterState,
    list_clusters,
    load_state,
    save_state,
)
from ansflow.engines.kube import build_api_client
from ansflow.engines.kube_cluster import ensure_nodes, ready_nodes, service_account_exists
from ansflow.engines.kube_errors import KubeError

START_TIMEOUT = 90.0
# (components, seconds from SIGTERM to SIGKILL); only etcd has data worth a clean stop.
STOP_GROUPS = (
    (("kwok", "kube-scheduler", "kube-controller-manager"), 5.0),
    (("kube-apiserver",), 5.0),
    (("etcd",), 10.0),
)


@dataclass
class UpResult:
    """What `up` did: the state, whether it was already running, what it recovered from."""

    state: ClusterState
    paths: ClusterPaths
    already_running: bool = False
    recovered: list[str] = field(default_factory=list)
    # It ran with the weaker settings of an older ansflow and was restarted with today's.
    upgraded: bool = False
    previous_security: int | None = None  # the settings it ran with, when upgraded


@contextlib.contextmanager
def _locked(paths: ClusterPaths) -> Iterator[None]:
    # One `up`/`down` at a time per cluster (two terminals, parallel test workers).
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _admin_api(paths: ClusterPaths) -> k8s.ApiClient:
    # The one client factory, fed the admin kubeconfig `up` just wrote.
    return build_api_client(kubeconfig=paths.kubeconfig.read_text())


def _stop_all(state: ClusterState) -> list[str]:
    # The real node first (its kubelet, then containerd and what its pods left), then the
    # clients, then the API server, then etcd: stopped together, the API server's
    # graceful shutdown hangs on a vanished etcd and etcd waits for its clients to drain.
    stopped = realnode.stop(ClusterPaths.for_name(state.name), state)
    for group, timeout in STOP_GROUPS:
        running = [
            name for name in group
            if name in state.processes and proc.is_alive(state.processes[name])
        ]
        proc.stop_processes([state.processes[n] for n in running], timeout)
        stopped += running
    return stopped


def _start(state: ClusterState, name: str, argv: list[str], paths: ClusterPaths):
    record = proc.start_process(argv, paths.logs / f"{name}.log", paths.root)
    state.processes[name] = record
    save_state(paths, state)  # record every PID at once: `down` must find it after a crash
    return record


def _nodes_ready(api: k8s.ApiClient, count: int) -> bool:
    try:
        return ready_nodes(api) >= count
    except KubeError:
        return False


def _ensure_nodes(api: k8s.ApiClient, count: int, tainted: bool = False) -> None:
    ensure_nodes(api, [comp.node_manifest(i, tainted) for i in range(count)])


def _prepare_files(paths: ClusterPaths, state: ClusterState, pki: Pki) -> None:
    for d in (paths.root, paths.logs, paths.exec_dir, paths.pod_logs.parent):
        d.mkdir(parents=True, exist_ok=True)
    paths.root.chmod(0o700)
    paths.kwok_config.write_text(comp.kwok_config(paths))
    paths.audit_policy.write_text(comp.AUDIT_POLICY)
    if not paths.pod_logs.exists():
        paths.pod_logs.write_text(
            comp.cri_log_line(f"ansflow dev cluster {state.name}: simulated container log")
        )
    write_private_text(paths.kubeconfig, admin_kubeconfig(pki, state.server, state.name))


def _pick_ports(old: ClusterState | None) -> dict[str, int]:
    # Reuse a stopped cluster's ports when they are all free (etcd keeps its peer URL in its
    # data, clients keep the server URL), else take fresh ones.
    if old and set(old.ports) == set(comp.PORT_NAMES):
        if not any(proc.port_in_use(p) for p in old.ports.values()):
            return dict(old.ports)
    return dict(zip(comp.PORT_NAMES, proc.free_ports(len(comp.PORT_NAMES)), strict=True))


def up(name: str = "local", nodes: int = 1, timeout: float = START_TIMEOUT,
       real_node: bool = False, registries: list[str] | None = None) -> UpResult:
    """Start (or find running) the named dev cluster and wait until its nodes are Ready.

    Args:
        name: the cluster's name (directory under $ANSFLOW_HOME/clusters, block name).
        nodes: how many kwok nodes to create.
        timeout: seconds each component may take to become healthy.
        real_node: also run one real node (kubelet + containerd, ansflow.devcluster.realnode);
            a cluster that had one gets it back when it starts again.
        registries: loopback plain-HTTP registries (``127.0.0.1:PORT``) the real node's
            containerd may pull from.

    Returns:
        The recorded state and what was done.

    Raises:
        BinariesMissing: the binaries are not built.
        ComponentFailed: a component died or stayed unhealthy (with its last log lines).
        DevClusterError: anything else that prevents start-up.
    """
    if nodes < 1:
        raise DevClusterError("--nodes must be at least 1")
    paths = ClusterPaths.for_name(name)
    bins = find_binaries()
    if real_node:
        reason = realnode.missing_parts(bins)
        if reason:
            raise DevClusterError(reason)
    with _locked(paths):
        return _up_locked(paths, bins, nodes, timeout, real_node, list(registries or []))


def _add_real_node(paths: ClusterPaths, state: ClusterState, bins: Binaries,
                   registries: list[str], timeout: float) -> None:
    """Start the real node of a running cluster (kwok restarted first when it was started
    managing every node, as before real nodes)."""
    pki = Pki(paths.pki)
    if not state.kwok_selective:
        proc.stop_process(state.processes["kwok"], 5.0)
        _start(state, "kwok", comp.kwok_argv(bins, paths, state.ports, pki,
                                             isolate=isolation_available()), paths)
        state.kwok_selective = True
        save_state(paths, state)
    realnode.stop(paths, state)  # what is left of it (some of its processes may run)
    try:
        with _admin_api(paths) as api:
            realnode.start(paths, state, bins, pki, api, registries, timeout)
    except BaseException:
        realnode.stop(paths, state)
        raise
    save_state(paths, state)


def expose(name: str, service: str, port: int, namespace: str = "default") -> str:
    """Make the host's ``127.0.0.1:port`` (e.g. the Prefect server) reachable from the pods
    of the named cluster's real node as the Service ``service`` in ``namespace``: the node
    proxy listens on the node's bridge address only and forwards to the host's loopback.
    Kept across restarts.

    Returns:
        ``service.namespace.svc.cluster.local:port``.

    Raises:
        DevClusterError: the cluster or its real node is not running, or a name is invalid.
    """
    paths = ClusterPaths.for_name(name)
    if not paths.root.exists():
        raise DevClusterError(f"no dev cluster named {name!r} (nothing under {paths.root})")
    with _locked(paths):
        state = load_state(paths)
        if state is None or not is_running(paths, state) or not realnode.running(state):
            raise DevClusterError(f"dev cluster {name!r} is not running with a real node: "
                                  f"run `ansflow dev-cluster up --name {name} --real-node`")
        with _admin_api(paths) as api:
            return realnode_net.expose(paths, state, api, service, port, namespace)


def _up_locked(paths: ClusterPaths, bins: Binaries, nodes: int, timeout: float,
               real_node: bool = False, registries: list[str] | None = None) -> UpResult:
    name = paths.name
    old = load_state(paths)
    registries = registries or []
    upgraded = False
    if old and is_running(paths, old) and old.security < comp.SECURITY:
        # Started by an older ansflow (etcd open to any local user, anonymous requests, no
        # audit log): restarted below with today's flags, on its data and certificates.
        _stop_all(old)
        upgraded = True
    elif old and is_running(paths, old):
        if old.nodes < nodes:
            with _admin_api(paths) as api:
                _ensure_nodes(api, nodes, tainted=bool(old.real_node))
            old.nodes = nodes
            save_state(paths, old)
        if (real_node or old.real_node) and not realnode.running(old):
            _add_real_node(paths, old, bins, registries or (
                old.real_node or {}).get("registries", []), timeout)
        return UpResult(old, paths, already_running=True)
    recovered = _stop_all(old) if old else []
    real_node = real_node or bool(old and old.real_node)
    if not registries and old and old.real_node:
        registries = list(old.real_node.get("registries", []))
    started = time.monotonic()
    pki = create_pki(paths.pki, name)
    ports = _pick_ports(old)
    for attempt in (1, 2):
        state = ClusterState(
            name=name,
            ports=ports,
            versions=dict(bins.versions),
            binaries=str(bins.directory),
            nodes=nodes,
            started_at=time.time(),
            security=comp.SECURITY,
            kwok_selective=True,
            real_node=old.real_node if old else None,
        )
        _prepare_files(paths, state, pki)
        save_state(paths, state)
        try:
            _start_components(paths, state, bins, pki, timeout)
            if real_node:
                with _admin_api(paths) as api:
                    realnode.start(paths, state, bins, pki, api, registries, timeout)
            break
        except ComponentFailed as exc:
            _stop_all(state)
            # A free port taken between picking and binding (another process was quicker):
            # once more on fresh ports; any other failure is reported as is.
            if attempt == 2 or "address already in use" not in str(exc):
                raise
            ports = _pick_ports(None)
        except BaseException:
            _stop_all(state)
            raise
    state.ready_seconds = round(time.monotonic() - started, 2)
    save_state(paths, state)
    return UpResult(state, paths, recovered=recovered, upgraded=upgraded,
                    previous_security=old.security if upgraded and old else None)


def _start_components(
    paths: ClusterPaths, state: ClusterState, bins: Binaries, pki: Pki, timeout: float
) -> None:
    ports = state.ports
    # etcd, then the API server that needs it: each must answer before the next starts.
    for name, argv, ready, what in (
        ("etcd", comp.etcd_argv(bins, paths, ports, pki),
         lambda: etcd_healthy(paths, state), "/health"),
        ("kube-apiserver", comp.apiserver_argv(bins, paths, ports, pki),
         lambda: apiserver_ready(paths, state), "/readyz"),
    ):
        rec = _start(state, name, argv, paths)
        proc.wait_until(ready, what=what, component=name, record=rec, timeout=timeout)
    cm = _start(
        state,
        "kube-controller-manager",
        comp.controller_manager_argv(bins, paths, ports, pki),
        paths,
    )
    sched = _start(state, "kube-scheduler", comp.scheduler_argv(bins, paths, ports), paths)
    kwok = _start(state, "kwok", comp.kwok_argv(bins, paths, ports, pki,
                                                isolate=isolation_available()), paths)
    insecure = proc.tls_context(None)
    for name, record in (("kube-controller-manager", cm), ("kube-scheduler", sched)):
        proc.wait_until(
            lambda n=name: probe(insecure, ports[n]),
            what="/healthz",
            component=name,
            record=record,
            timeout=timeout,
        )
    with _admin_api(paths) as api:
        _ensure_nodes(api, state.nodes, tainted=bool(state.real_node))
        proc.wait_until(
            lambda: _nodes_ready(api, state.nodes),
            what=f"{state.nodes} Ready node(s)",
            component="kwok",
            record=kwok,
            timeout=timeout,
        )
        proc.wait_until(
            lambda: service_account_exists(api, "default", "default"),
            what="the default service account",
            component="kube-controller-manager",
            record=cm,
            timeout=timeout,
        )


def down(name: str = "local", wipe: bool = False) -> list[str]:
    """Stop the recorded processes of the named cluster (reverse start order).

    Args:
        name: the cluster's name.
        wipe: also delete its directory (etcd data, certificates, kubeconfig).

    Returns:
        The components that were running and got stopped.

    Raises:
        DevClusterError: the cluster is unknown.
    """
    paths = ClusterPaths.for_name(name)
    if not paths.root.exists():
        raise DevClusterError(f"no dev cluster named {name!r} (nothing under {paths.root})")
    with _locked(paths):
        state = load_state(paths)
        stopped = _stop_all(state) if state else []
        if wipe:
            shutil.rmtree(paths.root, ignore_errors=True)
    return stopped


__all__ = [
    "ComponentFailed",
    "ComponentStatus",
    "UpResult",
    "down",
    "expose",
    "is_running",
    "kubeconfig_path",
    "last_logs",
    "list_clusters",
    "status",
    "up",
]
