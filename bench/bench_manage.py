"""Management figures: k8s_scale vs kubectl, and `prefect deployment run` of ansflow-k8s/scale.

    python bench/bench_manage.py [--reps 3]

Starts a throw-away dev cluster (temp ANSFLOW_HOME, cached binaries) and a private Prefect
server, then measures
1. k8s_scale with wait (the executor, as a step runs it) vs `kubectl scale` + `kubectl
   rollout status` on the same Deployment, alternately 1 -> 5 and 5 -> 1 replicas;
2. `prefect deployment run 'ansflow-k8s/scale'` (the CLI) until the Deployment has the new
   count ready, served by `ansflow serve --manage` with the runner's default poll interval
   (10 s) and 1 s, beside `prefect deployment run` of a bare served flow until Completed.
Prints a table. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_deployments import free_port, start, stop, wait_deployment, wait_healthy  # noqa: E402

NAME = "web"


def until_ready(apps, ns: str, replicas: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = apps.read_namespaced_deployment(NAME, ns)
        if d.spec.replicas == replicas and (d.status.ready_replicas or 0) == replicas and \
                (d.status.replicas or 0) == replicas:
            return
        time.sleep(0.05)
    raise SystemExit(f"deployment/{NAME} never had {replicas} ready replicas")


def create_deployment(api, ns: str) -> None:
    from kubernetes import client as k8s

    labels = {"app": NAME}
    k8s.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                     {"name": "main", "image": "example.invalid/app:1"}]}}}})
    until_ready(k8s.AppsV1Api(api), ns, 1)


def scale_step(block, ns: str, replicas: int) -> float:
    from ansflow.runtime.base import StepContext
    from ansflow.spec.steps import K8sScaleConfig
    from ansflow.tasks.k8s_scale import execute_k8s_scale

    ctx = StepContext(pipeline="bench", run_id="bench", build_number=0, step_id="scale",
                      step_name="scale", stage="", step_type="k8s_scale",
                      workspace=os.getcwd(), blocks={"cluster": block})
    t0 = time.monotonic()
    execute_k8s_scale(ctx, K8sScaleConfig(cluster="bench", namespace=ns, resource_name=NAME,
                                          replicas=replicas, timeout=120))
    return time.monotonic() - t0


def scale_kubectl(kubectl: Path, kubeconfig: Path, ns: str, replicas: int) -> float:
    base = [str(kubectl), "--kubeconfig", str(kubeconfig), "-n", ns]
    t0 = time.monotonic()
    subprocess.run([*base, "scale", f"deployment/{NAME}", f"--replicas={replicas}"],
                   check=True, capture_output=True)
    subprocess.run([*base, "rollout", "status", f"deployment/{NAME}", "--timeout=120s"],
                   check=True, capture_output=True)
    return time.monotonic() - t0


def run_cli(args: list[str]) -> str:
    return subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", *args],
                          capture_output=True, text=True, check=True).stdout


def served_scale(apps, ns: str, replicas: int) -> float:
    """Seconds from `prefect deployment run` to the new count ready in the cluster."""
    t0 = time.monotonic()
    run_cli(["ansflow-k8s/scale", "--param", "cluster=bench", "--param", f"namespace={ns}",
             "--param", f"resource_name={NAME}", "--param", f"replicas={replicas}"])
    until_ready(apps, ns, replicas)
    return time.monotonic() - t0


def served_bare() -> float:
    from prefect.client.orchestration import get_client

    t0 = time.monotonic()
    run_id = run_cli(["bench-bare/bench-bare"]).split("UUID: ")[1].split()[0]
    with get_client(sync_client=True) as client:
        while not client.read_flow_run(run_id).state.is_final():
            time.sleep(0.05)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-manage-"))
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "ANSFLOW_HOME": str(work / "af"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.25"}
    os.environ.update(env)  # before ansflow / Prefect read their settings
    from ansflow.devcluster import manager

    server = start([sys.executable, "-m", "prefect", "server", "start"], env, work / "server.log")
    cluster = None
    try:
        cluster = manager.up("bench", nodes=1)
        wait_healthy(env["PREFECT_API_URL"])
        from prefect.settings import PREFECT_API_URL, temporary_settings

        # Prefect read its settings at import: point this process's client at the server.
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            rows = measure(work, env, cluster, args.reps)
    finally:
        stop(server)
        if cluster is not None:
            manager.down("bench", wipe=True)
    print(f"{'measure':<58} {'median (s)':>10} {'ratio':>7}")
    for label, value, ratio in rows:
        print(f"{label:<58} {value:>10.2f} {ratio:>7}")
    print(f"(median of {args.reps} each way; {os.cpu_count()} CPUs; logs in {work})")


def measure(work: Path, env: dict, cluster, reps: int) -> list[tuple[str, float, str]]:
    from kubernetes import client as k8s

    from ansflow.blocks.kubernetes import KubernetesCluster

    kubeconfig = cluster.paths.kubeconfig
    kubectl = Path(cluster.state.binaries) / "kubectl"
    block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
    block.save("bench", overwrite=True)
    rows: list[tuple[str, float, str]] = []
    with block.get_client() as api:
        apps = k8s.AppsV1Api(api)
        create_deployment(api, "bench-a")
        step, cli = [], []
        for _ in range(reps):
            for replicas in (5, 1):
                step.append(scale_step(block, "bench-a", replicas))
                cli.append(scale_kubectl(kubectl, kubeconfig, "bench-a", replicas))
        ours, theirs = statistics.median(step), statistics.median(cli)
        rows.append(("k8s_scale, wait (1 <-> 5 replicas)", ours, f"{ours / theirs:.2f}x"))
        rows.append(("kubectl scale + kubectl rollout status", theirs, "1.00x"))
        create_deployment(api, "bench-b")
        for poll in ("10", "1"):
            served = {}
            for kind, cmd, name in (
                    ("ansflow-k8s/scale", [sys.executable, "-m", "ansflow.cli", "serve",
                                           "--manage"], "ansflow-k8s/scale"),
                    ("bare flow", [sys.executable, str(Path(__file__).parent /
                                                       "bench_deployments.py"),
                                   "--serve-bare", "--limit", "0"], "bench-bare/bench-bare")):
                proc = start(cmd, {**env, "PREFECT_RUNNER_POLL_FREQUENCY": poll},
                             work / f"serve-{kind.replace('/', '-')}-{poll}.log")
                try:
                    wait_deployment(name)
                    time.sleep(3)
                    if kind == "bare flow":
                        times = [served_bare() for _ in range(reps)]
                    else:
                        times = [served_scale(apps, "bench-b", n) for _ in range(reps)
                                 for n in (3, 1)]
                    served[kind] = statistics.median(times)
                finally:
                    stop(proc)
            rows.append((f"prefect deployment run ansflow-k8s/scale -> ready, poll {poll} s",
                         served["ansflow-k8s/scale"],
                         f"{served['ansflow-k8s/scale'] / served['bare flow']:.2f}x"))
            rows.append((f"prefect deployment run bare flow -> Completed, poll {poll} s",
                         served["bare flow"], "1.00x"))
    return rows


if __name__ == "__main__":
    main()
