"""How a step type's executor becomes its public Prefect task, callable in any flow.

`step_task(step_type, executor)` makes a task named after the type from a function with the
type's typed keyword-only parameters and docstring (Prefect shows it in the UI). Called in a
user's flow, the function turns its arguments into the type's config and runs the executor
through `run_standalone`: live output through the run logger, its `timeout`, cancellation of
the flow run honoured (processes killed, containers removed), StepFailed on failure, a small
dict as the result. A pipeline run calls the same executor (:func:`executor_of`) in a task
run of the same name, with what the pipeline adds around every step (condition, templating,
retries, outputs, masking: ansflow.flows.step_task).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext

from ansflow.errors import StepFailed, bounded
from ansflow.runtime.base import (
    RunControl,
    StepContext,
    StepResult,
    engine_errors,
    step_executor,
)
from ansflow.spec.common import StrictModel

CANCEL_POLL_SECONDS = 1.0

Executor = Callable[[StepContext, Any], StepResult]


class StepOutput(TypedDict):
    """What every step task returns: the exit code (None where there is none) and the
    outputs the step published (see each task's Returns)."""

    exit_code: int | None
    outputs: dict[str, str]


def step_task(step_type: str, executor: Executor) -> Callable[[Callable], Any]:
    """Decorator: ``fn`` becomes the Prefect task ``step_type`` that runs ``executor``
    (whose engine adapters' errors reach the pipeline as step errors)."""

    def wrap(fn: Callable) -> Any:
        fn.ansflow_step_type = step_type  # type: ignore[attr-defined]
        fn.ansflow_executor = step_executor(executor)  # type: ignore[attr-defined]
        return task(name=step_type, cache_policy=NO_CACHE, persist_result=False,
                    log_prints=False)(fn)

    return wrap


def executor_of(step_task: Any) -> Executor:
    """The executor a step type's public task runs (what a pipeline step of it does)."""
    return step_task.fn.ansflow_executor


def validated_config(model: type[StrictModel], values: dict[str, Any], what: str) -> Any:
    """``values`` as the step's config model; a refusal is a StepFailed naming each field.

    The one place a step's config is validated at run time: a task's arguments, and a
    pipeline step's config once its templates are rendered.
    """
    from pydantic import ValidationError  # noqa: PLC0415

    try:
        return model.model_validate(values)
    except ValidationError as exc:
        # Validators may echo the value: each detail is bounded (the whole message is
        # bounded again after masking, where the step fails).
        details = "; ".join(
            bounded(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}", 400)
            for e in exc.errors())
        raise StepFailed(bounded(f"{what}: {details}")) from None


def config_of(model: type[StrictModel], arguments: dict[str, Any]) -> Any:
    """The step config from a task's arguments: the model's fields, None meaning default.

    Raises:
        StepFailed: an argument the config model refuses (with the field and why).
    """
    given = {k: v for k, v in arguments.items() if k in model.model_fields and v is not None}
    return validated_config(model, given, "invalid arguments")


def run_standalone(step_type: str, executor: Executor, config: Any, *,
                   timeout: float | None = None, workspace: str | None = None,
                   env: dict[str, str] | None = None, runs_on: str = "local",
                   env_passthrough: list[str] | None = None,
                   blocks: dict[str, Any] | None = None) -> StepOutput:
    """Run ``executor`` as a task of a user's flow (no pipeline around it).

    The task run's name identifies the step in labels and logs; the flow run's id is the run
    id (so `ansflow cleanup --run-id` finds what it left). A cancel of the flow run, or the
    runner terminating the process, stops the executor and runs its cleanups.
    """
    ctx = standalone_context(step_type, timeout=timeout, workspace=workspace, env=env,
                             runs_on=runs_on, env_passthrough=env_passthrough, blocks=blocks)
    with cancellation_watch(ctx):
        result = executor(ctx, config)
    if ctx.dropped_lines:
        ctx.logger.warning(f"[ansflow] {ctx.dropped_lines} output lines were not logged "
                           "(log size limit)")
    return StepOutput(exit_code=result.exit_code, outputs=dict(result.outputs))


def standalone_context(step_type: str, *, timeout: float | None = None,
                       workspace: str | None = None, env: dict[str, str] | None = None,
                       runs_on: str = "local", env_passthrough: list[str] | None = None,
                       blocks: dict[str, Any] | None = None) -> StepContext:
    """The StepContext of work run in the current task or flow run, outside a pipeline: the
    run's name and id label what it creates, its logger gets the output."""
    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    run_id = str(flow_run.id) if flow_run is not None else (
        str(task_ctx.task_run.id) if task_ctx is not None else "standalone")
    name = task_ctx.task_run.name if task_ctx is not None else step_type
    return StepContext(
        pipeline=flow_run.name if flow_run is not None else step_type, run_id=run_id,
        build_number=0, step_id=name, step_name=name, stage="", step_type=step_type,
        workspace=os.path.abspath(workspace or os.getcwd()), env=dict(env or {}),
        env_passthrough=list(env_passthrough or []),
        timeout=timeout, runs_on=runs_on, blocks=blocks or {},
        control=RunControl(), logger=get_run_logger(),
    )


@contextmanager
def cancellation_watch(ctx: StepContext) -> Iterator[None]:
    """While inside: a cancel of the current flow run cancels ``ctx`` (its cleanups run);
    an exception that is not a StepFailed becomes one ("unexpected error: ...")."""
    flow_ctx = FlowRunContext.get()
    flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    stop = threading.Event()
    if flow_run is not None:
        threading.Thread(target=watch_cancellation, args=(flow_run.id, ctx.control, stop),
                         daemon=True, name="ansflow-cancel-watch").start()
    try:
        with engine_errors():
            yield
    except StepFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - an executor bug: a clear step error
        raise StepFailed(f"unexpected error: {type(exc).__name__}: {exc}") from exc
    except BaseException:  # the runner terminating a cancelled flow run, Ctrl-C
        ctx.control.cancel()
        raise
    finally:
        stop.set()


def watch_cancellation(flow_run_id: Any, control: RunControl, stop: threading.Event) -> None:
    """Cancel ``control`` when the flow run is being cancelled (UI, API, CLI).

    The client is opened only after the first poll interval: a task that ends sooner (most
    commands do) costs a thread start, not a client.
    """
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    if stop.wait(CANCEL_POLL_SECONDS):
        return
    try:
        with get_client(sync_client=True) as client:
            while not stop.is_set():
                try:
                    state = client.read_flow_run(flow_run_id).state
                except Exception:  # noqa: BLE001 - a blip of the API must not stop the run
                    state = None
                if state is not None and (state.is_cancelling() or state.is_cancelled()):
                    control.cancel()
                    return
                stop.wait(CANCEL_POLL_SECONDS)
    except Exception:  # noqa: BLE001 - no API: nothing to watch
        return


def cluster_argument(cluster: Any) -> tuple[str | None, dict[str, Any]]:
    """A task's ``cluster`` argument (a block name or a KubernetesCluster block): the name
    the config and messages use, and the block set aside for the executor."""
    if cluster is None or isinstance(cluster, str):
        return cluster, {}
    name = getattr(cluster, "_block_document_name", None) or "the given cluster block"
    return name, {"cluster": cluster}


def run_cluster_task(step_type: str, executor: Executor, model: type[StrictModel],
                     arguments: dict[str, Any]) -> StepOutput:
    """Run a Kubernetes step type's public task from its arguments (its ``locals()``): the
    ``cluster`` argument, a block or a saved block's name, is split as
    :func:`cluster_argument` does, the rest becomes the type's config."""
    cluster, blocks = cluster_argument(arguments.get("cluster"))
    return run_standalone(step_type, executor,
                          config_of(model, {**arguments, "cluster": cluster}), blocks=blocks)
