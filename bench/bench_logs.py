"""k8s_logs of a pod with 100,000 lines vs `kubectl logs` of the same pod.

    python bench/bench_logs.py [--reps 3] [--lines 100000]

Starts a throw-away dev cluster (temp ANSFLOW_HOME, cached binaries) whose kwok serves one
CRI-format file as every container's log, writes N lines to it, runs a one-replica
Deployment and reads its pod's log
1. with k8s_logs (the executor, as a step runs it, every line emitted to a log handler that
   writes to a discarded stdout), in a child process: the time of the call and the child's
   peak RSS before and after it;
2. with `kubectl logs POD` (stdout discarded): its wall time and peak RSS.
Both read the whole log. The peak-RSS growth of k8s_logs is measured at N/10 lines too: a
bounded reader grows no more at N than at N/10. Prints a table; everything it starts is
stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "talker"

# Runs in the child: argv = kubeconfig, namespace, pod, the fd its figures go to.
_CHILD = r"""
import json, logging, os, resource, sys, time
from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.spec.steps import K8sLogsConfig
from ansflow.runtime.base import StepContext
from ansflow.tasks.k8s_logs import execute_k8s_logs

kubeconfig, ns, pod, fd = sys.argv[1:5]
block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
log = logging.getLogger("bench.logs")
handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(logging.Formatter("%(message)s"))
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
ctx = StepContext(pipeline="bench", run_id="bench", build_number=0, step_id="logs",
                  step_name="logs", stage="", step_type="k8s_logs", workspace=os.getcwd(),
                  blocks={"cluster": block}, logger=log, max_log_bytes=1 << 40)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.monotonic()
result = execute_k8s_logs(ctx, K8sLogsConfig(cluster="bench", namespace=ns, pod=pod))
took = time.monotonic() - t0
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stdout.flush()
os.write(int(fd), json.dumps({"seconds": took, "rss_before_kb": before, "rss_after_kb": after,
                        "lines": result.outputs.get("lines")}).encode())
"""


def write_log(path: Path, lines: int) -> None:
    from ansflow.devcluster.components import cri_log_line

    with path.open("w") as fh:
        for i in range(lines):
            fh.write(cri_log_line(f"line {i:06d} of the benchmark log, some text to make it "
                                  "a realistic length"))


def ours(kubeconfig: Path, ns: str, pod: str) -> dict:
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(kubeconfig), ns, pod,
                             str(write)], stdout=subprocess.DEVNULL, pass_fds=(write,))
    os.close(write)
    with os.fdopen(read) as fh:
        data = fh.read()
    if proc.wait() != 0 or not data:
        raise SystemExit("the k8s_logs child failed")
    return json.loads(data)


def theirs(kubectl: Path, kubeconfig: Path, ns: str, pod: str) -> tuple[float, int]:
    t0 = time.monotonic()
    proc = subprocess.Popen([str(kubectl), "--kubeconfig", str(kubeconfig), "-n", ns, "logs",
                             pod], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit("kubectl logs failed")
    return took, usage.ru_maxrss


def running_pod(api, ns: str) -> str:
    from kubernetes import client as k8s

    labels = {"app": NAME}
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "main", "image": "example.invalid/app:1"}]}}}})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"app={NAME}").items
        if pods and pods[0].status.phase == "Running":
            return pods[0].metadata.name
        time.sleep(0.1)
    raise SystemExit("the pod never ran")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-logs-"))
    os.environ["ANSFLOW_HOME"] = str(work / "af")
    from ansflow.devcluster import manager

    cluster = manager.up("bench-logs", nodes=1)
    try:
        rows = measure(cluster, args.reps, args.lines)
    finally:
        manager.down("bench-logs", wipe=True)
    print(f"{'measure':<52} {'median (s)':>10} {'ratio':>7} {'peak RSS':>12}")
    for label, value, ratio, rss in rows:
        print(f"{label:<52} {value:>10.2f} {ratio:>7} {rss:>12}")
    print(f"(median of {args.reps} each way; {os.cpu_count()} CPUs; "
          f"RSS: growth during the call for k8s_logs, the process's peak for kubectl)")


def measure(cluster, reps: int, lines: int) -> list[tuple[str, float, str, str]]:
    from ansflow.blocks.kubernetes import KubernetesCluster

    kubeconfig = cluster.paths.kubeconfig
    kubectl = Path(cluster.state.binaries) / "kubectl"
    block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
    with block.get_client() as api:
        pod = running_pod(api, "bench-logs")
    rows = []
    results = {}
    for n in (lines // 10, lines):
        write_log(cluster.paths.pod_logs, n)
        mine, cli, cli_rss = [], [], []
        for _ in range(reps):
            got = ours(kubeconfig, "bench-logs", pod)
            if int(got["lines"]) != n:
                raise SystemExit(f"k8s_logs read {got['lines']} lines, not {n}")
            mine.append(got)
            took, rss = theirs(kubectl, kubeconfig, "bench-logs", pod)
            cli.append(took)
            cli_rss.append(rss)
        growth = max(g["rss_after_kb"] - g["rss_before_kb"] for g in mine)
        peak = max(g["rss_after_kb"] for g in mine)
        results[n] = growth
        ours_s = statistics.median(g["seconds"] for g in mine)
        theirs_s = statistics.median(cli)
        rows.append((f"k8s_logs, {n:,} lines", ours_s, f"{ours_s / theirs_s:.2f}x",
                     f"+{growth / 1024:.1f} of {peak / 1024:.0f} MB"))
        rows.append((f"kubectl logs, {n:,} lines", theirs_s, "1.00x",
                     f"{max(cli_rss) / 1024:.1f} MB"))
    small, big = results[lines // 10], results[lines]
    rows.append((f"k8s_logs RSS growth at {lines:,} vs {lines // 10:,} lines", 0.0,
                 f"{(big + 1024) / (small + 1024):.2f}x", "(+1 MB each)"))
    return rows


if __name__ == "__main__":
    main()
