"""Retrying a pipeline run re-runs only the steps that did not complete.

Every run records in the store (ansflow.store) its pipeline file's hash when it starts and
each step's result when it ends. When the same flow run runs again (Prefect's Retry: the
UI's button or `set_state` to AwaitingRetry, which the serving process or worker picks up;
or `ansflow retry`), the run keeps its build number, and every main step that completed
(or was skipped) in the earlier attempt is not executed again: it gets a task run in a
Completed state named "Reused" (tagged `ansflow:reused`) and keeps its outputs for the steps
after it. `finally` steps always run again. A changed pipeline file re-runs every step.
A step whose outputs held a secret value is not recorded as reusable (the store never
holds a secret): it runs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.states import Completed, State

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


def start_run(plan: Plan, run_id: str) -> RunStart:
    """Allocate the run's build number (a retry keeps its own) and record its start and its
    pipeline file. Raises StoreError."""
    store = Store()
    try:
        previous = store.run(run_id)
        if previous is None:
            start = RunStart(store.next_build_number(plan.name))
        else:
            start = retry_start(plan, previous, store.step_results(run_id))
        store.record_start(run_id, plan.name, start.build_number)
        store.record_file(run_id, str(Path(plan.source).resolve()), plan.source_sha256)
    finally:
        store.close()
    return start


def retry_start(plan: Plan, previous: dict[str, Any],
                results: dict[str, dict[str, Any]]) -> RunStart:
    """What a retry of ``previous`` (the store's record of the run) reuses (pure)."""
    build = previous["build_number"]
    if previous.get("file_sha256") != plan.source_sha256:
        return RunStart(build, retry=True, note=(
            f"retry of build #{build}: the pipeline file changed since the earlier attempt "
            "(or that attempt did not record it); every step runs again"))
    main = [s.id for s in plan.steps]
    reused = {sid: results[sid] for sid in main if sid in results
              and results[sid]["state"] in REUSABLE and results[sid]["outputs"] is not None}
    again = len(main) - len(reused)
    return RunStart(build, retry=True, reused=reused, note=(
        f"retry of build #{build}: {len(reused)} step(s) reused from the earlier attempt, "
        f"{again} run again" + (f" ({', '.join(sid for sid in main if sid not in reused)})"
                                if again and again <= 20 else "")))


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
