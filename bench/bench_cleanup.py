"""Cleanup figures: the cleanup plan over 10,000 labelled objects vs `kubectl get -l`.

    python bench/bench_cleanup.py [--objects 10000] [--removable 500] [--reps 3]

Starts a throw-away dev cluster (temp ANSFLOW_HOME, cached binaries), creates OBJECTS objects
carrying ansflow's run and step-pod labels (step pods that no scheduler picks up, so nothing
else works on them): REMOVABLE of a run the ansflow store records as finished, the rest of
runs still going. Then measures, alternately, in the same run:
1. the cleanup plan of that cluster (`ansflow.upkeep.cleanup.plan`: metadata-only lists of
   step pods by label in pages of 500, the run states from the store, and the scan of
   every listable kind for expired objects);
2. `kubectl get pods -A -l ansflow.dev/run-id,ansflow.dev/step-pod=true -o json` (the same
   labels) into a pipe,
   and the same with `-o name` (the ratios are against `-o json`, what a script parses);
and once, the deletes of the plan (each object re-read, then deleted with preconditions).
Prints a table with the ratio plan / kubectl (target <= 1.5). Everything it starts is
stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RUN_LABEL = "ansflow.dev/run-id"
PIPELINE_LABEL = "ansflow.dev/pipeline"
STEP_POD_LABEL = "ansflow.dev/step-pod"
NAMESPACES = 10


def create_objects(api, total: int, removable: int) -> None:
    """``total`` labelled objects in NAMESPACES namespaces; the first ``removable`` of the
    finished run `bench-done`, the others of ten runs still going."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api)
    for n in range(NAMESPACES):
        core.create_namespace({"metadata": {"name": f"bench-{n}"}})
    container = [{"name": "c", "image": "example.invalid/app:1"}]

    def make(i: int) -> None:
        run = "bench-done" if i < removable else f"bench-live-{i % 10}"
        meta = {"name": f"obj-{i}", "labels": {RUN_LABEL: run, PIPELINE_LABEL: "bench",
                                               STEP_POD_LABEL: "true"}}
        core.create_namespaced_pod(f"bench-{i % NAMESPACES}", {"metadata": meta, "spec": {
            "schedulerName": "bench-no-scheduler", "containers": container}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(total)))


def record_runs() -> None:
    from ansflow.store import Store

    store = Store()
    try:
        store.record_start("bench-done", "bench", 1)
        store.record_end("bench-done", "completed")
        for n in range(10):
            store.record_start(f"bench-live-{n}", "bench", n + 2)
    finally:
        store.close()


def time_plan(block) -> tuple[float, object]:
    from ansflow.upkeep.cleanup import CleanupOptions, plan

    options = CleanupOptions(clusters=["bench"], blocks={"bench": block},
                             run_retention_days=None)
    t0 = time.monotonic()
    report = plan(options)
    return time.monotonic() - t0, report


def time_kubectl(kubectl: Path, kubeconfig: Path, output: str = "json") -> tuple[float, int]:
    t0 = time.monotonic()
    out = subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get", "pods",
                          "-A", "-l", f"{RUN_LABEL},{STEP_POD_LABEL}=true", "-o", output], capture_output=True, check=True)
    seconds = time.monotonic() - t0
    if output == "name":
        return seconds, len(out.stdout.splitlines())
    return seconds, out.stdout.count(b'"kind": "Pod"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--removable", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-cleanup-"))
    os.environ["ANSFLOW_HOME"] = str(work / "af")  # before ansflow reads it
    os.environ.pop("ANSFLOW_DATABASE_URL", None)
    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.devcluster import manager

    cluster = manager.up("bench-cleanup", nodes=1)
    try:
        kubeconfig = cluster.paths.kubeconfig
        kubectl = Path(cluster.state.binaries) / "kubectl"
        block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
        t0 = time.monotonic()
        with block.get_client() as api:
            create_objects(api, args.objects, args.removable)
        made = time.monotonic() - t0
        record_runs()
        plans, gets, names = [], [], []
        report = None
        for _ in range(args.reps):
            seconds, report = time_plan(block)
            plans.append(seconds)
            seconds, listed = time_kubectl(kubectl, kubeconfig)
            gets.append(seconds)
            seconds, _ = time_kubectl(kubectl, kubeconfig, "name")
            names.append(seconds)
        assert report is not None
        planned = len(report.remove)
        if planned != args.removable or listed != args.objects or report.problems:
            raise SystemExit(f"plan found {planned} removable (wanted {args.removable}), "
                             f"kubectl {listed} objects; problems: {report.problems}")
        from ansflow.upkeep.cleanup import CleanupOptions, execute

        t0 = time.monotonic()
        execute(report, CleanupOptions(clusters=["bench"], blocks={"bench": block},
                                       run_retention_days=None))
        deleted = time.monotonic() - t0
        if len(report.removed) != args.removable:
            raise SystemExit(f"deleted {len(report.removed)}, failed {len(report.failed)}")
    finally:
        manager.down("bench-cleanup", wipe=True)
    plan_s, get_s = statistics.median(plans), statistics.median(gets)
    name_s = statistics.median(names)
    rows = [
        (f"cleanup plan, {args.objects} objects, {args.removable} removable", plan_s,
         f"{plan_s / get_s:.2f}x"),
        ("kubectl get pods -A -l <run-id,step-pod> -o json", get_s, "1.00x"),
        ("kubectl get pods -A -l <run-id,step-pod> -o name", name_s,
         f"{name_s / get_s:.2f}x"),
        (f"deletes of the plan ({args.removable}, re-read + delete each)", deleted, ""),
    ]
    print(f"{'measure':<62} {'median (s)':>10} {'ratio':>7}")
    for label, value, ratio in rows:
        print(f"{label:<62} {value:>10.2f} {ratio:>7}")
    print(f"(median of {args.reps}, alternating; {args.objects} objects created in {made:.0f} s;"
          f" target: plan <= 1.5x kubectl -o json; {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
