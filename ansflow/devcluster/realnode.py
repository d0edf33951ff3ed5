"""One real node in a dev cluster: a kubelet (built from the control plane's pinned module)
on a private containerd (Debian's, with runc) and a CNI bridge (Debian's plugins), with what
its pods need from the network (``realnode_net``: kube-proxy, CoreDNS, the API server and
exposed host ports on the bridge's address).

The node is named ``127.0.0.1`` (the kubelet refuses a loopback ``--node-ip`` and then
publishes no address; named so, its Hostname address is where the API server reaches its
kubelet API) and labelled ``ansflow.dev/real-node=true``. It has no taint: a cluster with a
real node taints its kwok nodes ``kwok.x-k8s.io/node=fake:NoSchedule`` instead (as kwok's own
examples do), so a pod that needs containers lands on the real node without any selector,
and what should run on kwok's nodes (scale tests) tolerates that taint. kwok manages only
the nodes annotated ``kwok.x-k8s.io/node=fake``.

Files: ``<cluster>/node/`` (certificates, configs, the kubelet's root, containerd's root) and
``/run/ansflow/<key>/`` (sockets and containerd's state: a unix socket path must stay short).
Pod cgroups live under ``/ansflow-<key>`` in every cgroup hierarchy, pod network namespaces
under containerd's state directory, so ``stop`` can remove exactly what this node made: it
stops the network services (removing kube-proxy's rules), the kubelet and containerd, kills
the shims and every process left in the node's cgroups, unmounts what is mounted under its
directories, deletes its bridge, its CNI results and its cgroups, and removes the runtime
state (the images are imported again at the next start). The settings and config files are
in ``realnode_files``, the removal in ``realnode_cleanup``."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from kubernetes import client as k8s

from ansflow.devcluster import processes as proc
from ansflow.devcluster import realnode_net as net
from ansflow.devcluster.binaries import Binaries, cache_dir
from ansflow.devcluster.errors import ComponentFailed, DevClusterError
from ansflow.devcluster.images import build_images
from ansflow.devcluster.pki import Pki, issue_leaf, write_private_text
from ansflow.devcluster.realnode_cleanup import cleanup, hierarchies, mounts_under, shims
from ansflow.devcluster.realnode_files import (
    CNI_BIN,
    LABEL,
    NODE_NAME,
    NodeSettings,
    cni_config,
    containerd_config,
    kubelet_argv,
    kubelet_config,
    kubelet_kubeconfig,
    node_dir,
    node_key,
    runtime_dir,
    socket_path,
)
from ansflow.devcluster.state import ClusterPaths, ClusterState, save_state
from ansflow.engines.kube_cluster import ensure_cluster_role_binding, node_ready_since
from ansflow.engines.kube_errors import KubeError

__all__ = ["LABEL", "NODE_NAME", "NodeSettings", "cleanup", "cni_config", "containerd_config",
           "hierarchies", "kubelet_argv", "kubelet_config", "mounts_under", "node_dir",
           "node_key", "plan", "running", "runtime_dir", "shims", "socket_path", "start",
           "stop"]

PACKAGES = "containerd runc containernetworking-plugins"
RBAC_BINDING = "ansflow:real-nodes"
TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr")


def missing_parts(bins: Binaries) -> str | None:
    """Why a real node cannot start here, or None."""
    if os.geteuid() != 0:
        return "a real node needs root (the kubelet and containerd manage cgroups, mounts " \
               "and network interfaces)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not Path(CNI_BIN, "bridge").is_file():
        missing.append(f"{CNI_BIN}/bridge")
    if missing:
        return (f"a real node needs {', '.join(missing)}: install Debian's {PACKAGES} "
                "(`bash scripts/setup.sh` does)")
    for tool in ("iptables", "iptables-save", "iptables-restore"):
        if shutil.which(tool) is None:
            return f"a real node's kube-proxy needs {tool}: install Debian's iptables"
    lacking = [b for b in ("kubelet", "kube-proxy", "coredns", "netprobe")
               if not os.access(bins.path(b), os.X_OK)]
    if lacking:
        return (f"no {', '.join(lacking)} in {bins.directory}: build them with "
                "`bash scripts/build-k8s.sh` (or `bash scripts/setup.sh`) and point "
                "ANSFLOW_K8S_BIN at the directory it prints")
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                         text=True).stdout
    nets = []
    for match in re.finditer(r"inet (\S+)", out):
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_interface(match[1]).network)
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True,
                            text=True).stdout
    for line in routes.splitlines():
        with contextlib.suppress(ValueError, IndexError):
            if line.split()[0] != "default":
                nets.append(ipaddress.ip_network(line.split()[0], strict=False))
    return nets


def _pick_subnet(old: str | None, bridge: str, key: str) -> str:
    """A /24 for the pod network that no interface or route uses (this node's bridge
    aside): the one used before, else one derived from the node's key (so two clusters
    starting at once rarely pick the same), else the next free one."""
    used = _used_networks()
    mine = _bridge_networks(bridge)
    first = int(key, 16) % 256
    for candidate in ([old] if old else []) + [f"10.250.{(first + i) % 256}.0/24"
                                               for i in range(256)]:
        net = ipaddress.ip_network(candidate)
        if all(not net.overlaps(u) or u in mine for u in used):
            return candidate
    raise DevClusterError("no free 10.250.X.0/24 subnet for the real node's pod network")


def _bridge_networks(bridge: str) -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge],
                         capture_output=True, text=True).stdout
    return [ipaddress.ip_interface(m[1]).network for m in re.finditer(r"inet (\S+)", out)]


def plan(paths: ClusterPaths, old: dict | None, registries: list[str]) -> NodeSettings:
    key = node_key(paths)
    port, healthz, proxy_healthz, proxy_metrics, dns_health, dns_ready = proc.free_ports(6)
    previous = NodeSettings.from_dict(old) if old else None
    bridge = f"ansf{key[:8]}"
    return NodeSettings(key=key, port=port, healthz=healthz, bridge=bridge,
                        subnet=_pick_subnet(previous.subnet if previous else None, bridge, key),
                        registries=sorted(set(registries)), proxy_healthz=proxy_healthz,
                        proxy_metrics=proxy_metrics, dns_health=dns_health,
                        dns_ready=dns_ready, exposed=previous.exposed if previous else [])


def _write_files(paths: ClusterPaths, node: NodeSettings, pki: Pki, server: str) -> None:
    root = node_dir(paths)
    for d in (root, root / "pki", root / "cni", root / "registries", root / "kubelet",
              root / "pod-logs", runtime_dir(node.key)):
        d.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    (root / "pki").chmod(0o700)
    node_pki = root / "pki"
    ca_mark = node_pki / "ca.crt"
    renew = not ca_mark.is_file() or ca_mark.read_bytes() != pki.ca_crt.read_bytes()
    net.write_files(paths, node, pki, server, renew=renew)
    if renew:
        issue_leaf(pki, node_pki / "kubelet-client.crt", node_pki / "kubelet-client.key",
                   f"system:node:{NODE_NAME}", "system:nodes")
        issue_leaf(pki, node_pki / "kubelet-serving.crt", node_pki / "kubelet-serving.key",
                   f"system:node:{NODE_NAME}", "system:nodes", server=True, ips=(NODE_NAME,))
        ca_mark.write_bytes(pki.ca_crt.read_bytes())
    write_private_text(root / "kubelet.kubeconfig", kubelet_kubeconfig(node_pki, pki, server))
    (root / "containerd.toml").write_text(containerd_config(paths, node))
    for old in (root / "cni").glob("*"):
        old.unlink()
    (root / "cni" / "10-ansflow.conflist").write_text(cni_config(paths, node))
    (root / "kubelet-config.yaml").write_text(kubelet_config(paths, node, pki))
    shutil.rmtree(root / "registries", ignore_errors=True)
    for registry in node.registries:
        host = root / "registries" / registry
        host.mkdir(parents=True)
        (host / "hosts.toml").write_text(
            f'server = "http://{registry}"\n\n[host."http://{registry}"]\n'
            '  capabilities = ["pull", "resolve"]\n')


def _make_bridge(node: NodeSettings) -> None:
    """The pod network's bridge with its gateway address, made now rather than by the CNI
    plugin at the first pod, so that the subnet shows as taken to the next node."""
    gateway = ipaddress.ip_network(node.subnet)[1]
    prefix = ipaddress.ip_network(node.subnet).prefixlen
    for argv in (["ip", "link", "add", "name", node.bridge, "type", "bridge"],
                 ["ip", "addr", "add", f"{gateway}/{prefix}", "dev", node.bridge],
                 ["ip", "link", "set", node.bridge, "up"]):
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0 and "exists" not in done.stderr:
            raise DevClusterError(f"cannot set up the real node's bridge {node.bridge}: "
                                  f"{' '.join(argv)}: {done.stderr.strip()}")


def _rbac(api: k8s.ApiClient) -> None:
    """The API server authorizes by RBAC only: the node's identity gets the built-in
    ``system:node`` role (it also covers the kubelet's token and access reviews)."""
    body = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": RBAC_BINDING},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:node"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                          "name": "system:nodes"}]}
    try:
        ensure_cluster_role_binding(api, body)
    except KubeError as exc:
        raise DevClusterError(f"cannot grant the real node its role: {exc}") from None


def _ctr(key: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "-a", str(socket_path(key)), "-n", "k8s.io", *args],
                          capture_output=True, text=True, timeout=timeout)


def containerd_answers(key: str) -> bool:
    try:
        return _ctr(key, "version", timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _node_ready_since(api: k8s.ApiClient, since: float) -> bool:
    try:
        return node_ready_since(api, NODE_NAME, since)
    except Exception:  # noqa: BLE001 - not registered yet, API busy
        return False


def start(paths: ClusterPaths, state: ClusterState, bins: Binaries, pki: Pki,
          api: k8s.ApiClient, registries: list[str], timeout: float) -> None:
    """Start containerd and the kubelet for the cluster's real node; wait until it is Ready
    (heartbeat from this start). Records both processes and the settings in ``state``."""
    reason = missing_parts(bins)
    if reason:
        raise DevClusterError(reason)
    node = plan(paths, state.real_node, registries)
    owner = net.kube_proxy_owner()
    node.services = owner is None or owner[0] == str(paths.root)
    cleanup(paths, node)
    state.real_node = node.to_dict()
    save_state(paths, state)
    _write_files(paths, node, pki, state.server)
    for hierarchy in hierarchies():
        (hierarchy / node.cgroup).mkdir(exist_ok=True)
    _make_bridge(node)
    _rbac(api)
    root = node_dir(paths)
    record = proc.start_process(["containerd", "--config", str(root / "containerd.toml")],
                                paths.logs / "containerd.log", paths.root)
    state.processes["containerd"] = record
    save_state(paths, state)
    proc.wait_until(lambda: containerd_answers(node.key),
                    what="its socket", component="containerd", record=record,
                    timeout=timeout)
    for ref, archive in build_images(cache_dir() / "node-images",
                                     netprobe=Path(bins.path("netprobe"))).items():
        done = _ctr(node.key, "images", "import", str(archive))
        if done.returncode != 0:
            raise ComponentFailed(f"containerd: importing {ref} failed: "
                                  f"{(done.stderr or done.stdout).strip()[-500:]}")
    began = time.time()
    record = proc.start_process(kubelet_argv(bins, paths), paths.logs / "kubelet.log",
                                paths.root)
    state.processes["kubelet"] = record
    save_state(paths, state)
    proc.wait_until(lambda: _node_ready_since(api, began), what=f"node {NODE_NAME} Ready",
                    component="kubelet", record=record, timeout=timeout)
    try:
        net.untaint_real_node(api, LABEL)  # registered tainted by an older ansflow
        net.set_kwok_taints(api, True)
    except KubeError as exc:
        raise DevClusterError(f"cannot taint the kwok nodes: {exc}") from None
    net.start(paths, state, bins, api, node, timeout)


def running(state: ClusterState) -> bool:
    return net.running(state) and all(
        name in state.processes and proc.is_alive(state.processes[name])
        for name in ("containerd", "kubelet"))


def stop(paths: ClusterPaths, state: ClusterState) -> list[str]:
    """Stop the real node and remove what it left (see the module's docstring)."""
    stopped = []
    for name in ("kubelet", "containerd"):
        record = state.processes.get(name)
        if record and proc.is_alive(record):
            proc.stop_process(record, 10.0)
            stopped.append(name)
    if state.real_node or any(n in state.processes for n in net.NET_PROCESSES):
        stopped += net.stop(paths, state, str(Path(state.binaries) / "kube-proxy")
                            if state.binaries else None)
    if state.real_node:
        cleanup(paths, NodeSettings.from_dict(state.real_node))
    return stopped
