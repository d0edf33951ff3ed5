"""`approval` steps against the suite's Prefect server: the run is Paused with a run-input form;
approved through the API (resume_flow_run with run_input) and `ansflow approve`, rejected,
not answered in time; later steps read the answer; `finally` runs after a rejection; a step
of another branch runs on while the approval waits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from fixtures_pipeline import by_id, logs

pytestmark = pytest.mark.server

APPROVE_THEN_USE = """\
pipeline:
  name: {name}
  stages:
    - name: gate
      steps:
        - id: gate
          type: approval
          config:
            message: "Release build {{{{ pipeline.build_number }}}}?"
            timeout: {timeout}
            fields:
              note: {{description: Release note}}
              target: {{enum: [staging, prod], default: staging}}
    - name: ship
      steps:
        - id: ship
          type: command
          config:
            command: >-
              printf '%s|%s|%s|%s' {{{{ steps.gate.outputs.approved }}}}
              {{{{ steps.gate.outputs.comment }}}} {{{{ steps.gate.outputs.note }}}}
              {{{{ steps.gate.outputs.target }}}} > shipped
  finally:
    - id: always
      type: command
      config: {{command: "touch finally-ran"}}
"""


class Background:
    """A pipeline run in a thread of this process (as `ansflow run` runs it)."""

    def __init__(self, path: Path) -> None:
        from ansflow.flows.pipeline import pipeline_flow

        self.path = path
        self.state = None
        self.thread = threading.Thread(
            target=lambda: setattr(self, "state", pipeline_flow(str(path), None,
                                                                return_state=True)),
            daemon=True)
        self.thread.start()

    def paused_run(self, timeout: float = 90):
        """The flow run once it is Paused."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.thread.is_alive() or self.state is None, f"run ended: {self.state}"
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(
                        any_=[StateType.PAUSED]))))
            mine = [r for r in runs if (r.parameters or {}).get("pipeline_file")
                    == str(self.path)]
            if mine:
                return mine[0]
            time.sleep(0.3)
        raise AssertionError("the run did not pause")

    def result(self, timeout: float = 120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not end"
        return self.state, self.state.result(raise_on_failure=False)


def start(tmp_path: Path, text: str) -> Background:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return Background(path)


def gate(name: str, timeout: str = "10m") -> str:
    return APPROVE_THEN_USE.format(name=name, timeout=timeout)


def ansflow(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ))


def test_approved_through_the_api_later_steps_read_the_answer(prefect_server, tmp_path):
    from prefect.flow_runs import resume_flow_run

    run = start(tmp_path, gate("approval-api"))
    paused = run.paused_run()
    assert paused.state.is_paused()
    assert paused.state.state_details.run_input_keyset  # the UI's form
    assert not (tmp_path / "shipped").exists()
    resume_flow_run(paused.id, run_input={"approve": True, "comment": "LGTM; ship it",
                                          "note": "$(touch pwned) 'quoted'"})
    state, summary = run.result()
    assert state.is_completed(), state
    steps = by_id(summary)
    assert steps["gate"]["state"] == "completed"
    assert steps["gate"]["outputs"] == {"approved": "true", "comment": "LGTM; ship it",
                                        "note": "$(touch pwned) 'quoted'",
                                        "target": "staging"}
    # The typed-in values reached the shell as data, through the templates' quoting.
    assert (tmp_path / "shipped").read_text() == \
        "true|LGTM; ship it|$(touch pwned) 'quoted'|staging"
    assert not (tmp_path / "pwned").exists()
    markdown = summary_artifact("approval-api")
    assert "- **gate**: approved: LGTM; ship it (note `$(touch pwned) 'quoted'`, target " \
        "`staging`)" in markdown
    assert (tmp_path / "finally-ran").exists()
    lines = logs(paused.id, "approved (LGTM; ship it)")
    assert "approved (LGTM; ship it)" in lines
    assert any(f"ansflow approve {paused.id}" in m for m in lines)


def test_the_request_event_carries_the_run_link(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
    from prefect.flow_runs import resume_flow_run

    run = start(tmp_path, gate("approval-event"))
    paused = run.paused_run()
    resume_flow_run(paused.id, run_input={"approve": True})
    state, _summary = run.result()
    assert state.is_completed(), state
    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            page = client.request("POST", "/events/filter", json={"filter": EventFilter(
                event=EventNameFilter(prefix=["ansflow.pipeline.approval."]),
                related=EventRelatedFilter(id=[f"prefect.flow-run.{paused.id}"]),
            ).model_dump(mode="json"), "limit": 10}).json()
        names = {e["event"]: e for e in page["events"]}
        if len(names) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    requested = names["ansflow.pipeline.approval.requested"]
    assert requested["payload"]["step"] == "gate"
    assert requested["payload"]["message"].startswith("Release build ")
    assert requested["payload"]["flow_run_id"] == str(paused.id)
    assert requested["resource"]["prefect.resource.id"] == "ansflow.pipeline.approval-event"
    decided = names["ansflow.pipeline.approval.decided"]
    assert decided["payload"]["decision"] == "approved"


def test_rejected_the_step_fails_later_steps_do_not_run_finally_does(prefect_server, tmp_path):
    from prefect.flow_runs import resume_flow_run

    run = start(tmp_path, gate("approval-reject"))
    paused = run.paused_run()
    resume_flow_run(paused.id, run_input={"approve": False, "comment": "not\non a Friday"})
    state, summary = run.result()
    assert state.is_failed()
    steps = by_id(summary)
    assert steps["gate"]["state"] == "failed"
    assert steps["gate"]["message"] == "rejected (not on a Friday)"
    assert steps["ship"]["state"] == "not_run"
    assert steps["always"]["state"] == "completed"
    assert not (tmp_path / "shipped").exists() and (tmp_path / "finally-ran").exists()
    assert summary["message"] == "1 step(s) failed: gate"
    markdown = summary_artifact("approval-reject")
    assert "## Approvals" in markdown and "- **gate**: rejected (not on a Friday)" in markdown


def summary_artifact(pipeline: str) -> str:
    """The newest markdown summary artifact of ``pipeline``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from ansflow.flows.publish import artifact_key

    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            found = client.read_latest_artifacts(artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"{artifact_key(pipeline)}-summary"])))
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert found, "no summary artifact"
    return str(found[0].data)


def test_not_answered_in_time_the_run_goes_on_to_finally_and_fails(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client

    run = start(tmp_path, gate("approval-late", timeout="3s"))
    paused = run.paused_run()
    state, summary = run.result()
    assert state.is_failed()
    steps = by_id(summary)
    assert steps["gate"]["state"] == "timedout"
    assert steps["gate"]["message"] == "not approved within 3 s"
    assert steps["ship"]["state"] == "not_run" and steps["always"]["state"] == "completed"
    with get_client(sync_client=True) as client:
        ended = client.read_flow_run(paused.id)
    assert ended.state.is_failed()  # ended by the run, not left Paused


def test_another_branch_runs_on_while_the_approval_waits(prefect_server, tmp_path):
    from prefect.flow_runs import resume_flow_run

    run = start(tmp_path, """\
        pipeline:
          name: approval-parallel
          stages:
            - name: both
              parallel: true
              steps:
                - id: gate
                  type: approval
                  config: {message: "Go?"}
                - id: build
                  type: command
                  config: {command: "sleep 1 && touch built"}
        """)
    paused = run.paused_run()
    deadline = time.monotonic() + 60
    while not (tmp_path / "built").exists():
        assert time.monotonic() < deadline, "the other branch did not run"
        time.sleep(0.3)
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        assert client.read_flow_run(paused.id).state.is_paused()  # still waiting
    resume_flow_run(paused.id, run_input={"approve": True})
    state, summary = run.result()
    assert state.is_completed(), state
    assert {s["id"]: s["state"] for s in summary["steps"]} == {"gate": "completed",
                                                               "build": "completed"}


def test_ansflow_approve_answers_with_comment_and_fields(prefect_server, tmp_path):
    run = start(tmp_path, gate("approval-cli"))
    paused = run.paused_run()
    bad = ansflow("approve", str(paused.id), "--set", "nope=1")
    assert bad.returncode == 2, bad.stderr
    assert "unknown field 'nope'" in bad.stderr and "note, target" in bad.stderr
    bad = ansflow("approve", str(paused.id), "--set", "target=moon")
    assert bad.returncode == 1 and "refused the answer" in bad.stderr, bad.stderr
    out = ansflow("approve", str(paused.id), "--comment", "ok by me", "--set", "note=v1.2",
                  "--set", "target=prod")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "approved" in out.stdout
    state, summary = run.result()
    assert state.is_completed(), state
    assert by_id(summary)["gate"]["outputs"] == {"approved": "true", "comment": "ok by me",
                                                 "note": "v1.2", "target": "prod"}
    again = ansflow("approve", str(paused.id))
    assert again.returncode == 1
    assert "is not waiting for an approval" in again.stderr, again.stderr


def test_ansflow_approve_reject(prefect_server, tmp_path):
    run = start(tmp_path, gate("approval-cli-reject"))
    paused = run.paused_run()
    out = ansflow("approve", str(paused.id), "--reject", "--comment", "broken build")
    assert out.returncode == 0, out.stdout + out.stderr
    state, summary = run.result()
    assert state.is_failed()
    assert by_id(summary)["gate"]["message"] == "rejected (broken build)"


def test_ansflow_approve_refuses_a_bad_or_unknown_run_id(prefect_server):
    out = ansflow("approve", "not-a-run")
    assert out.returncode == 2 and "is not a flow run id" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    out = ansflow("approve", str(uuid.uuid4()))
    assert out.returncode == 1 and "is not on this Prefect server" in out.stderr, out.stderr
    out = ansflow("approve", str(uuid.uuid4()), "--set", "broken")
    assert out.returncode == 2 and "--set expects NAME=VALUE" in out.stderr, out.stderr
