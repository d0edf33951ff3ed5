"""Inventory figures: sync of 10,000 pods + 1,000 each of deployments, services and
configmaps (each object's health assessed and stored) vs `kubectl get pods -A -o json` and
`kubectl get pods,deploy,svc,cm -A -o json`, re-syncs, peak RSS, health.

    python bench/bench_inventory.py [--pods 10000] [--small 1000] [--reps 2]

Starts a throw-away dev cluster (temp ANSFLOW_HOME, cached binaries; kwok plays the node, so
pods cost little: they are created bound to the node), fills it, then measures in fresh
processes (each sync its own process, so its peak RSS is its own):
1. the first sync (empty SQLite inventory) vs kubectl listing the same kinds as JSON;
2. a re-sync with nothing changed, and one after 100 pods were relabelled (exactly 100
   changed);
3. peak RSS of a first sync at --pods vs at --small pods (same other objects);
4. one health check of the cluster.
Prints a table. Everything it starts is stopped at the end. The syncs run the library
function (``ansflow.upkeep.sync.sync_cluster``) without a Prefect server: the flow adds an
artifact and an event per cluster, a constant.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHILD = """
import json, resource, sys, time
from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.upkeep.inventory import Inventory
from ansflow.upkeep.sync import sync_cluster
block = KubernetesCluster.from_kubeconfig_file(sys.argv[1])
inv = Inventory(sys.argv[2])
t0 = time.monotonic()
result = sync_cluster("bench", block, inventory=inv)
seconds = time.monotonic() - t0
print(json.dumps({"seconds": seconds, "rss_mb": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024, "pods": result.counts["pods"].__dict__,
    "totals": result.totals.__dict__, "health": inv.health_counts("bench").get("pods", {})}))
"""
NAMESPACES = 10


def child_sync(kubeconfig: Path, db: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(kubeconfig), f"sqlite:///{db}"],
                         capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"the sync failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def create_many(api, kind: str, count: int, start: int, node: str) -> None:
    from kubernetes import client as k8s

    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)

    def one(i: int) -> None:
        ns = f"bench-{i % NAMESPACES}"
        if kind == "pods":
            core.create_namespaced_pod(ns, {"metadata": {"name": f"p-{i}", "labels": {
                "app": "bench"}}, "spec": {"nodeName": node, "containers": [
                    {"name": "c", "image": "example.invalid/p:1"}]}})
        elif kind == "deployments":  # no replicas: the pods stay as counted
            apps.create_namespaced_deployment(ns, {"metadata": {"name": f"d-{i}"}, "spec": {
                "replicas": 0, "selector": {"matchLabels": {"d": str(i)}},
                "template": {"metadata": {"labels": {"d": str(i)}}, "spec": {
                    "containers": [{"name": "c", "image": "example.invalid/d:1"}]}}}})
        elif kind == "services":  # headless: the dev cluster's service range is small
            core.create_namespaced_service(ns, {"metadata": {"name": f"s-{i}"}, "spec": {
                "clusterIP": "None", "selector": {"d": str(i)}, "ports": [{"port": 80}]}})
        else:
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"c-{i}"},
                                                   "data": {"key": "v" * 100}})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(start, start + count)))


def wait_running(api, count: int, timeout: float = 900) -> None:
    from kubernetes import client as k8s

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running, token = 0, None
        while True:
            page = k8s.CoreV1Api(api).list_pod_for_all_namespaces(
                label_selector="app=bench", limit=1000, _continue=token)
            running += sum(p.status.phase == "Running" for p in page.items)
            token = page.metadata._continue
            if not token:
                break
        if running >= count:
            return
        time.sleep(2)
    raise SystemExit(f"{count} pods never ran")


def kubectl_list(kubectl: Path, kubeconfig: Path, kinds: str = "pods,deploy,svc,cm") -> float:
    t0 = time.monotonic()
    subprocess.run([str(kubectl), "--kubeconfig", str(kubeconfig), "get",
                    kinds, "-A", "-o", "json"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.monotonic() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--others", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-inventory-"))
    os.environ["ANSFLOW_HOME"] = str(work / "af")
    from ansflow.devcluster import manager

    cluster = None
    try:
        cluster = manager.up("bench-inv", nodes=1)
        rows = measure(work, cluster, args)
    finally:
        if cluster is not None:
            manager.down("bench-inv", wipe=True)
    print(f"{'measure':<66} {'value':>10} {'ratio':>8} target")
    for label, value, ratio, target in rows:
        print(f"{label:<66} {value:>10.2f} {ratio:>8} {target}")
    print(f"(median of {args.reps}; {os.cpu_count()} CPUs; SQLite inventory; work dir {work})")


def measure(work: Path, cluster, args) -> list[tuple[str, float, str, str]]:
    from kubernetes import client as k8s

    from ansflow.blocks.kubernetes import KubernetesCluster
    from ansflow.upkeep.health import check_health
    from ansflow.upkeep.inventory import Inventory

    kubeconfig = cluster.paths.kubeconfig
    kubectl = Path(cluster.state.binaries) / "kubectl"
    block = KubernetesCluster.from_kubeconfig_file(kubeconfig)
    rows = []
    with block.get_client() as api:
        node = k8s.CoreV1Api(api).list_node().items[0].metadata.name
        for i in range(NAMESPACES):
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": f"bench-{i}"}})
        for kind in ("deployments", "services", "configmaps"):
            create_many(api, kind, args.others, 0, node)
        create_many(api, "pods", args.small, 0, node)
        wait_running(api, args.small)
        small = [child_sync(kubeconfig, work / f"small-{r}.db") for r in range(args.reps)]
        t0 = time.monotonic()
        create_many(api, "pods", args.pods - args.small, args.small, node)
        wait_running(api, args.pods)
        print(f"created {args.pods} pods in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        time.sleep(5)  # let kwok's last status updates land
        firsts = [child_sync(kubeconfig, work / f"big-{r}.db") for r in range(args.reps)]
        theirs = statistics.median(kubectl_list(kubectl, kubeconfig) for _ in range(args.reps))
        pods_only = statistics.median(kubectl_list(kubectl, kubeconfig, "pods")
                                      for _ in range(args.reps))
        db = work / f"big-{args.reps - 1}.db"
        unchanged = [child_sync(kubeconfig, db) for _ in range(args.reps)]
        changed = []
        for r in range(args.reps):
            core = k8s.CoreV1Api(api)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i, r=r: core.patch_namespaced_pod(
                    f"p-{i}", f"bench-{i % NAMESPACES}", {"metadata": {"labels": {
                        "round": str(r)}}}), range(100)))
            changed.append(child_sync(kubeconfig, db))
    first = statistics.median(x["seconds"] for x in firsts)
    total = firsts[0]["totals"]["total"]
    health = ", ".join(f"{n} {h}" for h, n in sorted(firsts[0]["health"].items()))
    rows.append((f"first sync, {total} objects ({args.pods} pods), with health", first,
                 f"{first / pods_only:.2f}x", "<= 1.0x of pods only"))
    rows.append(("kubectl get pods -A -o json", pods_only, "1.00x", ""))
    rows.append(("kubectl get pods,deploy,svc,cm -A -o json", theirs,
                 f"{theirs / pods_only:.2f}x", f"(sync: {first / theirs:.2f}x of it)"))
    print(f"pods by health after the first sync: {health}", file=sys.stderr)
    same = statistics.median(x["seconds"] for x in unchanged)
    rows.append(("re-sync, nothing changed", same, f"{same / first:.2f}x", "<= 0.5x of first"))
    moved = statistics.median(x["seconds"] for x in changed)
    counts = sorted({x["pods"]["changed"] for x in changed})
    rows.append((f"re-sync after 100 pods changed (pods changed: {counts})", moved,
                 f"{moved / first:.2f}x", "<= 0.5x, exactly 100"))
    big = statistics.median(x["rss_mb"] for x in firsts)
    little = statistics.median(x["rss_mb"] for x in small)
    rows.append((f"peak RSS (MB), first sync at {args.pods} pods", big,
                 f"{big / little:.2f}x", "<= 2x"))
    rows.append((f"peak RSS (MB), first sync at {args.small} pods", little, "1.00x", ""))
    with Inventory(f"sqlite:///{work / 'health.db'}") as inv:
        times, status = [], ""
        for _ in range(args.reps + 1):
            report = check_health("bench", block, inventory=inv)
            times.append(report.seconds)
            status = report.status
    rows.append((f"health check of one cluster ({status}, {args.pods} pods)",
                 statistics.median(times), "", "<= 1 s"))
    return rows


if __name__ == "__main__":
    main()
