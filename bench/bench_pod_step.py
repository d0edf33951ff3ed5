"""A step in a pod (`runs_on: kubernetes`, `echo ok`) against `kubectl run --rm -i
--restart=Never` of the same image and command, on the dev cluster's real node, wall time
per run; the rounds alternate the two and the ratio is the median of the rounds' own ratios.

The step is the command executor with its workspace copied in (a one-file workspace), its
Secret, its log and its exit code from the container's terminated state; kubectl attaches to
the pod, waits for its completion (for the exit code) and deletes it. Both use the same
kubeconfig, image, node selector and toleration. Needs root and the set-up's binaries (one
cluster under a temporary ANSFLOW_HOME). Not a test: figures swing on shared machines.

    python bench/bench_pod_step.py            # 7 rounds
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "localhost/ansflow/busybox:1"
SELECT = {"nodeSelector": {"ansflow.dev/real-node": "true"},
          "tolerations": [{"key": "ansflow.dev/real-node", "operator": "Exists",
                           "effect": "NoSchedule"}]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ansflow-bench-pod-"))
    env = {**os.environ, "ANSFLOW_HOME": str(home)}
    cli = [sys.executable, "-m", "ansflow.cli", "dev-cluster"]
    try:
        subprocess.run([*cli, "up", "--name", "benchpod", "--no-block", "--real-node"],
                       env=env, check=True, capture_output=True)
        os.environ["ANSFLOW_HOME"] = str(home)
        sys.path.insert(0, str(ROOT))
        rows = measure(home, args.rounds)
    finally:
        subprocess.run([*cli, "down", "--name", "benchpod", "--wipe"], env=env,
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    ours = statistics.median(r[0] for r in rows)
    theirs = statistics.median(r[1] for r in rows)
    ratio = statistics.median(r[0] / r[1] for r in rows)
    print(f"rounds: {args.rounds}")
    print("| measure | ansflow | kubectl | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| pod step `echo ok` vs `kubectl run --rm -i --restart=Never` (wall) | "
          f"{ours:.2f} s | {theirs:.2f} s | {ratio:.2f}x | <= 1.0x |")
    print("rounds (ansflow s / kubectl s): "
          + ", ".join(f"{a:.2f}/{b:.2f}" for a, b in rows))


def measure(home: Path, rounds: int) -> list[tuple[float, float]]:
    from kubernetes import client as k8s

    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.devcluster.state import ClusterPaths, load_state
    from ansflow.runtime.base import StepContext
    from ansflow.spec.steps import CommandConfig
    from ansflow.tasks.command import execute_command

    state = load_state(ClusterPaths.for_name("benchpod"))
    kubeconfig = home / "clusters" / "benchpod" / "kubeconfig"
    kubectl = [str(Path(state.binaries) / "kubectl"), "--kubeconfig", str(kubeconfig)]
    block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
    with block.get_client() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "bench"}})
    workspace = Path(tempfile.mkdtemp(prefix="ansflow-bench-ws-"))
    (workspace / "pipeline.yaml").write_text("steps: []\n")
    logger = logging.getLogger("bench.step")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    config = CommandConfig(command="echo ok", image=IMAGE, cluster="bench", namespace="bench",
                           node_selector=SELECT["nodeSelector"],
                           tolerations=SELECT["tolerations"])
    overrides = json.dumps({"apiVersion": "v1", "spec": SELECT})

    def step() -> float:
        ctx = StepContext(pipeline="bench", run_id=uuid.uuid4().hex, build_number=1,
                          step_id="echo", step_name="echo", stage="s", step_type="command",
                          workspace=str(workspace), runs_on="kubernetes",
                          blocks={"cluster": block}, logger=logger)
        began = time.perf_counter()
        execute_command(ctx, config)
        return time.perf_counter() - began

    def kubectl_run() -> float:
        name = f"k-{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        out = subprocess.run([*kubectl, "run", name, "-n", "bench", f"--image={IMAGE}",
                              "--rm", "-i", "--restart=Never", f"--overrides={overrides}",
                              "--", "sh", "-c", "echo ok"],
                             capture_output=True, text=True, check=True)
        took = time.perf_counter() - began
        assert "ok" in out.stdout, out
        return took

    step()  # warm both paths once (imports, the image's first use)
    kubectl_run()
    rows = []
    for i in range(rounds):
        if i % 2:
            theirs, ours = kubectl_run(), step()
        else:
            ours, theirs = step(), kubectl_run()
        rows.append((ours, theirs))
    shutil.rmtree(workspace, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
