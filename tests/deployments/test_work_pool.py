"""deployments/prefect.yaml and its Python equivalent: work-pool deployments run by a worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def test_prefect_yaml_and_python_deploy_to_a_process_pool_and_a_worker_runs_them(
        prefect_server, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client

    (tmp_path / "pipeline.yaml").write_text(deploy.pipeline_text(unique))
    (tmp_path / "py.yaml").write_text(deploy.pipeline_text(f"{unique}-py"))
    env = {"ANSFLOW_PIPELINES_ROOT": str(tmp_path)}
    prefect = [sys.executable, "-m", "prefect"]
    res = _run([*prefect, "work-pool", "create", "ansflow", "--type", "process",
                "--overwrite"], env)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run([*prefect, "--no-prompt", "deploy", "--all", "--prefect-file",
                str(REPO / "deployments" / "prefect.yaml")], env)
    assert res.returncode == 0, res.stdout + res.stderr
    res = _run([sys.executable, "-m", "ansflow.deployments.pipelines", "--pool", "ansflow",
                str(tmp_path / "py.yaml")], env)
    assert res.returncode == 0, res.stdout + res.stderr

    with get_client(sync_client=True) as client:
        by_file = client.read_deployment_by_name("ansflow-pipeline/ansflow-pipeline-file")
        import yaml

        from ansflow.manage import load_operations

        declared = {d["name"] for d in yaml.safe_load(
            (REPO / "deployments" / "prefect.yaml").read_text())["deployments"]
            if str(d.get("entrypoint", "")).startswith("ansflow.flows.manage.")}
        assert set(load_operations()) == declared  # prefect.yaml declares every operation
        for op in load_operations():  # every served operation is on the work pool too
            managing = client.read_deployment_by_name(f"ansflow-k8s/{op}")
            assert managing.entrypoint == f"ansflow.flows.manage.manage_{op}"
            assert managing.work_pool_name == "ansflow" and "ansflow-k8s" in managing.tags
            assert "cluster" in managing.parameter_openapi_schema["required"]
        from ansflow.flows.upkeep import UPKEEP

        for job in UPKEEP.values():  # the upkeep flows on cron, as serve --upkeep has them
            upkeep = client.read_deployment_by_name(f"{job.name}/{job.name}")
            assert upkeep.entrypoint == job.flow.replace(":", ".")
            assert [s.schedule.cron for s in upkeep.schedules] == [job.cron]
            assert upkeep.work_pool_name == "ansflow"
        assert by_file.entrypoint == "ansflow.flows.pipeline.pipeline_flow"
        assert by_file.work_pool_name == "ansflow" and not by_file.paused
        from_py = client.read_deployment_by_name(f"ansflow-pipeline/{unique}-py")
        assert from_py.parameters["variables"] == {"greeting": "hello", "count": 2}
        runs = [client.create_flow_run_from_deployment(by_file.id, parameters={
                    "variables": {"greeting": "pooled"}}).id,
                client.create_flow_run_from_deployment(from_py.id).id]
    worker = subprocess.Popen([*prefect, "worker", "start", "--pool", "ansflow", "--type",
                               "process", "--limit", "2"],
                              env={**os.environ, **env, "PREFECT_WORKER_QUERY_SECONDS": "2"},
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        finished = [deploy.wait_final(run_id, timeout=180) for run_id in runs]
    finally:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
    assert [r.state.type.value for r in finished] == ["COMPLETED", "COMPLETED"], \
        [r.state for r in finished]
    assert finished[0].name == f"{unique} #1" and finished[1].name == f"{unique}-py #1"
    assert deploy.run_summary(finished[0].id)["steps"][0]["state"] == "completed"
