"""What a pod on the real node needs from the network: Services (kube-proxy), cluster DNS
(CoreDNS), the API server (the ``kubernetes`` Service) and host services such as the Prefect
server, all reached through the node's bridge address.

- **node proxy** (``ansflow.devcluster.node_proxy``): listens on the bridge's address only
  (the pods' gateway, never every interface) and forwards the API server's port, and each
  port exposed with :func:`expose`, to the same port on the host's 127.0.0.1 (bytes only:
  TLS and client authentication stay the API server's).
- **kube-proxy** (iptables mode, built from the control plane's pinned module): gives
  Services their cluster IPs. Its identity is ``system:kube-proxy`` (the built-in
  ``system:node-proxier`` role). It masquerades all Service traffic (a pod calling a Service
  of a pod on the same bridge gets its answer back through the gateway), serves NodePorts on
  the bridge address only, and changes no sysctl (conntrack sizes and timeouts left alone).
  Its chains (``KUBE-*``) have fixed names, so one machine runs one such kube-proxy at a time:
  a second cluster's real node is refused with the name of the one that runs
  (``/run/ansflow/kube-proxy.json``); ``stop`` removes its rules (``kube-proxy --cleanup``).
- **CoreDNS** (the ``kubernetes``, ``cache``, ``errors``, ``health``, ``ready`` plugins
  only): answers on the bridge address, port 53, for ``cluster.local`` and the reverse zones;
  other names are refused (nothing outside can be reached here anyway). The ``kube-dns``
  Service (``10.0.0.10``, the kubelet's ``clusterDNS``) points at it. Its identity
  ``system:ansflow:coredns`` may list and watch what the plugin reads.
- **Objects**: an EndpointSlice of the ``kubernetes`` Service (the API server runs with
  ``--endpoint-reconciler-type=none``) and of ``kube-dns``, both on the bridge address;
  exposed host ports get a selector-less Service and an EndpointSlice each. They are applied
  again at every start (the bridge's subnet may change).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from kubernetes import client as k8s

from ansflow.devcluster import processes as proc
from ansflow.devcluster.binaries import Binaries
from ansflow.devcluster.components import KWOK_TAINT
from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.pki import Pki, issue_leaf, write_private_text
from ansflow.devcluster.processes import ProcessRecord
from ansflow.devcluster.realnode_files import (
    CLUSTER_DOMAIN,
    DNS_IP,
    NODE_NAME,
    NodeSettings,
    node_dir,
)
from ansflow.devcluster.state import ClusterPaths, ClusterState, save_state
from ansflow.engines.kube_errors import KubeError, KubeNotFound
from ansflow.engines.kube_names import check_name, check_namespace
from ansflow.engines.kube_objects import Resource, apply_object, request

MANAGED_BY = "ansflow.dev"
COREDNS_USER = "system:ansflow:coredns"
OWNER_FILE = Path("/run/ansflow/kube-proxy.json")
NET_PROCESSES = ("kube-proxy", "coredns", "node-proxy")
NO_SERVICES = ("another dev cluster's real node runs this machine's kube-proxy (its iptables "
               "chains have fixed names): this node's pods get no Service cluster IPs (the "
               "`kubernetes` and `kube-dns` Services included; cluster DNS answers on the "
               "bridge address). Stop the other cluster and `up --real-node` this one again.")

_SERVICE = Resource("v1", "Service", "services", True)
_NAMESPACE = Resource("v1", "Namespace", "namespaces", False)
_SLICE = Resource("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True)
_ROLE = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False)
_BINDING = Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding",
                    "clusterrolebindings", False)
_NODE = Resource("v1", "Node", "nodes", False)


def gateway(node: NodeSettings) -> str:
    """The bridge's address: the pods' default gateway, where the node's services listen."""
    return str(ipaddress.ip_network(node.subnet)[1])


# --- files (pure) -------------------------------------------------------------------------

def client_kubeconfig(server: str, ca: Path, crt: Path, key: Path) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {"server": server,
                                                 "certificate-authority": str(ca)}}],
        "users": [{"name": "user", "user": {"client-certificate": str(crt),
                                            "client-key": str(key)}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "user"}}],
        "current-context": "dev",
    }, indent=2)


def kube_proxy_config(paths: ClusterPaths, node: NodeSettings) -> str:
    gw = gateway(node)
    return f"""\
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {node_dir(paths) / 'kube-proxy.kubeconfig'}
hostnameOverride: "{NODE_NAME}"
# The node's address as kube-proxy sees it (the kubelet publishes none: its name is loopback).
bindAddress: {gw}
healthzBindAddress: 127.0.0.1:{node.proxy_healthz}
metricsBindAddress: 127.0.0.1:{node.proxy_metrics}
mode: iptables
clusterCIDR: {node.subnet}
detectLocalMode: ClusterCIDR
nodePortAddresses: ["{gw}/32"]
iptables:
  masqueradeAll: true
  localhostNodePorts: false
  syncPeriod: 30s
  minSyncPeriod: 1s
# Leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"""


def corefile(paths: ClusterPaths, node: NodeSettings) -> str:
    return f"""\
.:53 {{
    bind {gateway(node)}
    errors
    health 127.0.0.1:{node.dns_health}
    ready 127.0.0.1:{node.dns_ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {node_dir(paths) / 'coredns.kubeconfig'} dev
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
}}
"""


def node_proxy_config(node: NodeSettings, api_port: int) -> str:
    ports = [api_port] + [int(e["port"]) for e in node.exposed]
    return json.dumps({"address": gateway(node), "ports": sorted(set(ports))})


def _slice(name: str, namespace: str, service: str, address: str,
           ports: list[dict]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
            "ports": ports}


def cluster_objects(node: NodeSettings, api_port: int) -> list[tuple[Resource, dict]]:
    """The objects that route the ``kubernetes`` and ``kube-dns`` Services to the node's
    bridge address, and CoreDNS's role."""
    gw = gateway(node)
    return [
        (_ROLE, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                 "metadata": {"name": COREDNS_USER},
                 "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods",
                                                             "namespaces"],
                            "verbs": ["list", "watch"]},
                           {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                            "verbs": ["list", "watch"]}]}),
        (_BINDING, {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": COREDNS_USER},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": COREDNS_USER},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                  "name": COREDNS_USER}]}),
        (_SLICE, _slice("kubernetes-ansflow", "default", "kubernetes", gw,
                        [{"name": "https", "port": api_port, "protocol": "TCP"}])),
        (_SERVICE, {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "kube-dns", "namespace": "kube-system",
                                 "labels": {"k8s-app": "kube-dns",
                                            "kubernetes.io/name": "CoreDNS"}},
                    "spec": {"clusterIP": DNS_IP,
                             "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                       {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}),
        (_SLICE, _slice("kube-dns-ansflow", "kube-system", "kube-dns", gw,
                        [{"name": "dns", "port": 53, "protocol": "UDP"},
                         {"name": "dns-tcp", "port": 53, "protocol": "TCP"}])),
    ]


def exposed_objects(node: NodeSettings, service: str, namespace: str,
                    port: int) -> list[tuple[Resource, dict]]:
    """A selector-less Service ``service`` on ``port`` whose endpoint is the node's bridge
    address (where the node proxy forwards the host's 127.0.0.1:``port``)."""
    return [
        (_SERVICE, {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": service, "namespace": namespace,
                                 "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
                    "spec": {"ports": [{"name": "tcp", "port": port, "protocol": "TCP",
                                        "targetPort": port}]}}),
        (_SLICE, _slice(f"{service}-ansflow", namespace, service, gateway(node),
                        [{"name": "tcp", "port": port, "protocol": "TCP"}])),
    ]


# --- certificates and files ---------------------------------------------------------------

def write_files(paths: ClusterPaths, node: NodeSettings, pki: Pki, server: str,
                renew: bool) -> None:
    """Certificates (when ``renew`` or missing), kubeconfigs and configs of the node's
    network services."""
    root = node_dir(paths)
    node_pki = root / "pki"
    for name, cn, org in (("kube-proxy", "system:kube-proxy", None),
                          ("coredns", COREDNS_USER, None)):
        crt, key = node_pki / f"{name}.crt", node_pki / f"{name}.key"
        if renew or not crt.is_file() or not key.is_file():
            issue_leaf(pki, crt, key, cn, org)
        write_private_text(root / f"{name}.kubeconfig",
                           client_kubeconfig(server, pki.ca_crt, crt, key))
    (root / "kube-proxy.yaml").write_text(kube_proxy_config(paths, node))
    (root / "Corefile").write_text(corefile(paths, node))
    (root / "node-proxy.json").write_text(node_proxy_config(node, _api_port(server)))


def _api_port(server: str) -> int:
    return int(server.rsplit(":", 1)[1])


# --- processes ----------------------------------------------------------------------------

@contextlib.contextmanager
def _owner_lock() -> Iterator[None]:
    # The directory itself is the lock (no lock file left behind).
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(OWNER_FILE.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def kube_proxy_owner() -> tuple[str, ProcessRecord] | None:
    """The cluster directory and process of the kube-proxy running on this machine, if any
    (a dead owner counts as none)."""
    try:
        data = json.loads(OWNER_FILE.read_text())
        record = ProcessRecord.from_dict(data["process"])
        owner = str(data["cluster"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (owner, record) if proc.is_alive(record) else None


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _start(paths: ClusterPaths, state: ClusterState, name: str,
           argv: list[str]) -> ProcessRecord:
    record = proc.start_process(argv, paths.logs / f"{name}.log", paths.root)
    state.processes[name] = record
    save_state(paths, state)
    return record


def start(paths: ClusterPaths, state: ClusterState, bins: Binaries, api: k8s.ApiClient,
          node: NodeSettings, timeout: float) -> None:
    """Start the node proxy, then apply the Services' objects, then (the Node registered)
    kube-proxy and CoreDNS; wait until each answers."""
    gw = gateway(node)
    root = node_dir(paths)
    api_port = state.ports["kube-apiserver"]
    record = _start(paths, state, "node-proxy",
                    [sys.executable, "-m", "ansflow.devcluster.node_proxy",
                     str(root / "node-proxy.json")])
    proc.wait_until(lambda: port_open(gw, api_port), what=f"{gw}:{api_port}",
                    component="node-proxy", record=record, timeout=timeout)
    try:
        for res, obj in cluster_objects(node, api_port):
            apply_object(api, res, obj, force=True)
        for entry in node.exposed:
            for res, obj in exposed_objects(node, entry["service"], entry["namespace"],
                                            int(entry["port"])):
                apply_object(api, res, obj, force=True)
    except KubeError as exc:
        raise DevClusterError(f"cannot route the cluster's Services to the real node: "
                              f"{exc}") from None
    dns = _start(paths, state, "coredns", [bins.path("coredns"), "-conf",
                                           str(root / "Corefile")])
    if node.services:
        with _owner_lock():
            owner = kube_proxy_owner()
            if owner and owner[0] != str(paths.root):
                raise DevClusterError(
                    f"another dev cluster's real node started kube-proxy on this machine "
                    f"meanwhile ({owner[0]}): start this one again")
            record = _start(paths, state, "kube-proxy",
                            [bins.path("kube-proxy"), f"--config={root / 'kube-proxy.yaml'}",
                             "--v=1"])
            OWNER_FILE.write_text(json.dumps({"cluster": str(paths.root),
                                              "process": record.to_dict()}))
        proc.wait_until(lambda: proc.http_ok(f"http://127.0.0.1:{node.proxy_healthz}/healthz"),
                        what="/healthz (its first sync of the iptables rules)",
                        component="kube-proxy", record=record, timeout=timeout)
        # The host's own connections pass the same rules (nat OUTPUT): the Services answer.
        proc.wait_until(lambda: port_open("10.0.0.1", 443) and port_open(DNS_IP, 53),
                        what="the kubernetes and kube-dns Services routed",
                        component="kube-proxy", record=record, timeout=timeout)
    else:
        state.processes.pop("kube-proxy", None)
        with open(paths.logs / "kube-proxy.log", "a") as log:
            log.write(f"=== ansflow: kube-proxy not started: {NO_SERVICES}\n")
    proc.wait_until(lambda: proc.http_ok(f"http://127.0.0.1:{node.dns_ready}/ready"),
                    what="/ready (the kubernetes plugin's first sync)", component="coredns",
                    record=dns, timeout=timeout)


def running(state: ClusterState) -> bool:
    node = NodeSettings.from_dict(state.real_node) if state.real_node else None
    if node and not node.services and kube_proxy_owner() is None:
        return False  # the other cluster's kube-proxy is gone: start again, with one
    wanted = [n for n in NET_PROCESSES if n != "kube-proxy" or (node and node.services)]
    return all(name in state.processes and proc.is_alive(state.processes[name])
               for name in wanted)


def reload_node_proxy(paths: ClusterPaths, state: ClusterState, node: NodeSettings) -> None:
    (node_dir(paths) / "node-proxy.json").write_text(
        node_proxy_config(node, state.ports["kube-apiserver"]))
    record = state.processes.get("node-proxy")
    if not record or not proc.is_alive(record):
        raise DevClusterError("the real node's node proxy is not running: run `ansflow "
                              "dev-cluster up --real-node` again")
    os.kill(record.pid, signal.SIGHUP)


def stop(paths: ClusterPaths, state: ClusterState, kube_proxy: str | None) -> list[str]:
    """Stop the node's network services; remove kube-proxy's rules (``kube_proxy``: its
    binary) unless another cluster's kube-proxy runs."""
    stopped = []
    running_ = [n for n in NET_PROCESSES if n in state.processes
                and proc.is_alive(state.processes[n])]
    proc.stop_processes([state.processes[n] for n in running_], 5.0)
    stopped += running_
    with _owner_lock():
        owner = kube_proxy_owner()
        if owner is None or owner[0] == str(paths.root):
            if kube_proxy and os.access(kube_proxy, os.X_OK):
                subprocess.run([kube_proxy, "--cleanup", "--v=0"], capture_output=True,
                               timeout=60)
            if not _chain_making_kubelets():
                remove_kubelet_chains()
            with contextlib.suppress(OSError):
                data = json.loads(OWNER_FILE.read_text())
                if data.get("cluster") == str(paths.root):
                    OWNER_FILE.unlink()
    return stopped


# The chains a kubelet made with makeIPTablesUtilChains (the default; ours now run without):
# (table, chain) per family, and the chains whose jumps sit in INPUT and OUTPUT.
KUBELET_CHAINS = (("mangle", "KUBE-IPTABLES-HINT"), ("mangle", "KUBE-KUBELET-CANARY"),
                  ("nat", "KUBE-KUBELET-CANARY"), ("filter", "KUBE-KUBELET-CANARY"),
                  ("filter", "KUBE-FIREWALL"))


def _chain_making_kubelets() -> bool:
    """Whether a kubelet runs here that makes those chains (one whose --config does not say
    ``makeIPTablesUtilChains: false``, as every real node's since this release does)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].rsplit(b"/", 1)[-1] != b"kubelet":
            continue
        configs = [a[len(b"--config="):] for a in argv if a.startswith(b"--config=")]
        try:
            text = Path(configs[0].decode()).read_text() if configs else ""
        except (OSError, UnicodeDecodeError):
            text = ""
        if "makeIPTablesUtilChains: false" not in text:
            return True
    return False


def remove_kubelet_chains() -> None:
    """Remove the utility chains an earlier real node's kubelet left (the kubelet never
    removes them); only while no kubelet that makes them runs on this machine."""
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        saved = subprocess.run([f"{tool}-save"], capture_output=True, text=True).stdout
        if not any(f":{chain} " in saved for _, chain in KUBELET_CHAINS):
            continue  # nothing of theirs: one read instead of a dozen calls
        for hook in ("INPUT", "OUTPUT"):
            for _ in range(10):  # one jump each, unless added more than once
                if subprocess.run([tool, "-w", "5", "-t", "filter", "-D", hook, "-j",
                                   "KUBE-FIREWALL"], capture_output=True).returncode != 0:
                    break
        for table, chain in KUBELET_CHAINS:
            for op in ("-F", "-X"):
                subprocess.run([tool, "-w", "5", "-t", table, op, chain], capture_output=True)


# --- Services of host ports, node taints --------------------------------------------------

def expose(paths: ClusterPaths, state: ClusterState, api: k8s.ApiClient, service: str,
           port: int, namespace: str) -> str:
    """Make the host's ``127.0.0.1:port`` reachable from pods as ``service.namespace``
    (recorded: restored at the next start). Returns the in-cluster URL's host:port."""
    try:
        check_name(service, "Service")
        check_namespace(namespace)
    except KubeError as exc:
        raise DevClusterError(str(exc)[:500]) from None
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise DevClusterError(f"port {port} is not 1-65535")
    if not state.real_node:
        raise DevClusterError(f"dev cluster {state.name!r} has no real node: run `ansflow "
                              f"dev-cluster up --name {state.name} --real-node` first")
    node = NodeSettings.from_dict(state.real_node)
    if port == state.ports["kube-apiserver"]:
        raise DevClusterError("that is the API server's port: pods reach it as the "
                              "`kubernetes` Service")
    entry = {"service": service, "namespace": namespace, "port": port}
    node.exposed = [e for e in node.exposed
                    if (e["service"], e["namespace"]) != (service, namespace)] + [entry]
    try:
        apply_object(api, _NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": namespace}})
        applied = [apply_object(api, res, obj, force=True)
                   for res, obj in exposed_objects(node, service, namespace, port)]
    except KubeError as exc:
        raise DevClusterError(f"cannot expose port {port} as {service}.{namespace}: "
                              f"{exc}") from None
    state.real_node = node.to_dict()
    save_state(paths, state)
    reload_node_proxy(paths, state, node)
    gw = gateway(node)
    proc.wait_until(lambda: port_open(gw, port), what=f"{gw}:{port}",
                    component="node-proxy", record=state.processes["node-proxy"], timeout=10)
    cluster_ip = str((applied[0].get("spec") or {}).get("clusterIP") or "")
    if node.services and cluster_ip:
        # Routed once kube-proxy has the Service and its EndpointSlice (host connections
        # pass the same rules): a pod started after this returns reaches it.
        proc.wait_until(lambda: port_open(cluster_ip, port), what=f"{cluster_ip}:{port} "
                        f"({service}.{namespace}) routed", component="kube-proxy",
                        record=state.processes.get("kube-proxy"), timeout=30)
    return f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"


def set_kwok_taints(api: k8s.ApiClient, tainted: bool) -> None:
    """Add (or remove) the ``kwok.x-k8s.io/node=fake:NoSchedule`` taint on every kwok node,
    keeping each node's other taints."""
    page = request(api, "GET", _NODE.path(), timeout=10)
    for item in page.get("items", []):
        meta = item.get("metadata", {})
        if (meta.get("annotations") or {}).get("kwok.x-k8s.io/node") != "fake":
            continue
        taints = list((item.get("spec") or {}).get("taints") or [])
        has = any(t.get("key") == KWOK_TAINT["key"] for t in taints)
        if has == tainted:
            continue
        new = taints + [KWOK_TAINT] if tainted else [
            t for t in taints if t.get("key") != KWOK_TAINT["key"]]
        patch = [{"op": "test", "path": "/metadata/resourceVersion",
                  "value": meta["resourceVersion"]},
                 {"op": "add", "path": "/spec/taints", "value": new}]
        try:
            request(api, "PATCH", _NODE.path(name=meta["name"]), body=patch,
                    content_type="application/json-patch+json", timeout=10)
        except KubeNotFound:
            continue


def untaint_real_node(api: k8s.ApiClient, key: str) -> None:
    """Remove the taint ``key`` a real node registered with before (kubelet never removes
    a taint it once registered)."""
    try:
        node = request(api, "GET", _NODE.path(name=NODE_NAME), timeout=10)
    except KubeNotFound:
        return
    taints = (node.get("spec") or {}).get("taints") or []
    if any(t.get("key") == key for t in taints):
        request(api, "PATCH", _NODE.path(name=NODE_NAME), content_type=(
                "application/json-patch+json"), timeout=10, body=[
                {"op": "test", "path": "/metadata/resourceVersion",
                 "value": node["metadata"]["resourceVersion"]},
                {"op": "add", "path": "/spec/taints",
                 "value": [t for t in taints if t.get("key") != key]}])
