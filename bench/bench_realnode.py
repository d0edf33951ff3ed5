"""The dev cluster's real node: `up --real-node` (warm: binaries and images built) to a Ready
real node with its network services (kube-proxy, CoreDNS, the node proxy), the cluster's RSS
with it (kubelet, containerd and a running pod's shim included), and `down`. Each round uses
a fresh cluster under a temporary ANSFLOW_HOME; medians of --rounds. Needs root and the
set-up's binaries. Not a test: figures swing on shared machines.

    python bench/bench_realnode.py            # 3 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def tree(pids: set[int]) -> set[int]:
    """The pids and all their descendants (the shims are containerd's)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def one_round(home: Path) -> dict[str, float]:
    env = {**os.environ, "ANSFLOW_HOME": str(home)}
    cli = [sys.executable, "-m", "ansflow.cli", "dev-cluster"]
    began = time.perf_counter()
    subprocess.run([*cli, "up", "--name", "bench", "--no-block", "--real-node"], env=env,
                   check=True, capture_output=True)
    up = time.perf_counter() - began
    sys.path.insert(0, str(ROOT))
    os.environ["ANSFLOW_HOME"] = str(home)
    from ansflow.devcluster import realnode
    from ansflow.devcluster.state import ClusterPaths, load_state

    state = load_state(ClusterPaths.for_name("bench"))
    assert state is not None
    kubectl = [str(Path(state.binaries) / "kubectl"), "--kubeconfig",
               str(home / "clusters" / "bench" / "kubeconfig")]
    # No selector: the kwok nodes are tainted, so the pod lands on the real node.
    subprocess.run([*kubectl, "run", "idle", "--image=localhost/ansflow/busybox:1",
                    "--restart=Never", "--", "sleep", "600"], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Ready", "pod/idle", "--timeout=60s"],
                   check=True, capture_output=True)
    time.sleep(5)
    # The shims are daemons (their parent is init), found by the socket in their argv.
    shims = set(realnode.shims(realnode.NodeSettings.from_dict(state.real_node).key))
    pids = {r.pid for r in state.processes.values()} | shims
    rss_all = rss_mib(tree(pids))
    rss_node = rss_mib(tree({state.processes[c].pid for c in ("kubelet", "containerd")}
                            | shims))
    net = [c for c in ("kube-proxy", "coredns", "node-proxy") if c in state.processes]
    rss_net = rss_mib({state.processes[c].pid for c in net})
    began = time.perf_counter()
    subprocess.run([*cli, "down", "--name", "bench", "--wipe"], env=env, check=True,
                   capture_output=True)
    down = time.perf_counter() - began
    return {"up": up, "rss": rss_all, "rss_node": rss_node, "rss_net": rss_net,
            "down": down, "kube_proxy": float("kube-proxy" in net)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        home = Path(tempfile.mkdtemp(prefix="ansflow-bench-rn-"))
        try:
            rounds.append(one_round(home))
        finally:
            subprocess.run([sys.executable, "-m", "ansflow.cli", "dev-cluster", "down",
                            "--name", "bench", "--wipe"], env={**os.environ,
                           "ANSFLOW_HOME": str(home)}, capture_output=True)
            shutil.rmtree(home, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(f"rounds: {args.rounds}")
    if not all(r["kube_proxy"] for r in rounds):
        print("note: another cluster's real node ran this machine's kube-proxy: not counted")
    print("| measure | figure | target |")
    print("|---|---|---|")
    print(f"| `ansflow dev-cluster up --real-node` (warm) to a Ready real node, wall | "
          f"{med['up']:.1f} s | <= 30 s |")
    print(f"| RSS of the cluster with the real node and one running pod | "
          f"{med['rss']:.0f} MiB | <= 1.5 GB |")
    print(f"| of which the real node: kubelet, containerd, the pod's shim, pause and "
          f"container | {med['rss_node']:.0f} MiB | |")
    print(f"| of which its network services: kube-proxy, CoreDNS, the node proxy | "
          f"{med['rss_net']:.0f} MiB | |")
    print(f"| `down --wipe` | {med['down']:.1f} s | |")


if __name__ == "__main__":
    main()
