"""scripts/build-worker-image.sh: the image a flow run starts in (Debian from mmdebstrap,
Python 3.11, git, the project's wheel with the locked dependencies), pushed to the set-up's
registry under the project's version and the lock's hash, and run on the dev cluster's real
node (pulled from that registry)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client as k8s
from polling import until

from ansflow.devcluster import realnode

pytestmark = pytest.mark.k8s
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-worker-image.sh"


@pytest.fixture(scope="module")
def worker_image(docker_env) -> str:
    built = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=2400)
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip()


def test_the_tag_is_the_version_and_the_locks_hash_and_a_second_build_is_skipped(
        worker_image, docker_env):
    version = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(),
                        re.MULTILINE)[1]
    lock = hashlib.sha256((ROOT / "requirements.lock").read_bytes()).hexdigest()[:12]
    assert worker_image == f"{docker_env.registry}/ansflow/worker:{version}-{lock}"
    started = time.monotonic()
    again = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.strip() == worker_image
    assert "is in the registry" in again.stderr and time.monotonic() - started < 30


@pytest.mark.parametrize("registry", [
    "example.com:5000", "10.0.0.1:5000", "127.0.0.1:5000;x", "127.0.0.1:5000/../x",
    "127.0.0.1:$(id)", "localhost:5000\nx", "127.0.0.1:" + "9" * 5000, "127.0.0.1"])
def test_a_registry_off_loopback_is_refused(registry):
    done = subprocess.run(["bash", str(SCRIPT), "--ref"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin",
                                           "ANSFLOW_WORKER_REGISTRY": registry})
    assert done.returncode == 2 and "loopback" in done.stderr


def test_the_worker_image_runs_the_pipeline_module_on_the_real_node(real_node_cluster,
                                                                     worker_image):
    ns = real_node_cluster.namespace("worker")
    with real_node_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "worker"},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": worker_image, "command": ["sh", "-c", (
                    "python -c 'import sys, ansflow.flows.pipeline as p; "
                    "print(sys.version.split()[0], p.__file__)' && git --version")]}]}})

        def ended():
            for cs in core.read_namespaced_pod("worker", ns).status.container_statuses or []:
                if cs.state and cs.state.terminated:
                    return cs.state.terminated
            return None

        state = until(ended, 600, "the worker image's container to end (a first pull)")
        log = core.read_namespaced_pod_log("worker", ns)
        assert core.read_namespaced_pod("worker", ns).spec.node_name == realnode.NODE_NAME
    assert state.exit_code == 0, log
    first, second = log.splitlines()[:2]
    assert first.startswith("3.11.") and "/opt/ansflow/lib/python3.11/site-packages/ansflow/" \
        "flows/pipeline.py" in first, log
    assert second.startswith("git version"), log
