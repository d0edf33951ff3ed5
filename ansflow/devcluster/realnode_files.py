"""A real node's settings, where its files live, and the files themselves: containerd's
config, the CNI network, the kubelet's config, kubeconfig and argv (pure: text from
settings; ansflow.devcluster.realnode writes and starts them)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ansflow.devcluster.binaries import Binaries
from ansflow.devcluster.images import PAUSE_IMAGE
from ansflow.devcluster.pki import Pki
from ansflow.devcluster.state import ClusterPaths

NODE_NAME = "127.0.0.1"
DNS_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
LABEL = "ansflow.dev/real-node"
CNI_BIN = "/usr/lib/cni"


@dataclass
class NodeSettings:
    """What a real node was started with (recorded in the cluster's state)."""

    key: str
    port: int
    healthz: int
    bridge: str
    subnet: str
    registries: list[str]
    # kube-proxy's and CoreDNS's health ports (127.0.0.1), picked free at each start.
    proxy_healthz: int = 0
    proxy_metrics: int = 0
    dns_health: int = 0
    dns_ready: int = 0
    # Host ports reachable from pods as Services: {"service", "namespace", "port"} each.
    exposed: list[dict] = field(default_factory=list)
    # Whether this node runs kube-proxy (Services' cluster IPs): one real node per machine
    # does (its iptables chains have fixed names); a second one started meanwhile has none.
    services: bool = True

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
                   registries=[str(r) for r in data.get("registries", [])],
                   proxy_healthz=int(data.get("proxy_healthz", 0)),
                   proxy_metrics=int(data.get("proxy_metrics", 0)),
                   dns_health=int(data.get("dns_health", 0)),
                   dns_ready=int(data.get("dns_ready", 0)),
                   exposed=[{"service": str(e["service"]), "namespace": str(e["namespace"]),
                             "port": int(e["port"])} for e in data.get("exposed", [])],
                   services=bool(data.get("services", True)))

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
# No KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY / KUBE-FIREWALL chains: the kubelet never removes
# them, and kube-proxy (realnode_net) keeps its own rules.
makeIPTablesUtilChains: false
# Cluster DNS: the kube-dns Service (CoreDNS on the bridge address: realnode_net).
clusterDNS: ["{DNS_IP if node.services else ipaddress.ip_network(node.subnet)[1]}"]
clusterDomain: {CLUSTER_DOMAIN}
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
