"""Prefect's Retry of a served pipeline run (the UI's call: set_state AwaitingRetry) and
`ansflow retry` of one: only the steps that did not complete run again, same build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fixtures_pipeline import five_steps, step_counts

pytestmark = pytest.mark.server

def counts(workspace) -> list[int]:
    return step_counts(workspace, "12345")


def test_retry_of_a_served_run_reruns_only_what_did_not_complete(serve, deploy, tmp_path,
                                                                 unique):
    from prefect.client.orchestration import get_client
    from prefect.states import Scheduled

    (tmp_path / "p.yaml").write_text(five_steps(unique))
    proc = serve(str(tmp_path / "p.yaml"))
    deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)

    # 1. Through the API, as the UI's Retry button does.
    first = deploy.run_and_wait(unique)
    assert first.state.is_failed(), first.state
    build = deploy.run_summary(first.id)["build_number"]
    assert counts(tmp_path) == [1, 1, 1, 0, 0]
    (tmp_path / "fixed").touch()
    with get_client(sync_client=True) as client:
        result = client.set_flow_run_state(
            first.id, Scheduled(name="AwaitingRetry", message="Retry from the UI"), force=False)
        assert result.status.value == "ACCEPT", result.details
    time.sleep(1)
    again = deploy.wait_final(first.id, timeout=180)
    assert again.state.is_completed(), (again.state, proc.output()[-3000:])
    summary = deploy.run_summary(first.id)
    assert summary["build_number"] == build and summary["reused"] == ["s1", "s2"]
    assert again.name == f"{unique} #{build}"
    assert counts(tmp_path) == [1, 1, 2, 1, 1]
    assert (tmp_path / "s4-saw").read_text().strip() == f"one-{build}"

    # 2. With `ansflow retry`, which waits for the serving process to run it.
    (tmp_path / "fixed").unlink()
    second = deploy.run_and_wait(unique)
    assert second.state.is_failed()
    build2 = deploy.run_summary(second.id)["build_number"]
    assert build2 == build + 1
    assert counts(tmp_path) == [2, 2, 3, 1, 1]
    (tmp_path / "fixed").touch()
    out = subprocess.run([sys.executable, "-m", "ansflow.cli", "retry", str(second.id),
                          "--json", "--timeout", "180"], capture_output=True, text=True,
                         timeout=240, env=dict(os.environ))
    assert out.returncode == 0, out.stdout + out.stderr
    retried = json.loads(out.stdout)
    assert retried["run_id"] == str(second.id) and retried["build_number"] == build2
    assert retried["state"] == "completed" and retried["reused"] == ["s1", "s2"]
    assert counts(tmp_path) == [2, 2, 4, 2, 2]
