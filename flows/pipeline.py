"""The pipeline flow: one Prefect flow run per pipeline run, one task run per step."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.states import Cancelled, Completed, Failed, State
from prefect.task_runners import ThreadPoolTaskRunner

from ansflow.errors import AnsflowError
from ansflow.flows.git_source import (
    as_checked_out,
    prepare_git,
    run_label,
    split_run_parameters,
    with_git,
)
from ansflow.flows.publish import publish_run
from ansflow.flows.rerun import (
    RunStart,
    record_results,
    reuse_needs_workspace,
    start_run,
    step_results,
)
from ansflow.flows.run_records import RunInfo, max_parallel
from ansflow.flows.run_secrets import credential_secrets, load_secrets, secret_names
from ansflow.flows.run_workspace import close_run_workspace, open_run_workspace, with_workspace
from ansflow.flows.scheduler import Scheduler
from ansflow.paths import check_state_outside, confine_pipeline_file
from ansflow.plan import Plan
from ansflow.runtime.base import RunControl
from ansflow.runtime.public import watch_cancellation
from ansflow.spec.validate import load_plan
from ansflow.store import Store
from ansflow.templating import has_template
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


def run_engines(plan: Plan) -> list[str | None]:
    """The Docker engines a plan's steps name (None: the default engine), as written: a URL
    or a Docker Host block name. Templated hosts are known only at run time (ENGINES_USED)."""
    engines: list[str | None] = [None]
    for step in plan.steps + plan.finally_steps:
        host = step.config.get("host")
        if isinstance(host, str) and host and not has_template(host) and host not in engines:
            engines.append(host)
    return engines


def _cleanup_leftovers(flow, flow_run, state) -> None:  # noqa: ANN001 - Prefect hook signature
    """on_cancellation / on_crashed: remove containers the run left behind (by label), on
    every engine the run used: the default one, `defaults.docker.host` and steps' `host:`."""
    try:
        from ansflow.engines.docker import (  # noqa: PLC0415
            ENGINES_USED,
            remove_labelled_containers,
        )
        from ansflow.runtime.docker_access import docker_base_url  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - no Docker SDK, nothing to clean
        return
    hosts: list[str | None] = [None]
    try:
        pipeline_file = (flow_run.parameters or {}).get("pipeline_file")
        plan = _preloaded_plan(pipeline_file) if pipeline_file else None
        if plan is None and pipeline_file:
            if getattr(flow_run, "deployment_id", None) is not None:
                pipeline_file = confine_pipeline_file(pipeline_file)  # a run-form value
            plan = load_plan(pipeline_file)
        if plan is not None:
            hosts = run_engines(plan)
    except Exception:  # noqa: BLE001 - an unreadable file: the default and the used engines
        pass
    urls: list[str | None] = []
    for host in [*hosts, *sorted(ENGINES_USED)]:
        try:
            url = docker_base_url(host)
        except Exception:  # noqa: BLE001 - a block that cannot be loaded
            continue
        if url not in urls:
            urls.append(url)
    for url in urls:
        try:
            remove_labelled_containers(run_id=str(flow_run.id), base_url=url)
        except Exception:  # noqa: BLE001 - that engine is unreachable: nothing to clean there
            continue


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
def pipeline_flow(pipeline_file: str, variables: dict[str, Any] | None = None,
                  ref: str | None = None, sha: str | None = None,
                  source: dict[str, Any] | None = None) -> State:
    """Run a hybrid pipeline file: stages of shell, Docker and Kubernetes steps.

    Run from a deployment, ``pipeline_file`` (a run-form value) must name a file under the
    pipelines root the deployment was made with (``ANSFLOW_PIPELINES_ROOT`` in the work pool's
    job variables or the worker's environment, else the directory the deployment's pull step
    moved into); anything else is refused before the file is read.

    Args:
        pipeline_file: Path of the pipeline YAML file.
        variables: Values for the pipeline's `variables` (override their defaults).
        ref: For a pipeline with a git `source:`: the branch, tag or commit to build
            (default: the source's ref).
        sha: The exact commit to build (full SHA), as push triggers pass it.
        source: A git source for a pipeline without its own `source:` (same keys), the
            deployment's default.
    """
    run_ctx = FlowRunContext.get()
    confined = getattr(run_ctx.flow_run, "deployment_id", None) is not None
    return run_pipeline_file(pipeline_file, variables, confined=confined, ref=ref, sha=sha,
                             source=source)


def run_pipeline_file(pipeline_file: str, variables: dict[str, Any] | None, *,
                      confined: bool, ref: str | None = None, sha: str | None = None,
                      source: dict[str, Any] | None = None, run_form: bool = False) -> State:
    """The body of the pipeline flow; ``confined``: ``pipeline_file`` came from a run form
    and must lie under the pipelines root (ansflow serve's own map is trusted instead);
    ``run_form``: ``variables`` are a served run form's values, git's `ref` and `sha`
    among them."""
    logger = get_run_logger()
    _quiet_empty_tracebacks()
    run_ctx = FlowRunContext.get()
    flow_run_id = run_ctx.flow_run.id
    try:
        if confined:
            pipeline_file = confine_pipeline_file(pipeline_file)
        plan = _preloaded_plan(pipeline_file) or load_plan(pipeline_file)
        check_state_outside(plan.workspace)
        if run_form:
            ref, sha, variables = split_run_parameters(plan, variables)
        plan = prepare_git(plan, ref, sha, source)  # the commit, before any step
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


# After SIGTERM the run cancels: steps killed, `finally` steps run, the flow returns
# Cancelled. Whatever still holds the process this long after the signal (a step stuck where
# no kill reaches, the task runner's thread pool waiting for it) is cut short: the process
# exits with 143 (128 + SIGTERM), after the steps' processes were killed.
SIGTERM_EXIT_AFTER = 20.0


def _cancel_on_sigterm(scheduler: Scheduler, control: RunControl, logger) -> Callable[[], None]:  # noqa: ANN001
    """SIGTERM (from `timeout`, systemd, Kubernetes, or a worker cancelling a served run)
    cancels the run as Ctrl-C does. Only the main thread can install signal handlers; in
    any other thread nothing changes. Returns the function restoring the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def exit_later() -> None:
        time.sleep(SIGTERM_EXIT_AFTER)
        control.cancel()  # once more: every process group and marked process
        os.write(2, (f"ansflow: the run did not end within {SIGTERM_EXIT_AFTER:g} s of "
                     "SIGTERM; exiting (its step processes were killed)\n").encode())
        os._exit(143)

    def on_sigterm(_signum, _frame) -> None:  # noqa: ANN001
        if scheduler.cancelled:
            return
        logger.warning("SIGTERM received: cancelling the run (steps are killed, `finally` "
                       "steps run)")
        scheduler.cancelled = True
        # Not in the handler itself: killing waits for the processes to go.
        threading.Thread(target=control.cancel, daemon=True, name="ansflow-sigterm").start()
        threading.Thread(target=exit_later, daemon=True, name="ansflow-sigterm-exit").start()

    try:
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        return lambda: None

    def restore() -> None:
        try:
            signal.signal(signal.SIGTERM, previous)
        except (ValueError, OSError, TypeError):
            pass

    return restore


def finish_remote_run(run_id: str, warn: Callable[[str], None]) -> None:
    """Remove the run's directories on the SSH hosts its remote steps used (when any ran:
    the SSH engine is only imported by them)."""
    if "ansflow.engines.ssh" not in sys.modules:
        return
    from ansflow.runtime.remote import finish_run  # noqa: PLC0415

    finish_run(run_id, warn)


def _allocate_build(plan: Plan, flow_run_id) -> RunStart:  # noqa: ANN001
    """The run's build number, recorded as started; for a retry of this flow run, its own
    build number and the steps it reuses (flows.rerun). Raises AnsflowError (StoreError)."""
    max_parallel(plan)  # a bad ANSFLOW_MAX_PARALLEL fails the run before anything happens
    # The parameters as the server holds them for this flow run: what a retry compares.
    run_ctx = FlowRunContext.get()
    flow_run = run_ctx.flow_run if run_ctx is not None else None
    return start_run(plan, str(flow_run_id), dict(flow_run.parameters or {})
                     if flow_run is not None else None)


_RunLogger = logging.Logger | logging.LoggerAdapter


def run_plan(plan: Plan, values: dict[str, Any], secrets: dict[str, str], flow_run_id) -> State:
    """Run a validated plan inside the current flow run; returns the run's final state."""
    logger = get_run_logger()
    try:
        start = _allocate_build(plan, flow_run_id)
    except AnsflowError as exc:  # the store or a worker setting: one clear failure, no steps ran
        message = f"the run did not start: {exc}"
        logger.error(message)
        return Failed(message=message)
    _announce_build(plan, start, flow_run_id, logger)
    try:
        workspace = open_run_workspace(plan, str(flow_run_id), logger)
    except AnsflowError as exc:
        message = f"the run did not start: {exc}"
        logger.error(message)
        _record_not_started(flow_run_id, message, logger)
        return Failed(message=message)
    git = dict(workspace.facts.get("git") or {})
    if workspace.reused and as_checked_out(plan, git) is not plan:  # built what it holds
        plan = as_checked_out(plan, git)
        _announce_build(plan, start, flow_run_id, logger)
    plan = with_git(with_workspace(plan, workspace), git)
    start = reuse_needs_workspace(start, workspace, logger)
    state = "failed"
    try:
        control = RunControl()
        info = RunInfo(plan.name, str(flow_run_id), start.build_number, values, secrets, git)
        scheduler = Scheduler(plan, info, control, reused=start.reused)
        for value in credential_secrets(plan):
            scheduler.masker.add(value)
        _run_steps(plan, scheduler, control, flow_run_id, logger)
        state, message = scheduler.outcome()
    finally:
        close_run_workspace(workspace, state, logger)
    summary = _run_summary(plan, start, scheduler, flow_run_id, state, message)
    summary["workspace"] = workspace.as_dict()
    if git:
        summary["git"] = git
    _record_end(plan, scheduler, flow_run_id, state, summary, logger)
    (logger.info if state == "completed" else logger.error)(message)
    publish_run(summary, scheduler.masker)
    if state == "completed":
        return Completed(message=message, data=summary)
    if state == "cancelled":
        return Cancelled(message=message, data=summary)
    return Failed(message=message, data=summary)


def _announce_build(plan: Plan, start: RunStart, flow_run_id: Any, logger: _RunLogger) -> None:
    """The flow run named after the pipeline and its build number, which the log says too."""
    if start.note:
        logger.warning(start.note)
    with get_client(sync_client=True) as client:
        label = run_label(plan)  # the commit: main@1a2b3c4
        client.update_flow_run(flow_run_id, name=f"{plan.name} #{start.build_number}"
                                                 + (f" {label}" if label else ""))
    logger.info(f"pipeline {plan.name!r} build #{start.build_number}: {len(plan.steps)} steps, "
                f"{len(plan.finally_steps)} finally" + (f", commit {label}" if label else ""))


def _run_steps(plan: Plan, scheduler: Scheduler, control: RunControl, flow_run_id: Any,
               logger: _RunLogger) -> None:
    """Run the steps to the end, within the pipeline's timeout; cancelling the flow run in
    Prefect, or SIGTERM, cancels them."""
    stop = threading.Event()
    threading.Thread(target=watch_cancellation, args=(flow_run_id, control, stop),
                     daemon=True, name="ansflow-cancel-watch").start()
    deadline = time.monotonic() + plan.timeout if plan.timeout else None
    restore = _cancel_on_sigterm(scheduler, control, logger)
    try:
        scheduler.run(deadline)
    finally:
        stop.set()
        restore()
        finish_remote_run(str(flow_run_id), logger.warning)


def _run_summary(plan: Plan, start: RunStart, scheduler: Scheduler, flow_run_id: Any,
                 state: str, message: str) -> dict[str, Any]:
    summary = {
        "pipeline": plan.name, "run_id": str(flow_run_id), "build_number": start.build_number,
        "state": state, "message": message,
        "steps": [scheduler.records[s.id].as_dict() for s in plan.steps + plan.finally_steps],
    }
    if plan.matrices:
        summary["matrix"] = scheduler.matrix_summary()
    if start.retry:
        summary["reused"] = list(start.reused)
    return summary


def _record_not_started(flow_run_id: Any, message: str, logger: _RunLogger) -> None:
    """A run that failed before its first step (its workspace could not be made): ended in
    the store, so neither a cleanup nor a retry takes it for a run still going."""
    try:
        store = Store()
        try:
            store.record_end(str(flow_run_id), "failed", {"state": "failed", "message": message,
                                                          "run_id": str(flow_run_id), "steps": []})
        finally:
            store.close()
    except AnsflowError as exc:
        logger.warning(f"could not record the run's end: {exc}")


def _record_end(plan: Plan, scheduler: Scheduler, flow_run_id: Any, state: str,
                summary: dict[str, Any], logger: _RunLogger) -> None:
    """The steps' results (what a retry of this flow run reuses) and the run's end, in the
    store."""
    try:
        record_results(str(flow_run_id), step_results(plan, scheduler.records,
                                                      scheduler.attempts.outputs,
                                                      scheduler.masker))
        store = Store()
        try:
            store.record_end(str(flow_run_id), state, summary)
        finally:
            store.close()
    except AnsflowError as exc:  # the run happened: its artifacts and event still go out
        logger.warning(f"could not record the run's end: {exc}; the run's artifacts and event "
                       "are published anyway")
