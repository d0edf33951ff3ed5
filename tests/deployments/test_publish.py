"""A served run's artifacts and event, and a real Automation that fires on that event."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.server


def _wait_for_runs(deployment_id, timeout: float = 90):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployment_id])))
            if runs and all(r.state and r.state.is_final() for r in runs):
                return runs
            time.sleep(1)
    raise AssertionError("the automation started no run")


def test_failed_run_publishes_masked_artifacts_and_an_event_that_fires_an_automation(
        serve, deploy, tmp_path, unique):
    from prefect.blocks.system import Secret
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.events.actions import RunDeployment
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    Secret(value="hunter2-secret-value").save(unique, overwrite=True)
    fails, notify = f"{unique}-fails", f"{unique}-notify"
    (tmp_path / "fails.yaml").write_text(deploy.pipeline_text(fails, command="exit 3").replace(
        "  steps:\n", "  steps:\n    - name: leak\n      type: command\n      config:\n"
        f"        command: echo token={{{{ secrets.{unique} }}}} >> $ANSFLOW_OUTPUT\n"))
    (tmp_path / "notify.yaml").write_text(deploy.pipeline_text(notify))
    proc = serve(str(tmp_path))
    deploy.wait_for_deployment(fails, proc=proc)
    notify_dep = deploy.wait_for_deployment(notify, proc=proc)
    deploy.wait_for_runner(proc)

    automation = AutomationCore(
        name=f"notify on {fails} failure",
        trigger=EventTrigger(
            expect={"ansflow.pipeline.failed"},
            match={"prefect.resource.id": f"ansflow.pipeline.{fails}"},
            posture=Posture.Reactive, threshold=1),
        actions=[RunDeployment(source="selected", deployment_id=notify_dep.id, parameters={
            "greeting": {"__prefect_kind": "jinja",
                         "template": "build {{ event.payload.build_number }} failed at "
                                     "{{ event.payload.failed_steps[0].id }}"}})],
    )
    with get_client(sync_client=True) as client:
        automation_id = client.create_automation(automation)
    try:
        time.sleep(2)  # the triggers service loads new automations on a short cycle
        run = deploy.run_and_wait(fails)
        assert run.state.is_failed()
        [notified] = _wait_for_runs(notify_dep.id)
        assert notified.state.is_completed(), notified.state
        assert notified.parameters["greeting"] == "build 1 failed at say"
    finally:
        with get_client(sync_client=True) as client:
            client.delete_automation(automation_id)

    with get_client(sync_client=True) as client:
        table, markdown = (client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key])))[0] for key in (
                f"ansflow-{fails}", f"ansflow-{fails}-summary"))
    assert table.type == "table" and table.flow_run_id == run.id
    text = str(table.data)
    assert "hunter2-secret-value" not in text and "***" in text
    assert '"exit code": "3"' in text and '"state": "failed"' in text
    assert markdown.type == "markdown" and "## Failed steps" in markdown.data
    assert f"{fails} #1" in markdown.data and "hunter2" not in markdown.data


@pytest.mark.postgres
def test_completed_run_emits_the_completed_event_with_pipeline_and_build_number(
        serve, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique))
    proc = serve(str(tmp_path))
    deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    run = deploy.run_and_wait(unique)
    assert run.state.is_completed()
    body = {"filter": {"event": {"name": ["ansflow.pipeline.completed"]},
                       "any_resource": {"id": [f"ansflow.pipeline.{unique}"]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"}},
            "limit": 10}
    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json=body).json()["events"]
            if events or time.monotonic() > deadline:
                break
            time.sleep(1)
    [event] = events
    assert event["payload"]["pipeline"] == unique
    assert event["payload"]["build_number"] == 1 and event["payload"]["failed_steps"] == []
    assert any(r["prefect.resource.id"] == f"prefect.flow-run.{run.id}" for r in event["related"])
