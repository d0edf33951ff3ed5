"""Dev-cluster figures: `up` time to Ready nodes, RSS per component, idle CPU.

Run: python bench/bench_devcluster.py [--runs 3] [--idle 20]
Uses a throw-away ANSFLOW_HOME (unless --home is given) and the cached binaries; tears the
cluster down (data wiped) at the end. Run 1 also creates the certificates and an empty etcd;
later runs restart on the kept data (what a second `ansflow dev-cluster up` costs).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process in clock ticks."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="up/down cycles")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU sampling")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before sampling")
    parser.add_argument("--home", help="ANSFLOW_HOME to use (default: a temp dir)")
    args = parser.parse_args()
    os.environ["ANSFLOW_HOME"] = args.home or tempfile.mkdtemp(prefix="ansflow-bench-")

    from ansflow.devcluster import manager  # after ANSFLOW_HOME is set

    name = "bench"
    up_times = []
    try:
        for run in range(args.runs):
            start = time.monotonic()
            result = manager.up(name)
            up_times.append(time.monotonic() - start)
            if run < args.runs - 1:
                manager.down(name)
        state = result.state
        time.sleep(args.settle)
        pids = {c: r.pid for c, r in state.processes.items()}
        before = {c: cpu_ticks(p) for c, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(args.idle)
        window = time.monotonic() - t0
        after = {c: cpu_ticks(p) for c, p in pids.items()}
        rss = {c: rss_kib(p) for c, p in pids.items()}
    finally:
        manager.down(name, wipe=True)

    print(f"dev cluster, Kubernetes {state.versions.get('kubernetes', '?')}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'run':<28}{'up to Ready node (s)':>22}")
    for i, t in enumerate(up_times, 1):
        kind = "first (certs, empty etcd)" if i == 1 else "restart (kept data)"
        print(f"{i}: {kind:<25}{t:>22.2f}")
    print()
    print(f"{'component':<26}{'RSS (MiB)':>10}{'idle CPU (% of a core)':>25}")
    for c in pids:
        cpu = 100.0 * (after[c] - before[c]) / CLK_TCK / window
        print(f"{c:<26}{rss[c] / 1024:>10.0f}{cpu:>25.1f}")
    total_cpu = 100.0 * sum(after[c] - before[c] for c in pids) / CLK_TCK / window
    print(f"{'total':<26}{sum(rss.values()) / 1024:>10.0f}{total_cpu:>25.1f}")


if __name__ == "__main__":
    main()
