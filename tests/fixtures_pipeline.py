"""Pipeline runs against the suite's Prefect server: the `run_pipeline` fixture, `by_id`, and
the run's task runs and log lines as the server recorded them (`task_runs`, `logs`)."""

import textwrap
import time
from pathlib import Path

import pytest


@pytest.fixture
def run_pipeline(prefect_server, tmp_path):
    """Write a pipeline file in a temp workspace and run it in-process; returns the summary."""
    from ansflow.flows.pipeline import pipeline_flow

    def run(text: str, variables: dict | None = None, name: str = "pipeline.yaml"):
        path = Path(tmp_path, name)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        state = pipeline_flow(str(path), variables, return_state=True)
        summary = state.result(raise_on_failure=False)
        return state, summary

    return run


def by_id(summary: dict) -> dict:
    """A run summary's steps by id."""
    return {s["id"]: s for s in summary["steps"]}


def task_runs(flow_run_id):
    """The flow run's task runs once the server has recorded their final states (task run
    states reach the server as events, a moment after the flow ends)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60  # logs queue behind earlier runs on a busy machine
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def logs(flow_run_id, *expected: str) -> list[str]:
    """The run's log lines, once every ``expected`` line has arrived (logs are batched)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # this process's queued logs go out now
    deadline = time.monotonic() + 120  # logs queue behind earlier runs on a busy machine
    while True:
        with get_client(sync_client=True) as client:
            lines = [log.message for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))]
        if all(e in lines for e in expected) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


FIVE_STEPS = """\
pipeline:
  name: {name}
  steps:
    - id: s1
      type: command
      config:
        command: echo 1 >> count-1 && echo "v=one-$ANSFLOW_BUILD_NUMBER" >> "$ANSFLOW_OUTPUT"
    - id: s2
      type: command
      config: {{command: "echo 1 >> count-2"}}
    - id: s3
      type: command
      config: {{command: "echo 1 >> count-3 && test -f fixed"}}
    - id: s4
      type: command
      config: {{command: "echo 1 >> count-4 && echo '{{{{ steps.s1.outputs.v }}}}' > s4-saw"}}
    - id: s5
      type: command
      config: {{command: "echo 1 >> count-5"}}
"""
FINALLY_STEP = """\
  finally:
    - id: f
      type: command
      config: {command: "echo 1 >> count-f"}
"""


def five_steps(name: str, with_finally: bool = False) -> str:
    """The re-run tests' pipeline: five steps, each counting its runs in count-N; the third
    fails until a file `fixed` exists; with a `finally` step counting in count-f."""
    return FIVE_STEPS.format(name=name) + (FINALLY_STEP if with_finally else "")


def step_counts(workspace: Path, names) -> list[int]:
    """How often each step named in ``names`` ran (the lines of its count-NAME file)."""
    return [len((workspace / f"count-{n}").read_text().split())
            if (workspace / f"count-{n}").exists() else 0 for n in names]


def server_events(name: str, resource_id: str, count: int = 1, timeout: float = 30) -> list:
    """The events ``name`` about ``resource_id`` (primary or related) on the suite's server,
    oldest first, once ``count`` have arrived (events reach the server late) or after
    ``timeout`` seconds."""
    from prefect.client.orchestration import get_client

    body = {"filter": {"event": {"name": [name]}, "any_resource": {"id": [resource_id]},
                       "occurred": {"since": "2000-01-01T00:00:00Z"},
                       "order": "ASC"},
            "limit": 50}
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            events = client.request("POST", "/events/filter", json=body).json()["events"]
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.5)


def run_artifacts(run_id) -> list:
    """The artifacts a flow run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])))
