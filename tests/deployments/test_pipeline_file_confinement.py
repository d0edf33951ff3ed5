"""A deployment run's `pipeline_file` (a run-form value) is confined to the
pipelines root the deployment was made with. Real Prefect server; each flow run is executed
by `python -m prefect.engine`, as a process worker does."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansflow.errors import UsageError
from ansflow.paths import confine_pipeline_file

pytestmark = pytest.mark.server


def _execute(flow_run_id, root, cwd) -> None:
    env = {**os.environ, "PREFECT__FLOW_RUN_ID": str(flow_run_id),
           "ANSFLOW_PIPELINES_ROOT": str(root)}
    subprocess.run([sys.executable, "-m", "prefect.engine"], env=env, cwd=cwd,
                   capture_output=True, timeout=240)


def test_a_deployment_run_cannot_name_a_file_outside_its_root(prefect_server, deploy,
                                                              tmp_path, unique):
    from prefect.client.orchestration import get_client

    from ansflow.deployments.pipelines import pipeline_deployments

    root = tmp_path / "pipelines"
    root.mkdir()
    (root / "p.yaml").write_text(deploy.pipeline_text(unique))
    outside = tmp_path / "outside.yaml"
    outside.write_text(deploy.pipeline_text(f"{unique}-outside"))
    os.symlink(outside, root / "link.yaml")
    (deployment,) = pipeline_deployments([str(root / "p.yaml")])
    assert deployment.parameters["pipeline_file"] == "p.yaml"
    assert deployment.job_variables["env"]["ANSFLOW_PIPELINES_ROOT"] == str(root)
    from prefect.client.schemas.actions import WorkPoolCreate

    pool = f"confine-{unique}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"), overwrite=True)
    deployment_id = deployment.apply(work_pool_name=pool)
    bad = ["/etc/passwd", "../outside.yaml", "link.yaml"]  # absolute, climbing out, a link out
    with get_client(sync_client=True) as client:
        runs = {name: client.create_flow_run_from_deployment(
            deployment_id, parameters={"pipeline_file": name}).id for name in bad}
        good = client.create_flow_run_from_deployment(deployment_id).id
    for run_id in [*runs.values(), good]:
        _execute(run_id, root, tmp_path)
    for name, run_id in runs.items():
        run = deploy.wait_final(run_id, timeout=60)
        assert run.state.is_failed(), (name, run.state)
        assert "outside the pipelines root" in run.state.message, run.state.message
        assert "root:" not in run.state.message  # nothing of /etc/passwd was read
    run = deploy.wait_final(good, timeout=120)
    assert run.state.is_completed(), run.state
    assert run.name == f"{unique} #1"


def test_confine_pipeline_file_units(tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_PIPELINES_ROOT", str(tmp_path))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.yml").write_text("steps: []\n")
    assert confine_pipeline_file("sub/a.yml") == str(tmp_path / "sub" / "a.yml")
    assert confine_pipeline_file(str(tmp_path / "sub" / "a.yml")) == str(tmp_path / "sub/a.yml")
    for bad in ("/etc/passwd", "../x.yaml", "sub/../../x.yaml", "", ".", "sub/notes.txt"):
        with pytest.raises(UsageError, match="pipeline_file"):
            confine_pipeline_file(bad)
