"""Scale-out: one Prefect server, one shared store, two serve processes as two machines."""

from __future__ import annotations

import os
import re
import time

import pytest

pytestmark = pytest.mark.server

RUNS = 20


@pytest.mark.postgres
def test_twenty_runs_started_at_once_complete_across_two_serve_processes(
        serve, deploy, tmp_path, tmp_home, unique):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    # Each "machine" has its own ANSFLOW_HOME and its own copy of the pipeline file; both
    # share the store (PostgreSQL in the second pass; the suite's SQLite file otherwise).
    shared_store = os.environ.get("ANSFLOW_DATABASE_URL") or \
        f"sqlite:///{tmp_home / 'ansflow' / 'ansflow.db'}"
    (tmp_home / "ansflow").mkdir(exist_ok=True)
    machines = []
    for name in ("machine-a", "machine-b"):
        home = tmp_path / name
        (home / "pipelines").mkdir(parents=True)
        (home / "pipelines" / "p.yaml").write_text(deploy.pipeline_text(
            unique, command="sleep 1; echo ran on $MACHINE_HOME build {{ pipeline.build_number }}"))
        machines.append(serve(str(home / "pipelines"), "--limit", "10", env={
            "ANSFLOW_HOME": str(home / "home"), "ANSFLOW_DATABASE_URL": shared_store,
            # Steps inherit no worker variable unless its operator passes it through.
            "MACHINE_HOME": str(home / "home"), "ANSFLOW_ENV_PASSTHROUGH": "MACHINE_HOME"}))
    dep = deploy.wait_for_deployment(unique, proc=machines[0])
    for proc in machines:
        deploy.wait_for_runner(proc)
    time.sleep(2)  # both runners have registered and polled once

    started = time.monotonic()
    with get_client(sync_client=True) as client:
        ids = [client.create_flow_run_from_deployment(dep.id).id for _ in range(RUNS)]
    finished = [deploy.wait_final(run_id, timeout=300) for run_id in ids]
    elapsed = time.monotonic() - started

    states = [run.state.type.value for run in finished]
    assert states == ["COMPLETED"] * RUNS, states
    numbers = sorted(int(re.search(r"#(\d+)$", run.name).group(1)) for run in finished)
    assert numbers == list(range(1, RUNS + 1)), numbers
    homes = set()
    with get_client(sync_client=True) as client:
        for run in finished:
            summary = deploy.run_summary(run.id)
            assert summary["state"] == "completed"
            logs = [log.message for log in client.read_logs(log_filter=LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run.id])))]
            homes.update(m.split("ran on ")[1].split(" build")[0] for m in logs if "ran on " in m)
    assert homes == {str(tmp_path / "machine-a" / "home"), str(tmp_path / "machine-b" / "home")}
    print(f"{RUNS} runs across two serve processes in {elapsed:.1f}s")
