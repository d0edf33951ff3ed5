"""The dev cluster's real node (`up --real-node`: kubelet, containerd, runc, CNI): real
containers, exit codes, logs and exec through the API server, CrashLoopBackOff and image
pull failures as a real cluster shows them, and `down` leaving nothing behind."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, REAL_NODE_POD_SPEC
from kubernetes import client as k8s
from polling import until

from ansflow.devcluster import manager, realnode, realnode_net
from ansflow.devcluster.state import ClusterPaths, load_state
from ansflow.errors import StepFailed
from ansflow.spec.steps import K8sExecConfig, K8sLogsConfig, K8sWaitConfig
from ansflow.tasks.k8s_exec import execute_k8s_exec
from ansflow.tasks.k8s_logs import execute_k8s_logs
from ansflow.tasks.k8s_wait import execute_k8s_wait

pytestmark = pytest.mark.k8s


def pod(name: str, command: str, image: str = BUSYBOX_IMAGE, restart: str = "Never") -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {**REAL_NODE_POD_SPEC, "restartPolicy": restart, "containers": [
                {"name": "main", "image": image, "command": ["sh", "-c", command]}]}}


def deployment(name: str, command: str, image: str = BUSYBOX_IMAGE) -> dict:
    """One replica; ready only once it wrote /tmp/ready (without a readiness probe a
    container that crashes a moment after starting counts as ready in between, for
    `kubectl rollout status` as for k8s_wait)."""
    labels = {"app": name}
    probe = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels}, "spec": {**REAL_NODE_POD_SPEC, "containers": [
                    {"name": "main", "image": image, "command": ["sh", "-c", command],
                     "readinessProbe": probe}]}}}}


def container_state(api, ns: str, name: str) -> dict:
    status = k8s.CoreV1Api(api).read_namespaced_pod(name, ns).status
    statuses = status.container_statuses or []
    return api.sanitize_for_serialization(statuses[0].state) if statuses else {}


def test_a_pod_runs_a_real_container_with_its_exit_code_and_logs(real_node_cluster, make_ctx,
                                                                  caplog):
    ns = real_node_cluster.namespace("rn")
    with real_node_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_pod(
            ns, pod("echo", "echo ok from $(hostname); cat /proc/1/cgroup | head -1; exit 3"))
        state = until(lambda: container_state(api, ns, "echo").get("terminated"), 60,
                      "the container to end")
        assert state["exitCode"] == 3 and state["reason"] == "Error"
        placed = k8s.CoreV1Api(api).read_namespaced_pod("echo", ns)
        assert placed.spec.node_name == realnode.NODE_NAME
    result = execute_k8s_logs(make_ctx("k8s_logs"), K8sLogsConfig(
        cluster=real_node_cluster.block_name, namespace=ns, pod="echo"))
    messages = "\n".join(r.getMessage() for r in caplog.records).splitlines()
    assert result.outputs["pods"] == "echo"
    assert "ok from echo" in messages  # the pod's own hostname: a real container
    # Its cgroup is under the node's own root, not the host's.
    assert any(f"/ansflow-{realnode.node_key(real_node_cluster.paths)}/" in m
               for m in messages), messages


def test_k8s_exec_in_a_real_container(real_node_cluster, make_ctx, caplog):
    ns = real_node_cluster.namespace("rn")
    with real_node_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_pod(ns, pod("sleeper", "sleep 600"))
        until(lambda: container_state(api, ns, "sleeper").get("running"), 60, "running")
    target = {"cluster": real_node_cluster.block_name, "namespace": ns, "pod": "sleeper"}
    with pytest.raises(StepFailed) as failed:
        execute_k8s_exec(make_ctx("k8s_exec"), K8sExecConfig(
            **target, command="echo to-out; echo to-err >&2; ls /proc/1/exe >/dev/null; exit 3"))
    assert failed.value.exit_code == 3
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "to-out" in info and "to-err" in warnings and "to-err" not in info
    result = execute_k8s_exec(make_ctx("k8s_exec"), K8sExecConfig(
        **target, command=["sh", "-c", "cat /etc/hostname"]))
    assert result.exit_code == 0 and result.outputs["stdout_tail"] == "sleeper"


def test_k8s_wait_fails_fast_on_a_real_crash_loop_with_its_last_lines(real_node_cluster,
                                                                       make_ctx):
    ns = real_node_cluster.namespace("rn")
    with real_node_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, deployment(
            "crash", "echo starting up; echo 'config missing: /etc/app.conf' >&2; exit 7"))
    started = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        execute_k8s_wait(make_ctx("k8s_wait"), K8sWaitConfig(
            cluster=real_node_cluster.block_name, namespace=ns, resource_type="deployment",
            resource_name="crash", timeout=180))
    message = str(failed.value)
    assert "CrashLoopBackOff" in message and "exited with code 7" in message, message
    assert "config missing: /etc/app.conf" in message and "starting up" in message
    assert time.monotonic() - started < 90


def test_an_image_that_does_not_exist_fails_fast_with_the_reason(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("rn")
    with real_node_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, deployment(
            "ghost", "true", image="localhost/ansflow/does-not-exist:1"))
    started = time.monotonic()
    with pytest.raises(StepFailed, match=r"(ErrImagePull|ImagePullBackOff).*does-not-exist"):
        execute_k8s_wait(make_ctx("k8s_wait"), K8sWaitConfig(
            cluster=real_node_cluster.block_name, namespace=ns, resource_type="deployment",
            resource_name="ghost", timeout=180))
    assert time.monotonic() - started < 60


def test_an_image_from_the_local_docker_engine_through_the_registry(
        real_node_cluster, docker_api, docker_env, base_image):
    """An image built in the local Docker engine and pushed to the local registry runs on
    the real node (its containerd pulls from the registry over loopback)."""
    ref = f"{docker_env.registry}/ansflow-test/real-node:{uuid.uuid4().hex[:8]}"
    repo, tag = ref.rsplit(":", 1)
    docker_api.tag(base_image, repo, tag)
    for event in docker_api.push(repo, tag, stream=True, decode=True):
        assert "error" not in event, event
    ns = real_node_cluster.namespace("rn")
    with real_node_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_pod(ns, pod("pulled", "echo pulled", image=ref))
        state = until(lambda: container_state(api, ns, "pulled").get("terminated"), 90,
                      "the pulled image's container to end")
        assert state["exitCode"] == 0
        assert k8s.CoreV1Api(api).read_namespaced_pod_log("pulled", ns) == "pulled\n"


def _iptables_rules() -> str:
    return "".join(subprocess.run([tool], capture_output=True, text=True).stdout
                   for tool in ("iptables-save", "ip6tables-save"))


def _node_leftovers(paths: ClusterPaths, node: realnode.NodeSettings, marker: str) -> list[str]:
    left = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline or str(realnode.socket_path(node.key)).encode() \
                    in cmdline or str(realnode.node_dir(paths)).encode() in cmdline:
                left.append(f"process {entry.name}: {cmdline[:120]!r}")
    with open("/proc/self/mountinfo") as fh:
        left += [f"mount {line.split()[4]}" for line in fh
                 if str(realnode.node_dir(paths)) in line.split()[4]
                 or str(realnode.runtime_dir(node.key)) in line.split()[4]]
    if subprocess.run(["ip", "link", "show", node.bridge], capture_output=True).returncode == 0:
        left.append(f"interface {node.bridge}")
    left += [f"cgroup {h / node.cgroup}" for h in realnode.hierarchies()
             if (h / node.cgroup).exists()]
    left += [f"cni result {p}" for p in Path("/var/lib/cni/results").glob(f"{node.network}-*")]
    if realnode.runtime_dir(node.key).exists():
        left.append(f"directory {realnode.runtime_dir(node.key)}")
    # kube-proxy's rules for this node (its pod subnet, its bridge address as an endpoint),
    # and anything still listening on the bridge address (CoreDNS, the node proxy).
    gateway = realnode_net.gateway(node)
    net = node.subnet.rsplit(".", 1)[0] + "."
    left += [f"iptables rule {line}" for line in _iptables_rules().splitlines()
             if node.subnet in line or net in line or node.bridge in line]
    sockets = subprocess.run(["ss", "-Hltun"], capture_output=True, text=True).stdout
    left += [f"socket {line}" for line in sockets.splitlines() if f"{gateway}:" in line]
    return left


def test_second_up_is_a_no_op_and_down_leaves_nothing_behind(real_node_cluster):
    """Also kube-proxy's rules: one kube-proxy runs per machine, so the suite's real node
    hands its network services over for this test and gets them back at the end."""
    session = real_node_cluster.paths
    session_state = load_state(session)
    realnode_net.stop(session, session_state, str(Path(session_state.binaries) / "kube-proxy"))
    # Another ansflow's cluster on this machine (not this suite's) may own kube-proxy.
    services = realnode_net.kube_proxy_owner() is None
    name = f"rn-{uuid.uuid4().hex[:6]}"
    paths = ClusterPaths.for_name(name)
    marker = f"ansflow-down-{uuid.uuid4().hex[:8]}"
    components = ["kubelet", "containerd", "coredns", "node-proxy"] + (
        ["kube-proxy"] if services else [])
    try:
        first = manager.up(name, nodes=1, real_node=True)
        node = realnode.NodeSettings.from_dict(first.state.real_node)
        assert node.services == services
        pids = {c: first.state.processes[c].pid for c in components}
        _, rows = manager.status(name)
        health = {r.name: r.healthy for r in rows}
        assert all(health[c] for c in components), health
        from ansflow.blocks.kubernetes import KubernetesCluster

        with KubernetesCluster.from_kubeconfig_file(paths.kubeconfig).get_client() as api:
            k8s.CoreV1Api(api).create_namespaced_pod("default", pod(
                "busy", f"sleep 600; : {marker}"))
            k8s.CoreV1Api(api).create_namespaced_service("default", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "busy"},
                "spec": {"selector": {"app": "busy"}, "ports": [{"port": 80}]}})
            until(lambda: container_state(api, "default", "busy").get("running"), 60,
                  "running")
        assert any(marker.encode() in (p / "cmdline").read_bytes()
                   for p in Path("/proc").iterdir() if p.name.isdigit()
                   and (p / "cmdline").exists())
        if services:
            until(lambda: "default/busy" in _iptables_rules(), 30, "the Service's rules")
        again = manager.up(name, nodes=1, real_node=True)
        assert again.already_running
        assert {c: again.state.processes[c].pid for c in pids} == pids
        stopped = manager.down(name)
        assert set(components) <= set(stopped)
        assert _node_leftovers(paths, node, marker) == []
        if services:
            assert "KUBE-" not in _iptables_rules()
            assert realnode_net.kube_proxy_owner() is None
        state = load_state(paths)
        assert state is not None and state.real_node  # the next `up` brings the node back
    finally:
        if paths.root.exists():
            manager.down(name, wipe=True)
        manager.up(real_node_cluster.name, nodes=1, real_node=True)  # the suite's, whole again
    assert not paths.root.exists()
    assert realnode.running(load_state(session))


def test_real_node_configs_are_what_this_machine_needs(tmp_path):
    """The settings found by running it here: cgroup v1 allowed, no lowered OOM scores,
    imported images never re-verified, pods under the node's own cgroup root."""
    from ansflow.devcluster.pki import Pki

    paths = ClusterPaths(tmp_path / "c")
    node = realnode.NodeSettings(key="abcd1234", port=1, healthz=2, bridge="ansfabcd1234",
                                 subnet="10.250.7.0/24", registries=["127.0.0.1:5000"])
    kubelet = realnode.kubelet_config(paths, node, Pki(tmp_path))
    for line in ("failCgroupV1: false", "oomScoreAdj: 0", "cgroupRoot: /ansflow-abcd1234",
                 "imagePullCredentialsVerificationPolicy: NeverVerify", "readOnlyPort: 0",
                 "anonymous: {enabled: false}"):
        assert line in kubelet
    containerd = realnode.containerd_config(paths, node)
    assert "restrict_oom_score_adj = true" in containerd
    assert f'address = "{realnode.socket_path("abcd1234")}"' in containerd
    assert '"gateway": "10.250.7.1"' in realnode.cni_config(paths, node)
    assert len(str(realnode.socket_path("abcd1234"))) < 100  # sun_path holds 108 bytes
    assert node == realnode.NodeSettings.from_dict(node.to_dict())
