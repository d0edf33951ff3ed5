"""What a pod on the dev cluster's real node reaches: the API server in-cluster (the
`kubernetes` Service, cluster DNS, its service-account token and CA), another pod's Service by
name (CoreDNS + kube-proxy), and a host service (the suite's Prefect server) through a Service
whose endpoint is the node's bridge address. No pod here has a dev-cluster-specific selector:
the kwok nodes are tainted, so they land on the real node."""

from __future__ import annotations

import ipaddress
import re
import subprocess
import urllib.parse
import uuid

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, KWOK_POD_SPEC
from kubernetes import client as k8s
from polling import until

from ansflow.devcluster import manager, realnode, realnode_net
from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.images import NETPROBE_IMAGE
from ansflow.devcluster.state import load_state

pytestmark = pytest.mark.k8s


def run_pod(api, ns: str, name: str, image: str, command: list[str], timeout: float = 90,
            **spec) -> tuple[str, dict]:
    """Create a pod with no selector, wait until its container ends; (log, pod)."""
    core = k8s.CoreV1Api(api)
    core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"t": name}},
        "spec": {"restartPolicy": "Never", **spec, "containers": [
            {"name": "main", "image": image, "command": command}]}})

    def ended():
        status = core.read_namespaced_pod(name, ns).status
        for cs in status.container_statuses or []:
            if cs.state and cs.state.terminated:
                return cs.state.terminated
        return None

    until(ended, timeout, f"pod {name} to end")
    pod = api.sanitize_for_serialization(core.read_namespaced_pod(name, ns))
    return core.read_namespaced_pod_log(name, ns), pod


def require_services(handle) -> None:
    """Skip when this node runs without kube-proxy: another cluster's real node (another test
    run on this machine) runs the machine's one kube-proxy (realnode_net: fixed chain names)."""
    node = load_state(handle.paths).real_node
    if not node.get("services", True):
        pytest.skip(f"{realnode_net.kube_proxy_owner()}: {realnode_net.NO_SERVICES}")


def statuses(log: str) -> list[int]:
    return [int(line.split()[1]) for line in log.splitlines() if line.startswith("status ")]


def test_kwok_nodes_are_tainted_and_a_plain_pod_lands_on_the_real_node(real_node_cluster):
    with real_node_cluster.client() as api:
        nodes = {n.metadata.name: n for n in k8s.CoreV1Api(api).list_node().items}
    kwok = [n for name, n in nodes.items() if name.startswith("kwok-node-")]
    assert kwok and all(
        any(t.key == "kwok.x-k8s.io/node" and t.effect == "NoSchedule"
            for t in n.spec.taints or []) for n in kwok)
    assert not nodes[realnode.NODE_NAME].spec.taints  # the real node has none
    ns = real_node_cluster.namespace("net")
    with real_node_cluster.client() as api:
        log, pod = run_pod(api, ns, "plain", BUSYBOX_IMAGE, ["cat", "/etc/resolv.conf"])
        assert pod["spec"]["nodeName"] == realnode.NODE_NAME
        services = load_state(real_node_cluster.paths).real_node.get("services", True)
        nameserver = "10.0.0.10" if services else realnode_net.gateway(
            realnode.NodeSettings.from_dict(load_state(real_node_cluster.paths).real_node))
        assert f"nameserver {nameserver}" in log and f"search {ns}.svc.cluster.local" in log
        # A scale test's pods tolerate the taint and select the kwok nodes: kwok runs them.
        k8s.CoreV1Api(api).create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sim"},
            "spec": {**KWOK_POD_SPEC, "containers": [{"name": "c", "image": "fake"}]}})
        until(lambda: k8s.CoreV1Api(api).read_namespaced_pod("sim", ns).status.phase
              == "Running", 60, "the kwok pod Running")
        assert k8s.CoreV1Api(api).read_namespaced_pod("sim", ns).spec.node_name in [
            n.metadata.name for n in kwok]


def test_kwok_nodes_are_not_tainted_without_a_real_node(dev_cluster):
    with dev_cluster.client() as api:
        nodes = k8s.CoreV1Api(api).list_node().items
    assert nodes and all(not n.spec.taints for n in nodes)


def test_a_pod_calls_the_api_server_in_cluster_with_its_service_account(real_node_cluster):
    require_services(real_node_cluster)
    ns = real_node_cluster.namespace("net")
    with real_node_cluster.client() as api:
        log, pod = run_pod(api, ns, "incluster", NETPROBE_IMAGE, ["sh", "-c", (
            "nslookup kubernetes.default.svc.cluster.local 2>&1; "
            "netprobe -sa https://kubernetes.default.svc/api; "
            "netprobe -in-cluster /api; "
            "netprobe -sa https://kubernetes.default.svc/api/v1/namespaces/kube-system/secrets;"
            " netprobe https://kubernetes.default.svc/api; "
            "netprobe -sa https://kubernetes.default.svc:443/version")])
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    assert re.search(r"^Address( 1)?:\s+10\.0\.0\.1$", log, re.MULTILINE), log
    # /api with the token and the CA, by DNS name and as client-go's in-cluster config does
    # (KUBERNETES_SERVICE_HOST/PORT); a request its role does not allow is refused as the
    # service account (not anonymous: that would be 401).
    got = statuses(log)
    assert got[:3] == [200, 200, 403], log
    assert f"system:serviceaccount:{ns}:default" in log
    # Without the CA the server's certificate is not trusted: no answer at all.
    assert "certificate signed by unknown authority" in log
    assert got[3:] == [200] and '"gitVersion"' in log


def test_a_pod_reaches_another_pods_service_by_name(real_node_cluster):
    require_services(real_node_cluster)
    ns = real_node_cluster.namespace("net")
    marker = uuid.uuid4().hex
    with real_node_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "web", "image": BUSYBOX_IMAGE, "command": ["sh", "-c", (
                    f"mkdir -p /www && echo {marker} > /www/index.html && "
                    "exec httpd -f -p 8080 -h /www")],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}})
        core.create_namespaced_service(ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"port": 80, "targetPort": 8080}]}})
        until(lambda: any(c.type == "Ready" and c.status == "True" for c in (
            core.read_namespaced_pod("web", ns).status.conditions or [])), 60, "web Ready")
        service_ip = core.read_namespaced_service("web", ns).spec.cluster_ip
        assert ipaddress.ip_address(service_ip) in ipaddress.ip_network("10.0.0.0/24")
        # netprobe, not busybox's wget: Debian's static busybox's wget crashes (static
        # glibc's resolver, even for an address).
        log, _ = run_pod(api, ns, "client", NETPROBE_IMAGE, ["sh", "-c", (
            "netprobe http://web/ && "
            f"netprobe http://web.{ns}.svc.cluster.local/ && "
            f"netprobe http://{service_ip}/ && "
            "{ netprobe http://no-such-service/ || echo unresolved; }")])
    assert log.split()[:9] == ["status", "200", marker] * 3, log
    # Not a cluster name, and nothing else is served: the lookup fails (REFUSED upstream).
    assert "lookup no-such-service" in log and log.split()[-1] == "unresolved", log


def test_a_pod_reaches_the_prefect_server_through_a_service(real_node_cluster,
                                                            prefect_server):
    require_services(real_node_cluster)
    port = urllib.parse.urlsplit(prefect_server).port
    assert port
    ns = real_node_cluster.namespace("net")
    where = manager.expose(real_node_cluster.name, "prefect", port, namespace=ns)
    assert where == f"prefect.{ns}.svc.cluster.local:{port}"
    with real_node_cluster.client() as api:
        log, _ = run_pod(api, ns, "health", NETPROBE_IMAGE, [
            "netprobe", f"http://prefect:{port}/api/health"])
    assert statuses(log) == [200] and "true" in log, log
    # Bound on the node's bridge address only (and the host's loopback, by the server).
    state = load_state(real_node_cluster.paths)
    gateway = realnode_net.gateway(realnode.NodeSettings.from_dict(state.real_node))
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                               text=True, check=True).stdout
    local = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert local == {"127.0.0.1", gateway}, listening
    # Kept in the state: the next start exposes it again.
    assert {"service": "prefect", "namespace": ns, "port": port} in state.real_node["exposed"]


@pytest.mark.parametrize("service, namespace, port", [
    ("../x", "default", 4200), ("Prefect", "default", 4200), ("a;rm -rf /", "default", 4200),
    ("{{ x }}", "default", 4200), ("a\x00b", "default", 4200), ("x" * 300, "default", 4200),
    ("ok", "../kube-system", 4200), ("ok", "ns\n", 4200), ("ok", "default", 0),
    ("ok", "default", 70000), ("ok", "default", -1),
])
def test_expose_refuses_hostile_names_and_ports(real_node_cluster, service, namespace, port):
    before = load_state(real_node_cluster.paths).real_node["exposed"]
    with pytest.raises(DevClusterError) as refused:
        manager.expose(real_node_cluster.name, service, port, namespace=namespace)
    assert len(str(refused.value)) < 600
    assert load_state(real_node_cluster.paths).real_node["exposed"] == before


def test_expose_refuses_the_api_servers_port_and_a_cluster_without_a_real_node(
        real_node_cluster, dev_cluster):
    api_port = load_state(real_node_cluster.paths).ports["kube-apiserver"]
    with pytest.raises(DevClusterError, match="`kubernetes` Service"):
        manager.expose(real_node_cluster.name, "api", api_port)
    with pytest.raises(DevClusterError, match="real node"):
        manager.expose(dev_cluster.name, "prefect", 4200)


@pytest.mark.parametrize("args", [
    ["../x", "4200"], ["a;rm -rf /", "4200"], ["{{ x }}", "4200"], ["ok", "0"],
    ["ok", "4200", "--namespace", "../kube-system"], ["\udcff", "4200"],
])
def test_the_expose_command_refuses_hostile_values_in_one_line(real_node_cluster, args):
    from typer.testing import CliRunner

    from ansflow.cli.app import app

    result = CliRunner().invoke(app, ["dev-cluster", "expose", *args, "--name",
                                      real_node_cluster.name])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.output  # not a crash
    assert "Traceback" not in result.output
    assert len(result.output) < 1000
