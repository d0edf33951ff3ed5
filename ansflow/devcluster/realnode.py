"""One real node in a dev cluster: a kubelet (built from the control plane's pinned module)
on a private containerd (Debian's, with runc) and a CNI bridge (Debian's plugins).

The node is named ``127.0.0.1`` (the kubelet refuses a loopback ``--node-ip`` and then
publishes no address; named so, its Hostname address is where the API server reaches its
kubelet API), labelled and tainted ``ansflow.dev/real-node=true`` (NoSchedule): pods that need
real containers tolerate the taint and select the label; everything else keeps landing on the
kwok nodes (kwok manages only the nodes annotated ``kwok.x-k8s.io/node=fake``).

Files: ``<cluster>/node/`` (certificates, configs, the kubelet's root, containerd's root) and
``/run/ansflow/<key>/`` (sockets and containerd's state: a unix socket path must stay short).
Pod cgroups live under ``/ansflow-<key>`` in every cgroup hierarchy, pod network namespaces
under containerd's state directory, so ``stop`` can remove exactly what this node made: it
stops the kubelet and containerd, kills the shims and every process left in the node's cgroups,
unmounts what is mounted under its directories, deletes its bridge, its CNI results and its
cgroups, and removes the runtime state (the images are imported again at the next start).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from kubernetes import client as k8s

from ansflow.devcluster import processes as proc
from ansflow.devcluster.binaries import Binaries, cache_dir
from ansflow.devcluster.errors import ComponentFailed, DevClusterError
from ansflow.devcluster.images import PAUSE_IMAGE, build_images
from ansflow.devcluster.pki import Pki, issue_leaf, write_private_text
from ansflow.devcluster.state import ClusterPaths, ClusterState, save_state

NODE_NAME = "127.0.0.1"
LABEL = "ansflow.dev/real-node"
CNI_BIN = "/usr/lib/cni"
PACKAGES = "containerd runc containernetworking-plugins"
RBAC_BINDING = "ansflow:real-nodes"
TOOLS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr")


@dataclass
class NodeSettings:
    """What a real node was started with (recorded in the cluster's state)."""

    key: str
    port: int
    healthz: int
    bridge: str
    subnet: str
    registries: list[str]

    @property
    def network(self) -> str:
        return f"ansflow-{self.key}"

    @property
    def cgroup(self) -> str:
        return f"ansflow-{self.key}"

    @classmethod
    def from_dict(cls, data: dict) -> NodeSettings:
        return cls(key=str(data["key"]), port=int(data["port"]), healthz=int(data["healthz"]),
                   bridge=str(data["bridge"]), subnet=str(data["subnet"]),
                   registries=[str(r) for r in data.get("registries", [])])

    def to_dict(self) -> dict:
        return asdict(self)


def node_key(paths: ClusterPaths) -> str:
    return hashlib.sha256(str(paths.root.resolve()).encode()).hexdigest()[:8]


def node_dir(paths: ClusterPaths) -> Path:
    return paths.root / "node"


def runtime_dir(key: str) -> Path:
    return Path("/run/ansflow") / key


def socket_path(key: str) -> Path:
    return runtime_dir(key) / "containerd.sock"


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
    if not os.access(bins.path("kubelet"), os.X_OK):
        return (f"no kubelet in {bins.directory}: build it with `bash scripts/build-k8s.sh` "
                "(or `bash scripts/setup.sh`)")
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
    port, healthz = proc.free_ports(2)
    previous = NodeSettings.from_dict(old) if old else None
    bridge = f"ansf{key[:8]}"
    return NodeSettings(key=key, port=port, healthz=healthz, bridge=bridge,
                        subnet=_pick_subnet(previous.subnet if previous else None, bridge, key),
                        registries=sorted(set(registries)))


# -- config files --------------------------------------------------------------------------
def containerd_config(paths: ClusterPaths, node: NodeSettings) -> str:
    run = runtime_dir(node.key)
    root = node_dir(paths)
    return f"""\
version = 2
root = "{root / 'containerd'}"
state = "{run / 'state'}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{socket_path(node.key)}"
[ttrpc]
  address = ""
[debug]
  address = ""
  level = "warn"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{root / 'containerd-opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Root in some containers lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{run / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{root / 'cni'}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{root / 'registries'}"
"""


def cni_config(paths: ClusterPaths, node: NodeSettings) -> str:
    net = ipaddress.ip_network(node.subnet)
    return json.dumps({
        "cniVersion": "0.4.0",
        "name": node.network,
        "plugins": [{
            "type": "bridge", "bridge": node.bridge, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "dataDir": str(node_dir(paths) / "cni-ipam"),
                     "ranges": [[{"subnet": str(net), "gateway": str(net[1])}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }, indent=2)


def kubelet_config(paths: ClusterPaths, node: NodeSettings, pki: Pki) -> str:
    root = node_dir(paths)
    return f"""\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 hosts: kubelet >= 1.35 refuses them unless this is false
failCgroupV1: false
failSwapOn: false
cgroupDriver: cgroupfs
cgroupRoot: /{node.cgroup}
containerRuntimeEndpoint: unix://{socket_path(node.key)}
imageServiceEndpoint: unix://{socket_path(node.key)}
address: {NODE_NAME}
port: {node.port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {node.healthz}
tlsCertFile: {root / 'pki' / 'kubelet-serving.crt'}
tlsPrivateKeyFile: {root / 'pki' / 'kubelet-serving.key'}
rotateCertificates: false
serverTLSBootstrap: false
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {pki.ca_crt}}}
authorization: {{mode: Webhook}}
registerNode: true
registerWithTaints:
- {{key: {LABEL}, value: "true", effect: NoSchedule}}
podLogsDir: {root / 'pod-logs'}
staticPodPath: ""
maxPods: 30
serializeImagePulls: false
# Imported images are never pulled again (no pull secrets on a dev node).
imagePullCredentialsVerificationPolicy: NeverVerify
# Keep image GC and evictions away from the imported images.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
shutdownGracePeriod: 0s
oomScoreAdj: 0
"""


def kubelet_kubeconfig(node_pki: Path, pki: Pki, server: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "dev", "cluster": {"server": server,
                                                 "certificate-authority": str(pki.ca_crt)}}],
        "users": [{"name": "node", "user": {
            "client-certificate": str(node_pki / "kubelet-client.crt"),
            "client-key": str(node_pki / "kubelet-client.key")}}],
        "contexts": [{"name": "node", "context": {"cluster": "dev", "user": "node"}}],
        "current-context": "node",
    }, indent=2)


def kubelet_argv(bins: Binaries, paths: ClusterPaths) -> list[str]:
    root = node_dir(paths)
    return [
        bins.path("kubelet"),
        f"--config={root / 'kubelet-config.yaml'}",
        f"--kubeconfig={root / 'kubelet.kubeconfig'}",
        f"--root-dir={root / 'kubelet'}",
        f"--cert-dir={root / 'kubelet-certs'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-labels={LABEL}=true",
        "--v=1",
    ]


def _write_files(paths: ClusterPaths, node: NodeSettings, pki: Pki, server: str) -> None:
    root = node_dir(paths)
    for d in (root, root / "pki", root / "cni", root / "registries", root / "kubelet",
              root / "pod-logs", runtime_dir(node.key)):
        d.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    (root / "pki").chmod(0o700)
    node_pki = root / "pki"
    ca_mark = node_pki / "ca.crt"
    if not ca_mark.is_file() or ca_mark.read_bytes() != pki.ca_crt.read_bytes():
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
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(body, _request_timeout=10)
    except k8s.ApiException as exc:
        if exc.status != 409:
            raise DevClusterError(f"cannot grant the real node its role: {exc.reason}") from None


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
        node = k8s.CoreV1Api(api).read_node(NODE_NAME, _request_timeout=5)
    except Exception:  # noqa: BLE001 - not registered yet, API busy
        return False
    for cond in node.status.conditions or []:
        if cond.type == "Ready" and cond.status == "True" and cond.last_heartbeat_time:
            return cond.last_heartbeat_time.timestamp() >= since - 1
    return False


def start(paths: ClusterPaths, state: ClusterState, bins: Binaries, pki: Pki,
          api: k8s.ApiClient, registries: list[str], timeout: float) -> None:
    """Start containerd and the kubelet for the cluster's real node; wait until it is Ready
    (heartbeat from this start). Records both processes and the settings in ``state``."""
    reason = missing_parts(bins)
    if reason:
        raise DevClusterError(reason)
    node = plan(paths, state.real_node, registries)
    cleanup(paths, node)
    state.real_node = node.to_dict()
    save_state(paths, state)
    _write_files(paths, node, pki, state.server)
    for hierarchy in _hierarchies():
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
    for ref, archive in build_images(cache_dir() / "node-images").items():
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


def running(state: ClusterState) -> bool:
    return all(name in state.processes and proc.is_alive(state.processes[name])
               for name in ("containerd", "kubelet"))


def stop(paths: ClusterPaths, state: ClusterState) -> list[str]:
    """Stop the real node and remove what it left (see the module's docstring)."""
    stopped = []
    for name in ("kubelet", "containerd"):
        record = state.processes.get(name)
        if record and proc.is_alive(record):
            proc.stop_process(record, 10.0)
            stopped.append(name)
    if state.real_node:
        cleanup(paths, NodeSettings.from_dict(state.real_node))
    return stopped


def _hierarchies() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # cgroup v2: one tree
        return [base]
    return [p for p in base.iterdir()
            if p.is_dir() and not p.is_symlink() and p.name != "unified"]


def _mounts_under(prefixes: list[Path]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            target = line.split()[4].replace("\\040", " ")
            if any(target == str(p) or target.startswith(f"{p}/") for p in prefixes):
                found.append(target)
    return found


def _shims(key: str) -> list[int]:
    """The containerd shims of this node's containerd (their argv names its socket)."""
    needle = f"\0-address\0{socket_path(key)}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline.split(b"\0")[0] and needle in cmdline:
                    pids.append(int(entry.name))
    return pids


def _shim_sockets(pids: list[int]) -> list[str]:
    """The /run/containerd/s/... sockets the shims listen on (removed with them)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes[link[8:-1]] = pid
    found = []
    with contextlib.suppress(OSError), open("/proc/net/unix") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[6] in inodes and parts[7].startswith("/run/containerd/s/"):
                found.append(parts[7])
    return found


def cleanup(paths: ClusterPaths, node: NodeSettings) -> None:
    """Remove what a real node left running or mounted (nothing of another node's)."""
    shims = _shims(node.key)
    sockets = _shim_sockets(shims)
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for hierarchy in _hierarchies():
        for procs in (hierarchy / node.cgroup).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    for sock in sockets:
        with contextlib.suppress(OSError):
            os.unlink(sock)
    prefixes = [node_dir(paths), runtime_dir(node.key)]
    for target in sorted(_mounts_under(prefixes), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    if subprocess.run(["ip", "link", "show", node.bridge], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", node.bridge], capture_output=True)
    # libcni's result cache, /var/lib/cni/results/<network>-<sandbox id>-<interface>: this
    # node's network, and containerd's loopback network of this node's sandboxes.
    sandboxes = {d.name for base in (runtime_dir(node.key) / "state", node_dir(paths) /
                                     "containerd")
                 for d in (base / "io.containerd.grpc.v1.cri" / "sandboxes").glob("*")}
    for result in Path("/var/lib/cni/results").glob("*"):
        parts = result.name.rsplit("-", 2)
        if result.name.startswith(f"{node.network}-") or (
                len(parts) == 3 and parts[1] in sandboxes):
            with contextlib.suppress(OSError):
                result.unlink()
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(f"{node_dir(paths)}/"):
                link.unlink()
    deadline = time.monotonic() + 5
    for hierarchy in _hierarchies():
        top = hierarchy / node.cgroup
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            while time.monotonic() < deadline:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # its last processes are still exiting
        with contextlib.suppress(OSError):
            top.rmdir()
    if _mounts_under(prefixes):
        raise DevClusterError(f"the real node left mounts under {node_dir(paths)} that "
                              "cannot be unmounted: see `findmnt`")
    for gone in (runtime_dir(node.key), node_dir(paths) / "kubelet",
                 node_dir(paths) / "containerd", node_dir(paths) / "cni-ipam",
                 node_dir(paths) / "pod-logs"):
        shutil.rmtree(gone, ignore_errors=True)
    with contextlib.suppress(OSError):
        runtime_dir(node.key).parent.rmdir()  # /run/ansflow, when no other node uses it
