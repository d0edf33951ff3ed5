"""Pure parts of the real node's network services (kube-proxy's and CoreDNS's configs, the
Services' objects, the kwok taint) and the node proxy as a real process on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from ansflow.devcluster import components as comp
from ansflow.devcluster import realnode, realnode_net
from ansflow.devcluster.node_proxy import read_config
from ansflow.devcluster.pki import Pki
from ansflow.devcluster.state import ClusterPaths

NODE = realnode.NodeSettings(key="abcd1234", port=1, healthz=2, bridge="ansfabcd1234",
                             subnet="10.250.7.0/24", registries=[], proxy_healthz=3,
                             proxy_metrics=4, dns_health=5, dns_ready=6,
                             exposed=[{"service": "prefect", "namespace": "ci", "port": 4200}])


def test_kube_proxy_listens_on_loopback_and_the_bridge_only_and_changes_no_sysctl(tmp_path):
    doc = yaml.safe_load(realnode_net.kube_proxy_config(ClusterPaths(tmp_path / "c"), NODE))
    assert doc["mode"] == "iptables" and doc["hostnameOverride"] == realnode.NODE_NAME
    assert doc["bindAddress"] == "10.250.7.1" and doc["clusterCIDR"] == "10.250.7.0/24"
    assert doc["healthzBindAddress"] == "127.0.0.1:3"
    assert doc["metricsBindAddress"] == "127.0.0.1:4"
    assert doc["nodePortAddresses"] == ["10.250.7.1/32"]
    assert doc["iptables"]["masqueradeAll"] is True
    assert doc["iptables"]["localhostNodePorts"] is False  # no route_localnet sysctl
    assert doc["conntrack"]["maxPerCore"] == 0 and doc["conntrack"]["min"] == 0


def test_coredns_binds_the_bridge_address_and_serves_the_cluster_domain(tmp_path):
    text = realnode_net.corefile(ClusterPaths(tmp_path / "c"), NODE)
    assert "bind 10.250.7.1\n" in text and "health 127.0.0.1:5" in text
    assert "ready 127.0.0.1:6" in text and "kubernetes cluster.local in-addr.arpa" in text
    assert "forward" not in text  # nothing outside can be reached from here


def test_the_node_proxy_forwards_the_api_server_and_the_exposed_ports():
    assert json.loads(realnode_net.node_proxy_config(NODE, 6443)) == {
        "address": "10.250.7.1", "ports": [4200, 6443]}


def test_the_services_objects_point_at_the_bridge_address():
    objects = {(o["kind"], o["metadata"]["name"]): o
               for _, o in realnode_net.cluster_objects(NODE, 6443)}
    api = objects[("EndpointSlice", "kubernetes-ansflow")]
    assert api["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert api["endpoints"][0]["addresses"] == ["10.250.7.1"]
    assert api["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]
    dns = objects[("Service", "kube-dns")]
    assert dns["spec"]["clusterIP"] == "10.0.0.10" and "selector" not in dns["spec"]
    exposed = {(o["kind"], o["metadata"]["namespace"]): o
               for _, o in realnode_net.exposed_objects(NODE, "prefect", "ci", 4200)}
    assert exposed[("Service", "ci")]["spec"]["ports"][0]["port"] == 4200
    assert exposed[("EndpointSlice", "ci")]["endpoints"][0]["addresses"] == ["10.250.7.1"]


def test_kubelet_points_pods_at_cluster_dns_and_registers_without_a_taint(tmp_path):
    paths = ClusterPaths(tmp_path / "c")
    kubelet = realnode.kubelet_config(paths, NODE, Pki(tmp_path))
    assert 'clusterDNS: ["10.0.0.10"]' in kubelet and "clusterDomain: cluster.local" in kubelet
    assert "registerWithTaints" not in kubelet
    alone = realnode.NodeSettings.from_dict({**NODE.to_dict(), "services": False})
    # Without kube-proxy (another cluster's runs) the Service IP is not routed: CoreDNS direct.
    assert 'clusterDNS: ["10.250.7.1"]' in realnode.kubelet_config(paths, alone, Pki(tmp_path))


def test_settings_of_an_older_state_read_with_defaults():
    old = {"key": "abcd1234", "port": 1, "healthz": 2, "bridge": "b", "subnet": "10.250.7.0/24"}
    node = realnode.NodeSettings.from_dict(old)
    assert node.exposed == [] and node.services and node.proxy_healthz == 0
    assert realnode.NodeSettings.from_dict(NODE.to_dict()) == NODE


def test_kwok_nodes_are_tainted_only_when_asked():
    assert "spec" not in comp.node_manifest(0)
    assert comp.node_manifest(1, tainted=True)["spec"]["taints"] == [
        {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]


@pytest.mark.parametrize("bad", ['{"ports": [1]}', '{"address": "127.0.0.2", "ports": [0]}',
                                 '{"address": "127.0.0.2", "ports": ["1"]}',
                                 '{"address": "127.0.0.2", "ports": [true]}', "[]",
                                 '{"address": "127.0.0.2", "ports": [70000]}'])
def test_node_proxy_config_is_checked(tmp_path, bad):
    path = tmp_path / "c.json"
    path.write_text(bad)
    with pytest.raises(ValueError):
        read_config(path)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _get(address: str, port: int, path: str) -> bytes:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def _listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((address, port)) == 0


def test_node_proxy_forwards_a_loopback_port_to_another_address_and_reloads(tmp_path):
    """As a process: listens on the configured address only (127.0.0.2 here, the bridge's
    on a node), forwards to 127.0.0.1 on the same port; SIGHUP adds and drops ports."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Hello) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    first, second = (s.server_address[1] for s in servers)
    config = tmp_path / "proxy.json"
    config.write_text(json.dumps({"address": "127.0.0.2", "ports": [first]}))
    proxy = subprocess.Popen([sys.executable, "-m", "ansflow.devcluster.node_proxy",
                              str(config)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not _listening("127.0.0.2", first) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get("127.0.0.2", first, "/a%20b").endswith(b"hello /a%20b")
        assert not _listening("127.0.0.3", first)  # that address only
        assert not _listening("127.0.0.2", second)
        config.write_text(json.dumps({"address": "127.0.0.2", "ports": [second]}))
        proxy.send_signal(1)  # SIGHUP
        deadline = time.monotonic() + 10
        while not _listening("127.0.0.2", second) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get("127.0.0.2", second, "/x").endswith(b"hello /x")
        assert not _listening("127.0.0.2", first)
        config.write_text("{not json")  # a broken file keeps what works
        proxy.send_signal(1)
        time.sleep(0.5)
        assert _get("127.0.0.2", second, "/y").endswith(b"hello /y")
    finally:
        proxy.terminate()
        _, err = proxy.communicate(timeout=10)
        for server in servers:
            server.shutdown()
    assert proxy.returncode == 0 and "cannot read" in err
