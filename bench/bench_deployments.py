"""Served deployments: start latency and throughput of `ansflow serve` vs a bare served flow.

    python bench/bench_deployments.py [--reps 3] [--runs 20] [--limit 4]

Starts a private Prefect server (temp PREFECT_HOME, free loopback port) and measures
1. latency: `prefect deployment run` (the CLI, as a user types it) -> the flow run Running
   -> the first step (task run) started, with the runner's default poll interval (10 s) and
   a tuned one (1 s);
2. throughput: N runs created at once, one serve process with --limit L: runs per minute.
Each next to the same figure for a bare Prefect flow (one trivial task) served the same way.
Prints a table. Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

from prefect import flow, task
from prefect.settings import PREFECT_API_URL, temporary_settings


@task
def bare_step() -> None:
    return None


@flow(name="bench-bare")
def bare_flow() -> None:
    bare_step()


PIPELINE = textwrap.dedent("""\
    pipeline:
      name: bench-trivial
      steps:
        - name: nothing
          type: command
          config: {command: "true"}
    """)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_healthy(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the bench's Prefect server did not start")


def serve_cmd(kind: str, workdir: Path, limit: int | None) -> list[str]:
    if kind == "ansflow":
        cmd = [sys.executable, "-m", "ansflow.cli", "serve", str(workdir / "bench.yaml")]
        return cmd + (["--limit", str(limit)] if limit else [])
    return [sys.executable, str(Path(__file__).resolve()), "--serve-bare",
            "--limit", str(limit or 0)]


def deployment_name(kind: str) -> str:
    return "ansflow-pipeline/bench-trivial" if kind == "ansflow" else "bench-bare/bench-bare"


def wait_deployment(name: str, timeout: float = 60):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                time.sleep(0.5)
    raise SystemExit(f"{name} was not served")


def first_task_start(client, run_id):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    starts = [t.start_time for t in tasks if t.start_time]
    return min(starts) if starts else None


def latency(kind: str, reps: int) -> tuple[float, float]:
    """Median seconds from `prefect deployment run` to Running and to the first step."""
    from prefect.client.orchestration import get_client

    to_running, to_step = [], []
    name = deployment_name(kind)
    for _ in range(reps):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", name],
                             capture_output=True, text=True, check=True).stdout
        run_id = out.split("UUID: ")[1].split()[0]
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(run_id)
                if run.state.is_final():
                    break
                time.sleep(0.2)
            to_running.append(run.start_time.timestamp() - t0)
            to_step.append(first_task_start(client, run_id).timestamp() - t0)
    return statistics.median(to_running), statistics.median(to_step)


def throughput(kind: str, runs: int) -> float:
    """Runs per minute for ``runs`` runs created at once."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment_name(kind))
        t0 = time.monotonic()
        ids = [client.create_flow_run_from_deployment(dep.id).id for _ in range(runs)]
        for run_id in ids:
            while not client.read_flow_run(run_id).state.is_final():
                time.sleep(0.3)
        return runs / (time.monotonic() - t0) * 60


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--limit", type=int, default=4)
    parser.add_argument("--serve-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        bare_flow.serve(name="bench-bare", pause_on_shutdown=False,
                        limit=args.limit or None, print_starting_message=False)
        return
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-deploy-"))
    (work / "bench.yaml").write_text(PIPELINE)
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "ANSFLOW_HOME": str(work / "af"),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.25"}
    os.environ.update(env)  # for the CLI commands this process starts
    server = start([sys.executable, "-m", "prefect", "server", "start"], env, work / "server.log")
    try:
        wait_healthy(env["PREFECT_API_URL"])
        # Prefect read its settings at import: point this process's client at the server.
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            rows = measure(work, env, args)
    finally:
        stop(server)
    print(f"{'served':<8} {'measure':<32} {'to Running / rate':<18} {'to first step':<14}")
    for row in rows:
        print(f"{row[0]:<8} {row[1]:<32} {row[2]:<18} {row[3]:<14}")
    print(f"(median of {args.reps}; {os.cpu_count()} CPUs; logs in {work})")


def measure(work: Path, env: dict, args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows = []
    for kind in ("ansflow", "bare"):
        for poll in ("10", "1"):
            proc = start(serve_cmd(kind, work, None),
                         {**env, "PREFECT_RUNNER_POLL_FREQUENCY": poll},
                         work / f"serve-{kind}-{poll}.log")
            try:
                wait_deployment(deployment_name(kind))
                time.sleep(3)
                running, step = latency(kind, args.reps)
                rows.append((kind, f"latency, poll {poll} s", f"{running:.1f} s",
                             f"{step:.1f} s"))
            finally:
                stop(proc)
        proc = start(serve_cmd(kind, work, args.limit),
                     {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1"},
                     work / f"serve-{kind}-throughput.log")
        try:
            wait_deployment(deployment_name(kind))
            time.sleep(3)
            per_min = throughput(kind, args.runs)
            rows.append((kind, f"{args.runs} runs, --limit {args.limit}, poll 1 s",
                         f"{per_min:.0f} runs/min", ""))
        finally:
            stop(proc)
    return rows


if __name__ == "__main__":
    main()
