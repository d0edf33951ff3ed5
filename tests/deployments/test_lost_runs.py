"""A serve process killed with SIGKILL: its run ends Crashed (heartbeat Automation)."""

from __future__ import annotations

import signal
import time

import pytest

pytestmark = pytest.mark.server


def test_serve_killed_with_sigkill_mid_run_ends_the_run_crashed_not_running_forever(
        serve, deploy, tmp_path, unique):
    from prefect.client.orchestration import get_client

    from ansflow.flows.deployment import LOST_RUNS_AUTOMATION

    (tmp_path / "p.yaml").write_text(deploy.pipeline_text(unique, command="sleep 300"))
    # One 30 s heartbeat period plus 10 s instead of the default three periods (90 s).
    proc = serve(str(tmp_path / "p.yaml"), env={"ANSFLOW_LOST_RUN_AFTER": "40"})
    dep = deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(LOST_RUNS_AUTOMATION)
        run = client.create_flow_run_from_deployment(dep.id)
        deadline = time.monotonic() + 60
        while not client.read_flow_run(run.id).state.is_running():
            assert time.monotonic() < deadline, "run never started"
            time.sleep(0.5)
    time.sleep(3)  # the run's first heartbeat is out
    proc.stop(signal.SIGKILL)  # the whole process group: serve and the flow-run process
    ended = deploy.wait_final(run.id, timeout=180)
    assert ended.state.is_crashed(), ended.state
    assert "no heartbeat" in ended.state.message
    with get_client(sync_client=True) as client:
        automation = client.read_automations_by_name(LOST_RUNS_AUTOMATION)[0]
        assert automation.trigger.within.total_seconds() == 40


def test_lost_run_window_defaults_to_three_periods_and_refuses_a_window_that_trips_on_time(
        monkeypatch):
    from ansflow.errors import AnsflowError
    from ansflow.flows.deployment import lost_run_window

    monkeypatch.delenv("ANSFLOW_LOST_RUN_AFTER", raising=False)
    assert lost_run_window(30) == 90
    monkeypatch.setenv("ANSFLOW_LOST_RUN_AFTER", "50")
    assert lost_run_window(30) == 50
    for bad, said in (("34", "shorter than one heartbeat"), ("soon", "not a number")):
        monkeypatch.setenv("ANSFLOW_LOST_RUN_AFTER", bad)
        with pytest.raises(AnsflowError, match=said):
            lost_run_window(30)
