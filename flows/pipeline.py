"""The pipeline flow: one Prefect flow run per pipeline run, one task run per step."""

from __future__ import annotations

import logging
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from ansflow.errors import AnsflowError
from ansflow.flows.publish import publish_run
from ansflow.flows.scheduler import RunInfo, Scheduler
from ansflow.plan import Plan
from ansflow.spec.validate import load_plan
from ansflow.store import Store
from ansflow.tasks.base import RunControl
from ansflow.tasks.public import watch_cancellation
from ansflow.templating import references
from ansflow.variables import resolve_variables

MAX_CONCURRENT_STEPS = 4096
# Set by `ansflow run`, which has validated the file already: the run uses that plan instead
# of parsing the file a second time (a file edited in between cannot change what runs).
PRELOADED_PLAN: ContextVar[Plan | None] = ContextVar("ansflow_preloaded_plan", default=None)


class _NoEmptyTraceback(logging.Filter):
    """Prefect logs a step's Failed state with exc_info but no exception, which prints a
    bare "NoneType: None" line; drop that empty exc_info."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


def _quiet_empty_tracebacks() -> None:
    task_logger = logging.getLogger("prefect.task_runs")
    if not any(isinstance(f, _NoEmptyTraceback) for f in task_logger.filters):
        task_logger.addFilter(_NoEmptyTraceback())


def secret_names(plan: Plan) -> list[str]:
    """Names used as `secrets.<NAME>` anywhere in the plan's templates."""
    names: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and "secrets" in value:
            try:
                refs = references(value)
            except Exception:  # noqa: BLE001 - validation already reported it
                return
            names.update(r.parts[1] for r in refs if r.parts[0] == "secrets" and len(r.parts) > 1)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for step in plan.steps + plan.finally_steps:
        walk(step.config)
        walk(step.env)
        walk(step.when)
    return sorted(names)


def load_secrets(names: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        try:
            value = Secret.load(name, _sync=True).get()
        except ValueError as exc:
            raise AnsflowError(f"secret {name!r} is not saved: create a Prefect Secret block "
                               f"named {name!r} (prefect block create secret)") from exc
        values[name] = value if isinstance(value, str) else str(value)
    return values


def _cleanup_leftovers(flow, flow_run, state) -> None:  # noqa: ANN001 - Prefect hook signature
    """on_cancellation / on_crashed: remove containers the run left behind (by label)."""
    try:
        from ansflow.engines.docker import remove_labelled_containers  # noqa: PLC0415

        remove_labelled_containers(run_id=str(flow_run.id))
    except Exception:  # noqa: BLE001 - no Docker engine, nothing to clean
        pass


@flow(
    name="ansflow-pipeline",
    # Steps block on processes, containers and API waits: threads, not a cap of 16.
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_STEPS),
    persist_result=False,
    log_prints=False,
    validate_parameters=True,
    on_cancellation=[_cleanup_leftovers],
    on_crashed=[_cleanup_leftovers],
)
def pipeline_flow(pipeline_file: str, variables: dict[str, Any] | None = None) -> State:
    """Run a hybrid pipeline file: stages of shell, Docker and Kubernetes steps.

    Args:
        pipeline_file: Path of the pipeline YAML file.
        variables: Values for the pipeline's `variables` (override their defaults).
    """
    logger = get_run_logger()
    _quiet_empty_tracebacks()
    run_ctx = FlowRunContext.get()
    flow_run_id = run_ctx.flow_run.id
    try:
        plan = _preloaded_plan(pipeline_file) or load_plan(pipeline_file)
        values = resolve_variables(plan, variables)
        secrets = load_secrets(secret_names(plan))
    except AnsflowError as exc:
        logger.error(str(exc))
        return Failed(message=str(exc))
    return run_plan(plan, values, secrets, flow_run_id)


def _preloaded_plan(pipeline_file: str) -> Plan | None:
    plan = PRELOADED_PLAN.get()
    if plan is not None and Path(plan.source).resolve() == Path(pipeline_file).resolve():
        return plan
    return None


def run_plan(plan: Plan, values: dict[str, Any], secrets: dict[str, str], flow_run_id) -> State:
    """Run a validated plan inside the current flow run; returns the run's final state."""
    logger = get_run_logger()
    store = Store()
    try:
        build_number = store.next_build_number(plan.name)
        store.record_start(str(flow_run_id), plan.name, build_number)
    finally:
        store.close()
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run_id, name=f"{plan.name} #{build_number}")
    logger.info(f"pipeline {plan.name!r} build #{build_number}: {len(plan.steps)} steps, "
                f"{len(plan.finally_steps)} finally")

    control = RunControl()
    info = RunInfo(plan.name, str(flow_run_id), build_number, values, secrets)
    scheduler = Scheduler(plan, info, control)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_cancellation, args=(flow_run_id, control, stop),
                               daemon=True, name="ansflow-cancel-watch")
    watcher.start()
    deadline = time.monotonic() + plan.timeout if plan.timeout else None
    try:
        scheduler.run(deadline)
    finally:
        stop.set()
    state, message = scheduler.outcome()
    summary = {
        "pipeline": plan.name, "run_id": str(flow_run_id), "build_number": build_number,
        "state": state, "message": message,
        "steps": [scheduler.records[s.id].as_dict() for s in plan.steps + plan.finally_steps],
    }
    store = Store()
    try:
        store.record_end(str(flow_run_id), state, summary)
    finally:
        store.close()
    (logger.info if state == "completed" else logger.error)(message)
    publish_run(summary, secrets)
    if state == "completed":
        return Completed(message=message, data=summary)
    if state == "cancelled":
        return Cancelled(message=message, data=summary)
    return Failed(message=message, data=summary)
