"""Where a dev cluster keeps its files, and its recorded state (ports, PIDs, versions)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.processes import ProcessRecord, is_alive

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
# Start order; stopped in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def ansflow_home() -> Path:
    """$ANSFLOW_HOME, else ~/.ansflow."""
    env = os.environ.get("ANSFLOW_HOME")
    return Path(env) if env else Path.home() / ".ansflow"


def validate_name(name: str) -> str:
    """Check a cluster name (it also names the Prefect block, hence the same rules)."""
    if not NAME_RE.match(name):
        raise DevClusterError(
            f"invalid cluster name {name!r}: use lowercase letters, digits and dashes "
            "(at most 40 characters, starting and ending with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class ClusterPaths:
    """The files of one named dev cluster under $ANSFLOW_HOME/clusters/<name>/."""

    root: Path

    @classmethod
    def for_name(cls, name: str) -> ClusterPaths:
        return cls(ansflow_home() / "clusters" / validate_name(name))

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    @property
    def pod_logs(self) -> Path:
        """The CRI-format file kwok serves as every container's log."""
        return self.root / "pod-logs" / "containers.log"

    @property
    def audit_policy(self) -> Path:
        return self.root / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (JSON lines; rotated copies beside it)."""
        return self.logs / "kube-apiserver-audit.log"

    @property
    def exec_dir(self) -> Path:
        """Working directory of commands exec'd into pods (kwok runs them on the host)."""
        return self.root / "exec"


@dataclass
class ClusterState:
    """What `up` recorded: enough for `down` to stop exactly these processes."""

    name: str
    ports: dict[str, int]
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    binaries: str = ""
    nodes: int = 1
    started_at: float = 0.0
    ready_seconds: float | None = None
    security: int = 0  # components.SECURITY the components were started with
    # kwok manages only the nodes annotated kwok.x-k8s.io/node=fake (a real node can join).
    kwok_selective: bool = False
    real_node: dict | None = None  # realnode.NodeSettings of the real node, when it has one

    @property
    def server(self) -> str:
        """The API server URL."""
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    def alive(self) -> dict[str, bool]:
        """Per component: whether its recorded process still runs."""
        return {c: (c in self.processes and is_alive(self.processes[c])) for c in COMPONENTS}

    def to_json(self) -> str:
        data = {
            "name": self.name,
            "ports": self.ports,
            "processes": {k: v.to_dict() for k, v in self.processes.items()},
            "versions": self.versions,
            "binaries": self.binaries,
            "nodes": self.nodes,
            "started_at": self.started_at,
            "ready_seconds": self.ready_seconds,
            "security": self.security,
            "kwok_selective": self.kwok_selective,
            "real_node": self.real_node,
        }
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        data = json.loads(text)
        return cls(
            name=data["name"],
            ports={k: int(v) for k, v in data["ports"].items()},
            processes={k: ProcessRecord.from_dict(v) for k, v in data["processes"].items()},
            versions=dict(data.get("versions", {})),
            binaries=data.get("binaries", ""),
            nodes=int(data.get("nodes", 1)),
            started_at=float(data.get("started_at", 0.0)),
            ready_seconds=data.get("ready_seconds"),
            security=int(data.get("security", 0)),
            kwok_selective=bool(data.get("kwok_selective", False)),
            real_node=data.get("real_node") or None,
        )


def load_state(paths: ClusterPaths) -> ClusterState | None:
    """The recorded state, or None when the cluster was never started (or state is unreadable)."""
    try:
        return ClusterState.from_json(paths.state.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A half-written file from a crashed run: treated as "not running"; up recovers.
        return None


def save_state(paths: ClusterPaths, state: ClusterState) -> None:
    """Write the state atomically (a crash mid-write leaves the old file)."""
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(state.to_json())
    tmp.replace(paths.state)


def list_clusters() -> list[str]:
    """Names of the clusters that have a directory under $ANSFLOW_HOME/clusters."""
    root = ansflow_home() / "clusters"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and NAME_RE.match(p.name))
