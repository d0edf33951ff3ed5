"""Retrying a pipeline run re-runs only the steps that did not complete.

Every run records in the store (ansflow.store) its pipeline file's hash when it starts and
each step's result when it ends. When the same flow run runs again (Prefect's Retry: the
UI's button or `set_state` to AwaitingRetry, which the serving process or worker picks up;
or `ansflow retry`), the run keeps its build number, and every main step that completed
(or was skipped) in the earlier attempt is not executed again: it gets a task run in a
Completed state named "Reused" (tagged `ansflow:reused`) and keeps its outputs for the steps
after it. `finally` steps always run again. A step whose outputs held a secret value is not
recorded as reusable (the store never holds a secret): it runs again.

A retry runs exactly what the run recorded, or refuses: the digest of the flow run's
parameters (which the Prefect API can change, `PATCH /flow_runs/{id}`) and the hash of the
pipeline file's bytes about to run must both equal what the run recorded when it started.

Completed steps are reused only where their files are: in the kept workspace of the earlier
attempt (ansflow.workspaces). A retry that finds none on its machine (removed after
ANSFLOW_WORKSPACE_KEEP, or another worker) fills a new workspace and runs every step again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, State

from ansflow.errors import AnsflowError
from ansflow.plan import Plan
from ansflow.store import Store

REUSED_TAG = "ansflow:reused"
REUSABLE = ("completed", "skipped")
RETRYABLE = ("failed", "cancelled", "running")  # running: the earlier attempt crashed


@dataclass
class RunStart:
    """How a run starts: its build number, and for a retry the steps it reuses."""

    build_number: int
    retry: bool = False
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> stored result
    note: str | None = None  # what the run's log says about the retry


class RetryRefused(AnsflowError):
    """A retry would not run what the run recorded (nothing ran)."""


def params_digest(parameters: dict[str, Any] | None) -> str:
    """The SHA-256 of a flow run's parameters, as canonical JSON (key order never counts)."""
    text = json.dumps(parameters or {}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded_mismatch(previous: dict[str, Any], parameters_sha256: str,
                      file_sha256: str | None) -> str | None:
    """Why a retry would not run what ``previous`` (the store's record) ran, or None.
    ``file_sha256`` None: the file is not checked here (the run checks it when it starts)."""
    if not previous.get("params_sha256"):
        return "the run did not record its parameters (it started before ansflow recorded them)"
    if previous["params_sha256"] != parameters_sha256:
        return ("the flow run's parameters on the Prefect server are not the ones it ran with "
                "(changed since, through the API)")
    if file_sha256 is not None and previous.get("file_sha256") != file_sha256:
        return (f"the pipeline file {previous.get('pipeline_file') or '?'} is not the one the "
                "run ran (changed since, or not recorded)")
    return None


def start_run(plan: Plan, run_id: str, parameters: dict[str, Any] | None = None) -> RunStart:
    """Allocate the run's build number (a retry keeps its own) and record its start, its
    pipeline file and its parameters' digest.

    Raises:
        RetryRefused: a retry whose parameters or pipeline file are not the recorded ones.
        StoreError: the store cannot be read or written.
    """
    digest = params_digest(parameters)
    store = Store()
    try:
        previous = store.run(run_id)
        if previous is None:
            start = RunStart(store.next_build_number(plan.name))
        else:
            start = retry_start(plan, previous, store.step_results(run_id), digest)
        store.record_start(run_id, plan.name, start.build_number)
        store.record_file(run_id, str(Path(plan.source).resolve()), plan.source_sha256)
        store.record_params(run_id, digest)
    finally:
        store.close()
    return start


def retry_start(plan: Plan, previous: dict[str, Any], results: dict[str, dict[str, Any]],
                parameters_sha256: str) -> RunStart:
    """What a retry of ``previous`` (the store's record of the run) reuses (pure).

    Raises:
        RetryRefused: the parameters or the pipeline file are not the recorded ones.
    """
    build = previous["build_number"]
    why = recorded_mismatch(previous, parameters_sha256, plan.source_sha256)
    if why:
        raise RetryRefused(f"retry of build #{build} refused: {why}; nothing ran (start a new "
                           "run to run other parameters or another file)")
    main = [s.id for s in plan.steps]
    reused = {sid: results[sid] for sid in main if sid in results
              and results[sid]["state"] in REUSABLE and results[sid]["outputs"] is not None}
    again = len(main) - len(reused)
    return RunStart(build, retry=True, reused=reused, note=(
        f"retry of build #{build}: {len(reused)} step(s) reused from the earlier attempt, "
        f"{again} run again" + (f" ({', '.join(sid for sid in main if sid not in reused)})"
                                if again and again <= 20 else "")))


def reuse_needs_workspace(start: RunStart, workspace: Any, logger: Any) -> RunStart:
    """``start`` without reused steps when the retry's workspace is not the earlier
    attempt's: what those steps left in their workspace is gone, so they run again."""
    if not start.retry or not start.reused or workspace.reused or workspace.in_place:
        return start
    logger.warning(f"retry of build #{start.build_number}: the earlier attempt's workspace is "
                   "not on this machine any more (removed after its keep time, or the retry "
                   "runs on another worker); a new one was filled and every step runs again")
    return RunStart(start.build_number, retry=True, reused={}, note=start.note)


def step_results(plan: Plan, records: dict, real_outputs: dict[str, dict[str, str]],
                 masker) -> list[dict[str, Any]]:  # noqa: ANN001
    """Each step's result as the store keeps it: outputs only when they hold no secret."""
    out = []
    for step in plan.steps + plan.finally_steps:
        record = records[step.id]
        outputs: dict[str, str] | None = dict(real_outputs.get(step.id, record.outputs))
        if any(masker(str(v)) != str(v) for v in outputs.values()):
            outputs = None
        out.append({"step_id": step.id, "state": record.state,
                    "exit_code": record.exit_code, "outputs": outputs})
    return out


def record_results(run_id: str, results: list[dict[str, Any]]) -> None:
    store = Store()
    try:
        store.record_steps(run_id, results)
    finally:
        store.close()


def reused_state(build_number: int, state: str) -> State:
    """Inside a reused step's task run: say so, end Completed ("Reused")."""
    message = (f"reused: {state} in an earlier attempt of build #{build_number}; "
               "not run again")
    get_run_logger().info(f"[ansflow] {message}")
    return Completed(name="Reused", message=message)
