"""`ansflow retry RUN_ID`: Prefect's Retry of a pipeline run, from the terminal.

The flow run is set to AwaitingRetry, as the Prefect UI's Retry button does. A run of a
deployment is then re-run by the process serving it (`ansflow serve`, a worker); a run that
`ansflow run` started has no such process, so this command runs the same flow run again
in-process. Either way the run keeps its id and build number and re-runs only the steps
that did not complete (ansflow.flows.rerun), in the run's kept workspace when it is still
there (ansflow.workspaces), else in a new one with every step run again.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ansflow.cli.common import parse_run_id, read_flow_run
from ansflow.errors import AnsflowError, UsageError

err = Console(stderr=True, highlight=False)
RETRYABLE_TYPES = ("FAILED", "CANCELLED", "CRASHED")
WAIT_POLL = 1.0


def retry(
    run_id: str = typer.Argument(..., help="The pipeline run's flow run id."),
    strict: bool = typer.Option(
        False, "--strict", hidden=True,
        help="Kept for old scripts: a retry always refuses a changed file or parameters."),
    wait: bool = typer.Option(
        True, "--wait/--no-wait", help="A deployment's run: wait until the retry ends."),
    timeout: float = typer.Option(3600.0, "--timeout", min=1,
                                  help="Seconds --wait waits at most."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
) -> None:
    """Retry a failed or cancelled pipeline run: only the steps that did not complete run
    again, with the same build number."""
    try:
        summary = _retry(run_id, strict=strict, wait=wait, timeout=timeout)
    except AnsflowError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
    if summary is None:
        raise typer.Exit(0)
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        from ansflow.cli.render import summary_table  # noqa: PLC0415

        Console(highlight=False).print(summary_table(summary))
    raise typer.Exit(0 if summary.get("state") == "completed" else 1)


def not_as_recorded(recorded: dict[str, Any], flow_run: Any) -> str | None:
    """Why retrying ``flow_run`` would not run what the store recorded (None: it would): its
    parameters on the server, and the pipeline file the retry would read, against the
    digests the run recorded. A deployment's run checks its file again when it starts (only
    its worker knows where the file lies)."""
    from ansflow.flows.rerun import params_digest, recorded_mismatch  # noqa: PLC0415

    parameters = dict(flow_run.parameters or {})
    why = recorded_mismatch(recorded, params_digest(parameters), None)
    if why:
        return why
    path = recorded.get("pipeline_file")
    if flow_run.deployment_id is None and isinstance(parameters.get("pipeline_file"), str):
        path = parameters["pipeline_file"]  # what `ansflow run`'s flow reads again
    if not path or not recorded.get("file_sha256"):
        return "the run did not record its pipeline file"
    try:
        now = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        return f"its pipeline file {path} cannot be read ({exc.strerror or exc})"
    return recorded_mismatch(recorded, recorded["params_sha256"], now)


def _retry(run_id: str, *, strict: bool, wait: bool, timeout: float) -> dict | None:
    flow_run_id = parse_run_id(run_id)
    from ansflow.cli.runner import ensure_server  # noqa: PLC0415 - imports Prefect
    from ansflow.store import Store  # noqa: PLC0415

    with closing(Store()) as store:
        recorded = store.run(str(flow_run_id))
    if recorded is None:
        raise AnsflowError(f"run {flow_run_id} is not in the ansflow store (not a pipeline run "
                           "of this ANSFLOW_HOME / ANSFLOW_DATABASE_URL)")
    ensure_server()
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.states import AwaitingRetry  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        flow_run = read_flow_run(client, flow_run_id)
        state = flow_run.state
        if state is None or state.type.value not in RETRYABLE_TYPES:
            raise AnsflowError(f"run {flow_run_id} is {state.name if state else 'unknown'}; "
                               "only a failed, cancelled or crashed run is retried")
        why = not_as_recorded(recorded, flow_run)
        if why:
            raise AnsflowError(f"run {flow_run_id} not retried: {why} (a retry runs exactly "
                               "what the run recorded; start a new run instead)")
        # As the UI's Retry does; the server reschedules only a deployment's run, so a run
        # `ansflow run` started is set to AwaitingRetry by force (this process runs it).
        result = client.set_flow_run_state(
            flow_run_id, AwaitingRetry(message="Retry from ansflow retry"),
            force=flow_run.deployment_id is None)
        if result.status.value != "ACCEPT":
            raise AnsflowError(f"the Prefect server refused the retry: "
                               f"{getattr(result.details, 'reason', None) or result.status.value}")
        err.print(_workspace_note(str(flow_run_id), local=flow_run.deployment_id is None),
                  markup=False, soft_wrap=True)
        if flow_run.deployment_id is None:
            return _run_here(client.read_flow_run(flow_run_id))
    if not wait:
        err.print(f"run {flow_run_id} scheduled for retry; the process serving its "
                  "deployment runs it", markup=False, soft_wrap=True)
        return None
    return _wait_for(flow_run_id, timeout)


def _workspace_note(run_id: str, *, local: bool) -> str:
    """Whether the retry finds the run's kept workspace (ansflow.workspaces)."""
    from ansflow.workspaces import (  # noqa: PLC0415
        WORKSPACE_DIR,
        read_meta,
        workspace_mode,
        workspaces_root,
    )

    if not local:
        return ("the process serving the run reuses its kept workspace when it runs on the "
                "machine that kept it; elsewhere it fills a new one and runs every step again")
    try:
        if workspace_mode() == "in-place":
            return "the retry works in the pipeline's folder (in-place mode)"
        home = workspaces_root() / run_id
    except AnsflowError as exc:
        return f"workspace: {exc}"
    meta = read_meta(home)
    if meta is not None and (home / WORKSPACE_DIR).is_dir():
        return f"the run's kept workspace {home / WORKSPACE_DIR} is reused as it was left"
    return ("the run's workspace is not kept here any more (its keep time passed, or it was "
            "removed): a new one is filled and every step runs again")


def _run_here(flow_run) -> dict[str, Any]:  # noqa: ANN001
    """A run `ansflow run` started: run the same flow run again in this process."""
    from prefect.flow_engine import run_flow  # noqa: PLC0415

    from ansflow.cli.runner import summary_of  # noqa: PLC0415
    from ansflow.flows.pipeline import pipeline_flow  # noqa: PLC0415

    try:
        state = run_flow(pipeline_flow, flow_run=flow_run, parameters=flow_run.parameters,
                         return_type="state")
    except KeyboardInterrupt:
        raise AnsflowError("interrupted") from None
    summary = summary_of(state)
    if summary is None:
        raise AnsflowError(f"the retry did not run: {state.message if state else 'no state'}")
    return summary


def _wait_for(flow_run_id: uuid.UUID, timeout: float) -> dict[str, Any]:
    """A deployment's run: wait until its retry ends; its summary from the store."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    from ansflow.store import Store  # noqa: PLC0415

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            if state is not None and state.is_final() and state.name != "AwaitingRetry":
                break
            if time.monotonic() > deadline:
                raise AnsflowError(f"run {flow_run_id} did not end within {timeout:g} s "
                                   f"(it is {state.name if state else 'unknown'})")
            time.sleep(WAIT_POLL)
    with closing(Store()) as store:
        summary = store.summary(str(flow_run_id))
    if summary is None:
        raise AnsflowError(f"run {flow_run_id} ended {state.name} without a summary")
    return summary


def register(app: typer.Typer) -> None:
    app.command("retry")(retry)
