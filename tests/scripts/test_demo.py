"""scripts/demo.sh, the README's main command, run as a new user runs it: its own set-up
check, Prefect's ephemeral server on a fresh Prefect home (no PREFECT_API_URL), the local
Docker engine and registry, and a dev cluster with a real node (the suite's, so no second one
is started)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.docker, pytest.mark.k8s]


def test_demo_script_runs_the_hybrid_demo_on_one_ephemeral_server(tmp_path, real_node_cluster,
                                                                   docker_env, sshd):
    dev_cluster = real_node_cluster
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(ANSFLOW_SSHD_PORT=str(sshd.port), ANSFLOW_SSHD_USER=sshd.user,
               ANSFLOW_SSHD_KEY=str(sshd.key), ANSFLOW_SSHD_HOST_KEY_PUB=str(sshd.host_key_pub))
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), ANSFLOW_DEMO_CLUSTER=dev_cluster.name)
    namespace = dev_cluster.namespace("demo-sh")
    out = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--json",
                          "--var", f"namespace={namespace}"],
                         env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "Traceback" not in out.stderr
    # One temporary server for the whole demo (Prefect says when it stops one).
    assert out.stderr.count("Stopping temporary server") == 1, out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["state"] == "completed", summary["message"]
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["push"]["state"] == "completed"  # the set-up's registry was passed
    assert steps["deploy"]["outputs"]["revision"] == "1"
    assert steps["deploy_kwok"]["state"] == "skipped"
    # The pushed image runs on the real node (pulled from the local registry).
    from kubernetes import client as k8s

    from ansflow.devcluster import realnode

    with dev_cluster.client() as api:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(namespace, label_selector="app=hello-app")
    assert pods.items and {p.spec.node_name for p in pods.items} == {realnode.NODE_NAME}
    # A step in a pod on the real node, with the workspace copied in.
    assert steps["in_pod"]["state"] == "completed", steps["in_pod"]
    assert steps["in_pod"]["outputs"]["said"].startswith("hello from hello-app build ")
    assert steps["integration"]["state"] == "completed"
    # --dev-host saved the private sshd as the block of the SSH step, on the same server.
    assert steps["install"]["state"] == "completed", steps["install"]
    assert steps["install"]["outputs"]["said"].startswith("hello from hello-app build ")
