"""Dev-cluster fixtures: one real Kubernetes control plane (etcd, kube-apiserver, controller
manager, scheduler, kwok) for the whole test run, built from the cached binaries.

Usage in a test:

    def test_something(dev_cluster):
        with dev_cluster.client() as api:          # admin, isolated ApiClient
            kubernetes.client.CoreV1Api(api).list_node()
        KubernetesCluster.load(dev_cluster.block_name)   # saved on the suite's Prefect server

`dev_cluster` brings up the cluster named `test` under the suite's temp ANSFLOW_HOME, saves
the block `test` on the suite's Prefect server, and tears everything down (processes and
data) at the end of the session. `second_dev_cluster` (`test-b`) is only started when a test
asks for it, as is `real_node_cluster` (`test-rn`: with one real node, ansflow.devcluster.realnode).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s

from ansflow.devcluster import manager
from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.state import ClusterPaths


@dataclass(frozen=True)
class DevClusterHandle:
    """A running dev cluster, as tests see it."""

    name: str
    server: str
    kubeconfig: Path
    block_name: str
    paths: ClusterPaths
    versions: dict[str, str]
    kubectl: Path
    helm: Path

    @property
    def pod_logs(self) -> Path:
        """The CRI-format file kwok serves as every container's log (tests may append)."""
        return self.paths.pod_logs

    def block(self):
        """An unsaved KubernetesCluster block for this cluster (admin identity)."""
        from ansflow.blocks.kubernetes import KubernetesCluster

        return KubernetesCluster.from_kubeconfig_file(self.kubeconfig)

    def client(self) -> k8s.ApiClient:
        """A fresh admin ApiClient (use as a context manager)."""
        return self.block().get_client()

    def audit_mark(self) -> int:
        """Where the API server's audit log ends now (for :meth:`audit_events`)."""
        log = self.paths.audit_log
        return log.stat().st_size if log.exists() else 0

    def audit_events(self, mark: int = 0) -> list[dict]:
        """The API server's audit events written since `mark` (every request it received,
        at level Metadata: user, verb, requestURI, response code)."""
        with self.paths.audit_log.open("rb") as log:
            log.seek(mark if mark <= log.seek(0, 2) else 0)  # rotated meanwhile: all of it
            return [json.loads(line) for line in log.read().splitlines() if line.strip()]

    def namespace(self, prefix: str = "t") -> str:
        """Create a fresh namespace and return its name (left for the session teardown)."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        with self.client() as api:
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
        return name


def _start(name: str, prefect_server: str, **up_options) -> DevClusterHandle:
    try:
        result = manager.up(name, nodes=1, **up_options)
    except DevClusterError as exc:
        pytest.fail(f"dev cluster {name!r} could not start: {exc}", pytrace=False)
    from ansflow.blocks.kubernetes import KubernetesCluster

    KubernetesCluster.from_kubeconfig_file(result.paths.kubeconfig).save(name, overwrite=True)
    return DevClusterHandle(
        name=name,
        server=result.state.server,
        kubeconfig=result.paths.kubeconfig,
        block_name=name,
        paths=result.paths,
        versions=dict(result.state.versions),
        kubectl=Path(result.state.binaries) / "kubectl",
        helm=Path(result.state.binaries) / "helm",
    )


@pytest.fixture(scope="session")
def dev_cluster(prefect_server: str) -> Iterator[DevClusterHandle]:
    """The suite's running dev cluster `test` (its block `test` saved on the Prefect server)."""
    handle = _start("test", prefect_server)
    try:
        yield handle
    finally:
        manager.down(handle.name, wipe=True)


@pytest.fixture(scope="session")
def second_dev_cluster(prefect_server: str) -> Iterator[DevClusterHandle]:
    """A second, independent dev cluster `test-b`, for tests that need two at once."""
    handle = _start("test-b", prefect_server)
    try:
        yield handle
    finally:
        manager.down(handle.name, wipe=True)


# What pins a pod to the real node (and its image, imported by `up --real-node`). Not needed
# to get there: a cluster with a real node taints its kwok nodes, so an ordinary pod lands on
# the real node; this only says so explicitly (the label stays, the toleration is harmless).
REAL_NODE_POD_SPEC = {
    "nodeSelector": {"ansflow.dev/real-node": "true"},
    "tolerations": [{"key": "ansflow.dev/real-node", "operator": "Exists",
                     "effect": "NoSchedule"}],
}
BUSYBOX_IMAGE = "localhost/ansflow/busybox:1"
# What a pod needs to land on a kwok node of a cluster with a real node (scale tests).
KWOK_POD_SPEC = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists",
                     "effect": "NoSchedule"}],
}


@pytest.fixture(scope="session")
def real_node_cluster(prefect_server: str, docker_env) -> Iterator[DevClusterHandle]:
    """A dev cluster `test-rn` with one real node (kubelet + containerd: real containers)
    that pulls from the set-up's anonymous registry; its block `test-rn` saved on the
    Prefect server."""
    handle = _start("test-rn", prefect_server, real_node=True,
                    registries=[docker_env.registry])
    try:
        yield handle
    finally:
        manager.down(handle.name, wipe=True)
