"""`ansflow serve` against the suite's real Prefect server: deployments, form, runs, faults."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from prefect.exceptions import PrefectHTTPStatusError

pytestmark = pytest.mark.server


def _prefect_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_serve_reports_invalid_files_and_serves_the_rest_with_variables_as_parameters(
        serve, deploy, tmp_path, unique):
    good = tmp_path / "good.yaml"
    good.write_text(deploy.pipeline_text(unique, extra=(
        "schedule: {cron: '0 3 * * *', timezone: Europe/Paris}\n")))
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  name: broken\n  stepz: []\n")
    (tmp_path / "cron.yaml").write_text(deploy.pipeline_text(
        f"{unique}-cron", extra="schedule: '99 * * *'\n"))
    proc = serve(str(tmp_path))
    dep = deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    out = proc.output()
    assert f"{bad}:3:3:" in out, out
    assert f"cannot serve '{unique}-cron': Invalid cron string" in out
    assert f"serving ansflow-pipeline/{unique}" in out
    assert dep.entrypoint.startswith("ansflow.flows.deployment.pipeline_")
    schema = dep.parameter_openapi_schema
    assert schema["properties"]["greeting"] == {
        "title": "greeting", "position": 0, "type": "string", "default": "hello",
        "description": "What the step says"}
    assert schema["properties"]["count"]["type"] == "integer"
    assert schema["additionalProperties"] is False
    assert dep.enforce_parameter_schema
    assert dep.description == f"Test pipeline {unique}"
    [sched] = dep.schedules
    assert sched.active and not dep.paused
    assert sched.schedule.cron == "0 3 * * *" and sched.schedule.timezone == "Europe/Paris"


@pytest.mark.postgres
def test_prefect_deployment_run_param_overrides_a_variable_like_ansflow_run(
        serve, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    proc = serve(str(tmp_path / "p.yaml"))
    deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    res = _prefect_cli("deployment", "run", f"ansflow-pipeline/{unique}",
                       "--param", "greeting=bonjour", "--param", "count=7", "--watch",
                       "--watch-timeout", "120")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Completed" in res.stdout
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(f"ansflow-pipeline/{unique}")
        [run] = client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[dep.id])))
        assert run.state.is_completed()
        assert run.parameters == {"greeting": "bonjour", "count": 7}
        logs = client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    summary = deploy.run_summary(run.id)
    assert summary["build_number"] == 1 and run.name == f"{unique} #1"
    assert summary["steps"][0]["state"] == "completed"
    assert any("bonjour x7" in log.message for log in logs)
    second = deploy.run_and_wait(unique)
    assert second.state.is_completed() and second.name == f"{unique} #2"


def test_unknown_or_ill_typed_parameter_is_rejected_with_its_name_and_no_run_starts(
        serve, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    proc = serve(str(tmp_path / "p.yaml"))
    dep = deploy.wait_for_deployment(unique, proc=proc)
    res = _prefect_cli("deployment", "run", f"ansflow-pipeline/{unique}", "--param", "colour=red")
    assert "'colour'" in res.stdout + res.stderr
    res = _prefect_cli("deployment", "run", f"ansflow-pipeline/{unique}", "--param", "count=many")
    assert res.returncode != 0
    assert "count" in res.stdout + res.stderr and "integer" in res.stdout + res.stderr
    with get_client(sync_client=True) as client:
        with pytest.raises(PrefectHTTPStatusError, match="colour"):
            client.create_flow_run_from_deployment(dep.id, parameters={"colour": "red"})
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[dep.id])))
    assert runs == []


def test_edited_file_is_picked_up_on_re_serve(serve, deploy, tmp_path, unique):
    path = tmp_path / "p.yaml"
    path.write_text(deploy.pipeline_text(unique))
    first = serve(str(path))
    dep = deploy.wait_for_deployment(unique, proc=first)
    first.stop()
    path.write_text(deploy.pipeline_text(unique).replace("count: 2", "count: 3\n    region: eu"))
    from ansflow.flows.deployment import file_version

    second = serve(str(path))
    new = deploy.wait_for_deployment(unique, proc=second, version=file_version(path))
    assert new.id == dep.id
    assert new.parameter_openapi_schema["properties"]["count"]["default"] == 3
    assert new.parameter_openapi_schema["properties"]["region"]["default"] == "eu"
    deploy.wait_for_runner(second)
    run = deploy.run_and_wait(unique, {"region": "us"})
    assert run.state.is_completed(), run.state


def test_deleted_or_broken_file_fails_its_runs_clearly_and_others_keep_working(
        serve, deploy, tmp_path, unique):
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text(deploy.pipeline_text(f"{unique}-one"))
    two.write_text(deploy.pipeline_text(f"{unique}-two"))
    proc = serve(str(tmp_path))
    deploy.wait_for_deployment(f"{unique}-one", proc=proc)
    deploy.wait_for_deployment(f"{unique}-two", proc=proc)
    deploy.wait_for_runner(proc)
    one.unlink()
    gone = deploy.run_and_wait(f"{unique}-one")
    assert gone.state.is_failed() and "no such file" in gone.state.message
    one.write_text("pipeline:\n  name: x\n  steps: [{name: a, type: comand}]\n")
    broken = deploy.run_and_wait(f"{unique}-one")
    assert broken.state.is_failed() and "one.yaml:3:" in broken.state.message
    fine = deploy.run_and_wait(f"{unique}-two")
    assert fine.state.is_completed()


def test_schedule_stays_active_after_serve_stops(serve, deploy, tmp_path, unique):
    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(
        unique, extra="schedule: '*/30 * * * *'\n"))
    proc = serve(str(tmp_path / "p.yaml"))
    deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    proc.stop()
    assert proc.proc.returncode is not None
    dep = deploy.wait_for_deployment(unique)
    assert not dep.paused and all(s.active for s in dep.schedules) and dep.schedules


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_with_the_server_unreachable_says_so_and_exits_non_zero(deploy, tmp_path, unique):
    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    url = f"http://127.0.0.1:{_free_port()}/api"
    res = subprocess.run([sys.executable, "-m", "ansflow.cli", "serve", str(tmp_path)],
                         env={**os.environ, "PREFECT_API_URL": url}, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 1
    assert f"the Prefect server at {url} is unreachable" in res.stderr
    assert "Traceback" not in res.stderr


def test_serve_with_no_valid_file_exits_non_zero(tmp_path):
    (tmp_path / "bad.yaml").write_text("pipeline: [1\n")
    res = subprocess.run([sys.executable, "-m", "ansflow.cli", "serve", str(tmp_path),
                          str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1
    assert f"{tmp_path / 'bad.yaml'}:" in res.stderr
    assert "missing.yaml: no such file or folder" in res.stderr
    assert "no valid pipeline to serve" in res.stderr and "Traceback" not in res.stderr


def test_serve_stopped_mid_run_cancels_the_run_and_a_new_serve_keeps_serving(
        serve, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique, command="sleep 60"))
    proc = serve(str(tmp_path / "p.yaml"))
    dep = deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(dep.id)
        deadline = time.monotonic() + 60
        while not client.read_flow_run(run.id).state.is_running():
            assert time.monotonic() < deadline, "run never started"
            time.sleep(0.5)
    time.sleep(2)
    # SIGTERM: Prefect's runner cancels its in-flight runs, then exits (given time on a busy
    # machine: a SIGKILL after the grace period would leave nothing to report the cancel).
    proc.stop(timeout=90)
    ended = deploy.wait_final(run.id, timeout=120)
    assert ended.state.is_cancelled(), ended.state
    again = serve(str(tmp_path / "p.yaml"))
    deploy.wait_for_runner(again)
    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    assert deploy.run_and_wait(unique).state.is_completed()
