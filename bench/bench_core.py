"""Core benchmark: ansflow pipelines and tasks vs bare Prefect and prefect-shell, side by side
in one run.

Starts a real Prefect server on a free loopback port, runs each case in a fresh Python
process (so peak RSS is per case), and prints a markdown table. Not a test: figures swing on
shared machines, compare only within one run.

    python bench/bench_core.py            # all cases
    python bench/bench_core.py --steps 50 # smaller
    python bench/bench_core.py --rounds 5 # rounds per compared pair (default 5)

Each compared pair runs ``--rounds`` times, alternating which case goes first; the table
shows the median round of each and, in brackets, the median of the rounds' own ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


# -- cases (each runs in its own process) -------------------------------------------------
def case_pipeline(kind: str, n: int, work: Path) -> dict:
    from ansflow.flows.pipeline import pipeline_flow

    if kind == "sequential":
        steps = "\n".join(f"    - {{id: s{i}, type: command, config: {{command: [\"true\"]}}}}"
                          for i in range(n))
        body = f"pipeline:\n  name: bench-seq\n  steps:\n{steps}\n"
    elif kind == "parallel":
        steps = "\n".join(f"        - {{id: s{i}, type: command, config: {{command: [\"true\"]}}}}"
                          for i in range(n))
        body = ("pipeline:\n  name: bench-par\n  stages:\n    - name: all\n      parallel: true\n"
                f"      steps:\n{steps}\n")
    else:  # wide: 16 independent stages of 1 s
        stages = "\n".join(f"    - {{name: s{i}, needs: [], steps: [{{id: w{i}, type: command, "
                           f"config: {{command: [\"sleep\", \"1\"]}}}}]}}" for i in range(16))
        body = f"pipeline:\n  name: bench-wide\n  stages:\n{stages}\n"
    path = _write(work / f"{kind}.yaml", body)
    from ansflow.flows.scheduler import Scheduler

    spans: list[float] = []
    original = Scheduler.run

    def timed_run(self, deadline):  # the steps' span, without the flow run's own set-up
        began = time.perf_counter()
        try:
            return original(self, deadline)
        finally:
            spans.append(time.perf_counter() - began)

    Scheduler.run = timed_run
    start, cpu = time.perf_counter(), time.process_time()
    state = pipeline_flow(path, return_state=True)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    summary = state.result(raise_on_failure=False)
    assert summary["state"] == "completed", summary["message"]
    return {"seconds": total, "steps_span": spans[0], "cpu": cpu}


def case_bare(kind: str, n: int, work: Path) -> dict:
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def step(i: int) -> int:
        return subprocess.run(["true"], check=True).returncode

    @flow
    def bare():
        if kind == "sequential":
            for i in range(n):
                step.with_options(task_run_name=f"s{i}")(i)
        else:
            futures = [step.with_options(task_run_name=f"s{i}").submit(i) for i in range(n)]
            for f in futures:
                f.wait()

    start, cpu = time.perf_counter(), time.process_time()
    bare()
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu}


def case_task_command(n: int, work: Path) -> dict:
    """(a) ansflow's public `command` task, called n times in a plain flow."""
    from prefect import flow

    from ansflow.tasks import command

    @flow
    def plain():
        for i in range(n):
            command.with_options(task_run_name=f"s{i}")(command=["true"], workspace=str(work))

    start = time.perf_counter()
    plain()
    return {"seconds": time.perf_counter() - start}


def case_prefect_shell(n: int, work: Path) -> dict:
    """(c) prefect-shell's `shell_run_command` (an async task), awaited n times in a flow."""
    import asyncio

    from prefect import flow
    from prefect_shell import shell_run_command

    @flow
    async def plain():
        for i in range(n):
            await shell_run_command.with_options(task_run_name=f"s{i}")(command="true",
                                                                          cwd=str(work))

    start = time.perf_counter()
    asyncio.run(plain())
    return {"seconds": time.perf_counter() - start}


def case_validate(n: int, work: Path) -> dict:
    from ansflow.spec.validate import load_plan

    stages = []
    for s in range(n // 10):
        steps = "\n".join(
            f"        - {{id: s{s}_{i}, type: command, config: {{command: \"echo {{{{ vars.x }}}}"
            + (f" {{{{ steps.s{s}_{i - 1}.status }}}}" if i else "") + "\"}}"
            for i in range(10))
        stages.append(f"    - name: st{s}\n      steps:\n{steps}")
    if n > 5000:  # the same shape in flow style, to stay under the 5 MiB file limit
        stages = [f"    - {{name: t{s}, steps: ["
                  + ", ".join(f"{{id: s{s}_{i}, type: command, config: {{command: 'echo"
                              + (f" {{{{steps.s{s}_{i - 1}.status}}}}" if i else "") + "'}}"
                              for i in range(10)) + "]}"
                  for s in range(n // 10)]
    path = _write(work / "big.yaml", "pipeline:\n  name: big\n  variables: {x: 1}\n  stages:\n"
                  + "\n".join(stages) + "\n")
    best = float("inf")
    for _ in range(5 if n <= 5000 else 1):
        start = time.perf_counter()
        plan = load_plan(path)
        best = min(best, time.perf_counter() - start)
    assert len(plan.steps) == n
    return {"seconds": best}


def case_log_latency(work: Path) -> dict:
    import threading
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterTextSearch

    from ansflow.flows.pipeline import pipeline_flow

    marks = 10
    token = "M" + uuid.uuid4().hex[:10]
    script = "; ".join(f"echo {token}{i}-$(date +%s.%N); sleep 0.3" for i in range(marks))
    path = _write(work / "latency.yaml",
                  f"steps:\n  - {{id: talk, type: command, config: {{command: '{script}'}}}}\n")
    seen: dict[int, float] = {}
    stop = threading.Event()

    def watch() -> None:
        with get_client(sync_client=True) as client:
            while not stop.is_set():
                for log in client.read_logs(log_filter=LogFilter(
                        text=LogFilterTextSearch(query=token)), limit=200):
                    tag, _, printed = log.message.partition("-")
                    if tag.startswith(token) and tag[len(token):].isdigit():
                        seen.setdefault(int(tag[len(token):]), time.time() - float(printed))
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    pipeline_flow(path, return_state=True)
    time.sleep(2)
    stop.set()
    values = sorted(seen.values())
    return {"median": values[len(values) // 2], "max": values[-1], "count": len(values)}


def run_case(argv: list[str]) -> dict:
    kind, n, work = argv[0], int(argv[1]), Path(argv[2])
    if kind.startswith("bare-"):
        result = case_bare(kind.removeprefix("bare-"), n, work)
    elif kind == "validate":
        result = case_validate(n, work)
    elif kind == "task-command":
        result = case_task_command(n, work)
    elif kind == "prefect-shell":
        result = case_prefect_shell(n, work)
    elif kind == "latency":
        result = case_log_latency(work)
    else:
        result = case_pipeline(kind, n, work)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


# -- driver -------------------------------------------------------------------------------
def _ratio(mine: dict, peer: dict, per_round: float) -> str:
    """The ratio of the median rounds, and (in brackets) the median of the rounds' ratios."""
    return f"{mine['seconds'] / peer['seconds']:.2f}x ({per_round:.2f}x)"


def _median(values: list, key=None):  # noqa: ANN001
    return sorted(values, key=key)[len(values) // 2]


def _importable_copy(rev: str, into: Path) -> str:
    """ansflow as of commit ``rev``, laid out for PYTHONPATH (flows/, tasks/, blocks/ and
    deployments/ inside the package, as the installed package has them)."""
    root = Path(__file__).resolve().parent.parent
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", rev], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    package = into / "py" / "ansflow"
    shutil.copytree(src / "ansflow", package)
    for folder in ("flows", "tasks", "blocks", "deployments"):
        shutil.copytree(src / folder, package / folder)
    return str(into / "py")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per compared group")
    parser.add_argument("--core", action="store_true",
                        help="only the pipeline rows (sequential and parallel steps)")
    parser.add_argument("--commit", nargs="+", metavar="REV",
                        help="measure ansflow as of these commits (copies made with git "
                             "archive) instead of the working tree, in the same rounds: a "
                             "before/after comparison on a busy machine")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    work = Path(tempfile.mkdtemp(prefix="ansflow-bench-"))
    # ansflow's state must not lie inside a pipeline's workspace (it refuses to run then).
    home = Path(tempfile.mkdtemp(prefix="ansflow-bench-home-"))
    copies = Path(tempfile.mkdtemp(prefix="ansflow-bench-trees-"))
    # (label, PYTHONPATH or None for the installed package)
    trees = [(rev, _importable_copy(rev, copies / str(i))) for i, rev in
             enumerate(args.commit)] if args.commit else [("ansflow", None)]
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "ANSFLOW_HOME": str(home),
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_API_PORT": str(port),
           "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.25"}
    env.pop("PYTHONPATH", None)
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(env["PREFECT_API_URL"] + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)

        def run(kind: str, n: int, path: str | None = trees[0][1]) -> dict:
            case_env = env if path is None else {**env, "PYTHONPATH": path}
            out = subprocess.run([sys.executable, __file__, "--case", kind, str(n), str(work)],
                                 env=case_env, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"case {kind} failed:\n{out.stderr[-3000:]}")
            return json.loads(out.stdout.strip().splitlines()[-1])

        n = args.steps
        rows = []
        load_before = os.getloadavg()

        def group(mine: str, peer: str, mine_trees: list) -> tuple[list, dict]:
            """``mine`` for each tree and ``peer``, ``--rounds`` times, the order rotating
            each round: per tree its median round and the median of the rounds' own ratios
            to the peer (the cases of a round ran back to back, under about the same load:
            figures swing 2x on shared cores, so compare only within a run)."""
            members = [(label, mine, path) for label, path in mine_trees] + [(peer, peer, None)]
            results: dict[str, list[dict]] = {label: [] for label, _, _ in members}
            ratios: dict[str, list[float]] = {label: [] for label, _ in mine_trees}
            for i in range(args.rounds):
                order = members[i % len(members):] + members[:i % len(members)]
                got = {label: run(kind, n, path) for label, kind, path in order}
                for label, result in got.items():
                    results[label].append(result)
                for label in ratios:
                    ratios[label].append(got[label]["seconds"] / got[peer]["seconds"])
                print(f"  round {i + 1}: " + ", ".join(
                    f"{label} {kind} {got[label]['seconds']:.2f} s"
                    + (f" (steps {got[label]['steps_span']:.2f} s)"
                       if "steps_span" in got[label] else "")
                    for label, kind, _ in order), file=sys.stderr, flush=True)
            key = lambda r: r["seconds"]  # noqa: E731

            def median_of(label: str) -> dict:  # the median round, with the median CPU time
                cpus = [r["cpu"] for r in results[label] if "cpu" in r]
                return {**_median(results[label], key), **({"cpu": _median(cpus)} if cpus else {})}

            return ([(label, median_of(label), _median(ratios[label]))
                     for label, _ in mine_trees], median_of(peer))

        def cpu(mine: dict, peer: dict) -> str:
            return (f"CPU {mine['cpu'] / n * 1000:.1f} / {peer['cpu'] / n * 1000:.1f} ms "
                    f"({mine['cpu'] / peer['cpu']:.2f}x)")

        if not args.core:
            (( _, tcmd, r_cmd),), shell = group("task-command", "prefect-shell", trees[:1])
            rows.append((f"{n} commands in a plain flow: ansflow.tasks.command vs prefect-shell's "
                         "shell_run_command, per call", f"{tcmd['seconds'] / n * 1000:.1f} ms",
                         f"{shell['seconds'] / n * 1000:.1f} ms (prefect-shell)",
                         _ratio(tcmd, shell, r_cmd), "<= 1.0x"))
        seqs, bseq = group("sequential", "bare-sequential", trees)
        for label, seq, r_seq in seqs:
            rows.append((f"{n} sequential steps: per step ({label}; {cpu(seq, bseq)}; the "
                         f"steps alone {seq['steps_span'] / n * 1000:.1f} ms)",
                         f"{seq['seconds'] / n * 1000:.1f} ms",
                         f"{bseq['seconds'] / n * 1000:.1f} ms", _ratio(seq, bseq, r_seq),
                         "<= 1.25x"))
        pars, bpar = group("parallel", "bare-parallel", trees)
        for label, par, r_par in pars:
            rows.append((f"{n} parallel steps: wall ({label}; {cpu(par, bpar)}; the steps "
                         f"alone {par['steps_span']:.2f} s)",
                         f"{par['seconds']:.2f} s", f"{bpar['seconds']:.2f} s",
                         _ratio(par, bpar, r_par), "<= 1.0x"))
        if not args.core:
            wide = run("wide", 16)
            rows.append(("16 independent 1 s stages: steps' span / whole flow run",
                         f"{wide['steps_span']:.2f} / {wide['seconds']:.2f} s", "", "",
                         "<= 1.3 s"))
            val = run("validate", 1000)
            rows.append(("validate+compile 1,000 steps", f"{val['seconds'] * 1000:.0f} ms", "",
                         "", "<= 200 ms"))
            big = run("validate", 50_000)
            rows.append(("validate+compile 50,000 steps (peak RSS)",
                         f"{big['seconds']:.1f} s ({big['rss_mb']:.0f} MB)", "", "",
                         "linear: seconds, < 1 GB"))
            lat = run("latency", 0)
            rows.append(("log line -> Prefect API (median / max)",
                         f"{lat['median']:.2f} / {lat['max']:.2f} s", "", "", "<= 0.5 s"))
        for label, seq, _ in seqs:
            rows.append((f"peak RSS, {n}-step run ({label})", f"{seq['rss_mb']:.0f} MB",
                         f"{bseq['rss_mb']:.0f} MB", f"{seq['rss_mb'] / bseq['rss_mb']:.2f}x",
                         ""))
        print("| measure | ansflow | bare Prefect | ratio | target |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        load_after = os.getloadavg()
        print(f"\n{args.rounds} rounds per group; ratio: of the median rounds (median of the "
              f"rounds' ratios); CPU: this process's CPU time while the flow ran (median); "
              f"load average "
              f"(1/5/15 min) at the start {'/'.join(f'{x:.1f}' for x in load_before)}, at the "
              f"end {'/'.join(f'{x:.1f}' for x in load_after)}, on {os.cpu_count()} cores")
    finally:
        server.terminate()
        server.wait(20)
        for folder in (work, home, copies):
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
