"""What a pipeline adds around every step, in one place: the step's condition, templating
just before it runs, retries (with retry_on_exit_codes), masking and the failure message.

A pipeline step is a task run named after its type, as its type's public task
(`ansflow.tasks`) is: the scheduler submits `run_pipeline_step` with the type's executor and
what the step needs as arguments (or `not_run`, for a step that cannot run). Nothing is ever
left Pending: a step that cannot run still gets its task run, NotRun.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prefect import get_run_logger
from prefect.states import Cancelled, Completed, Failed, State

from ansflow.errors import (
    StepCancelled,
    StepFailed,
    StepPermanent,
    StepTimedOut,
    StepTransient,
    bounded,
)
from ansflow.plan import PlannedStep
from ansflow.runtime.base import StepContext, StepResult
from ansflow.runtime.public import Executor, validated_config
from ansflow.shellquote import shell_fields
from ansflow.steptypes import CONFIG_MODELS
from ansflow.templating import (
    RenderSession,
    TemplateCancelled,
    TemplateError,
    TemplateTimeout,
    evaluate_condition,
    render_config,
    render_value,
)
from ansflow.yamltemplate import yaml_fields

# Step types whose shell text can read a secret from an environment variable (k8s_exec: its
# prelude reads them from stdin, a pod exec has no environment to set).
_SECRETS_VIA_ENV = ("command", "script", "docker_run", "k8s_exec")


@dataclass
class Attempts:
    """What the flow learns from each attempt of each step (shared in-process)."""

    count: dict[str, int] = field(default_factory=dict)
    last_error: dict[str, BaseException] = field(default_factory=dict)
    started: dict[str, float] = field(default_factory=dict)
    # Each completed step's real outputs, for later steps' templates (what is shown is masked).
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    # What each completed step's task run returned (exit code, masked outputs): the flow
    # reads it here instead of from the task run's state.
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, step_id: str) -> int:
        with self.lock:
            self.count[step_id] = self.count.get(step_id, 0) + 1
            self.started.setdefault(step_id, time.monotonic())
            return self.count[step_id]


def run_pipeline_step(executor: Executor, ctx: StepContext, config: dict[str, Any],
                      step: PlannedStep, template_context: dict[str, Any],
                      attempts: Attempts) -> Any:
    """Run one pipeline step inside its task run: evaluate `when`, render its templates, call
    its type's executor, retrying as the step says.

    Retries are done here rather than by Prefect so that a retry can depend on the exit code
    (`retry_on_exit_codes`), the delay ends at once on cancellation, and a failure is logged as
    one clear line instead of a traceback.

    Args:
        executor: The step type's executor (handed in by the type's task).
        ctx: The run and step the executor works for.
        config: The step's raw config (templates are rendered here, just before it runs).
        step: The planned step (condition and retry policy).
        template_context: Names templates can use (pipeline, vars, env, steps, secrets...).
        attempts: Shared attempt bookkeeping of the run.

    Returns:
        The step result (exit code and outputs) as a dict, a Skipped state, or a Failed state
        whose message says why the step failed.
    """
    ctx.logger = get_run_logger()
    ctx.logger.info(f"[ansflow] step {ctx.step_id!r} ({ctx.step_type}) of stage {ctx.stage!r}")
    try:
        if not evaluate_condition(step.when, template_context):
            ctx.logger.info(f"[ansflow] skipped: `when: {step.when}` is false")
            return Completed(name="Skipped", message=f"when: {step.when} is false")
    except TemplateError as exc:
        return _failed(ctx, attempts, StepFailed(str(exc)))
    base_env = dict(ctx.env)
    while True:
        ctx.attempt = attempts.begin(ctx.step_id)
        ctx.started = time.monotonic()
        ctx.logged_bytes = ctx.dropped_lines = 0
        if ctx.attempt > 1:
            ctx.logger.info(f"[ansflow] attempt {ctx.attempt} of {step.retries + 1}")
        try:
            result = _attempt(executor, ctx, config, base_env, template_context)
        except StepFailed as exc:
            attempts.last_error[ctx.step_id] = exc
            ctx.logger.error(bounded(ctx.masker(f"[ansflow] step failed: {exc}")))
            if ctx.attempt > step.retries or not should_retry(step, exc) or ctx.cancelled:
                return _failed(ctx, attempts, exc)
            if step.retry_delay:
                ctx.logger.info(f"[ansflow] retrying in {step.retry_delay:g}s")
                if ctx.control.cancelled.wait(step.retry_delay):
                    return _failed(ctx, attempts, StepCancelled("cancelled while waiting to "
                                                                "retry"))
            continue
        attempts.last_error.pop(ctx.step_id, None)
        if ctx.dropped_lines:
            ctx.logger.warning(f"[ansflow] {ctx.dropped_lines} output lines were not logged "
                               "(log size limit)")
        returned = {"exit_code": result.exit_code,
                    "outputs": {k: ctx.masker(str(v)) for k, v in result.outputs.items()}}
        with attempts.lock:
            attempts.outputs[ctx.step_id] = {k: str(v) for k, v in result.outputs.items()}
            attempts.results[ctx.step_id] = returned
        return returned


def _attempt(executor: Executor, ctx: StepContext, config: dict[str, Any],
             base_env: dict[str, str], template_context: dict[str, Any]) -> StepResult:
    if ctx.cancelled:
        raise StepCancelled("the run was cancelled before this step started")
    budget = ctx.budget()
    session = RenderSession(masker=ctx.masker, cancelled=ctx.control.cancelled,
                            deadline=None if budget is None else time.monotonic() + budget,
                            secrets_via_env=ctx.step_type in _SECRETS_VIA_ENV)
    try:
        ctx.env = {k: str(render_value(v, template_context, session))
                   for k, v in base_env.items()}
        rendered = render_config(config, template_context, session,
                                 shell_fields(ctx.step_type, config),
                                 yaml_fields(ctx.step_type, config))
    except TemplateTimeout as exc:
        raise StepTimedOut(str(exc)) from exc
    except TemplateCancelled as exc:
        raise StepCancelled(str(exc)) from exc
    except TemplateError as exc:
        raise StepFailed(str(exc)) from exc
    if session.secret_env:
        # Secrets that shell text refers to ("${ANSFLOW_SECRET_1}") reach it by environment.
        if ctx.step_type == "docker_run":
            rendered["env"] = {**(rendered.get("env") or {}), **session.secret_env}
        else:
            ctx.env = {**ctx.env, **session.secret_env}
    model = validate_config_for(ctx.step_type, rendered)
    try:
        return executor(ctx, model)
    except StepFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - an executor bug still must not leak a traceback
        ctx.logger.debug("executor error", exc_info=True)
        raise StepFailed(f"unexpected error: {type(exc).__name__}: {exc}") from exc


def _failed(ctx: StepContext, attempts: Attempts, exc: StepFailed) -> State:
    attempts.last_error[ctx.step_id] = exc
    name = ("TimedOut" if isinstance(exc, StepTimedOut) else
            "Cancelled" if isinstance(exc, StepCancelled) else "Failed")
    return Failed(name=name, message=bounded(ctx.masker(str(exc))))


def validate_config_for(step_type: str, rendered: dict[str, Any]):
    """The step's config model, validated again after its templates were rendered."""
    return validated_config(CONFIG_MODELS[step_type], rendered,
                            "invalid config after rendering templates")


def should_retry(step: PlannedStep, error: StepFailed) -> bool:
    """Never after a cancel or a permanent failure (a refused host key or credentials); a
    transient failure (registry or API server unreachable) always; with
    retry_on_exit_codes, otherwise only on one of those exit codes."""
    if isinstance(error, StepCancelled | StepPermanent):
        return False
    if isinstance(error, StepTransient) or step.retry_on_exit_codes is None:
        return True
    return error.exit_code is not None and error.exit_code in step.retry_on_exit_codes


def not_run(reason: str) -> State:
    """Inside the step's task run: record that it did not run (what it needs did not
    succeed, or the run was cancelled)."""
    get_run_logger().info(f"[ansflow] not run: {reason}")
    return Cancelled(name="NotRun", message=reason)
