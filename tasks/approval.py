"""`approval` steps: the run pauses until someone approves or rejects it.

The step pauses its flow run with Prefect's pause and run-input mechanism (as
`prefect.flow_runs.pause_flow_run(wait_for_input=...)` does): the flow run is Paused with a
run-input keyset, the form's schema (approve, comment and the step's own `fields`) is saved
under it, and the Prefect UI shows that form on the run; `ansflow approve` or the API's
`resume_flow_run(run_id, run_input={...})` answer it the same way. The wait is this task's
own loop, not `pause_flow_run`'s: it blocks only the step's thread (the other branches of
the run go on: their task states are reported by the client, the server's rule that holds
new tasks of a paused flow does not apply to them), it stops on a cancel of the run, and on
its timeout it sets the run back to Running, so the `finally` steps run and the run ends
with the step's own message. One approval of a run waits at a time (a flow run has one
Paused state): a second one waits for the first to be answered.

Everything the approver types in is untrusted: it is checked against the declared fields
(the server checks the schema, this step checks again), kept to one line, masked, and
reaches later steps only as outputs (templates quote them in shell text).
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from pydantic import Field, ValidationError, create_model

from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.spec.steps import ApprovalConfig, ApprovalField

EVENT_REQUESTED = "ansflow.pipeline.approval.requested"
EVENT_DECIDED = "ansflow.pipeline.approval.decided"
POLL_SECONDS = 1.0
PAUSE_MARGIN = 120  # the server's pause outlives ours: our timeout, our message
MAX_COMMENT = 500
MAX_VALUE = 2000
_PYTHON_TYPES: dict[str | None, type] = {"string": str, "integer": int, "number": float,
                                          "boolean": bool}
# One Paused state per flow run: the approvals of this process wait their turn.
_PAUSE_LOCK = threading.Lock()


def _field_type(spec: ApprovalField) -> str | None:
    from ansflow.variables import variable_type  # noqa: PLC0415

    return variable_type(spec.model_dump())


def approval_form(config: ApprovalConfig, message: str) -> Any:
    """The RunInput model of the form: approve, comment, then the declared fields."""
    from prefect.input import RunInput  # noqa: PLC0415

    fields: dict[str, Any] = {
        "approve": (bool, Field(False, description="Tick to approve; leave it to reject.")),
        "comment": (str, Field("", max_length=MAX_COMMENT,
                               description="Why (kept in the run's summary).")),
    }
    for name, spec in config.fields.items():
        kind = _field_type(spec)
        extra = {k: v for k, v in spec.model_dump().items()
                 if k in ("enum", "pattern", "minLength", "maxLength", "minimum", "maximum")
                 and v is not None}
        python = _PYTHON_TYPES.get(kind, str)
        if python is str and spec.maxLength is None:
            extra["maxLength"] = MAX_VALUE
        schema_extra: Any = extra or None
        if spec.default is None:  # not required: a rejection needs no release note
            python = python | None  # type: ignore[assignment]
            schema_extra = _plain(extra)
        fields[name] = (python, Field(spec.default, description=spec.description or name,
                                      json_schema_extra=schema_extra))
    model = create_model("Approval", __base__=RunInput, __doc__=message, **fields)
    return model.with_initial_data(description=message)


def _plain(extra: dict[str, Any]) -> Any:
    """An optional field shown as a plain one (a text box, not a type switch): the form
    leaves it out when it is empty."""

    def edit(schema: dict[str, Any]) -> None:
        variants = [v for v in schema.pop("anyOf", []) if v != {"type": "null"}]
        if len(variants) == 1:
            schema.update(variants[0])
        schema.pop("default", None)
        schema.update(extra)

    return edit


def answer_outputs(config: ApprovalConfig, answer: Any) -> dict[str, str]:
    """The step's outputs from a loaded answer, each value checked and on one line.

    Raises:
        StepFailed: a value that breaks its field's declaration.
    """
    from ansflow.variables import constraint_problem  # noqa: PLC0415

    outputs = {"approved": "true" if answer.approve else "false",
               "comment": one_line(answer.comment, MAX_COMMENT)}
    for name, spec in config.fields.items():
        value = getattr(answer, name, None)
        if value is None:
            outputs[name] = ""
            continue
        problem = constraint_problem(value, spec.model_dump())
        if problem:
            raise StepFailed(f"the approval's field {name!r}: the value {str(value)[:80]!r} "
                             f"{problem}")
        outputs[name] = (("true" if value else "false") if isinstance(value, bool)
                         else one_line(value, MAX_VALUE))
    return outputs


def one_line(value: Any, limit: int) -> str:
    return " ".join(str(value or "").split())[:limit]


def run_link(flow_run_id: Any) -> str | None:
    """The run's page in the Prefect UI (None when no UI address is known)."""
    from prefect.settings import PREFECT_UI_URL  # noqa: PLC0415

    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}" if ui else None


def emit_approval_event(event: str, ctx: StepContext, flow_run_id: Any,
                        payload: dict[str, Any]) -> None:
    from prefect.events import emit_event  # noqa: PLC0415

    try:
        emit_event(
            event=event,
            resource={"prefect.resource.id": f"ansflow.pipeline.{ctx.pipeline}",
                      "prefect.resource.name": ctx.pipeline, "ansflow.pipeline": ctx.pipeline},
            related=[{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                      "prefect.resource.role": "flow-run"}],
            payload={"pipeline": ctx.pipeline, "build_number": ctx.build_number,
                     "step": ctx.step_id, "step_name": ctx.step_name,
                     "flow_run_id": str(flow_run_id), "url": run_link(flow_run_id),
                     **{k: ctx.masker(v) if isinstance(v, str) else v
                        for k, v in payload.items()}})
    except Exception as exc:  # noqa: BLE001 - the approval must not depend on the event
        ctx.emit(f"could not emit {event}: {exc}", stream="stderr")


def _take_turn(ctx: StepContext) -> None:
    """Wait until no other approval of this process has the run paused."""
    if _PAUSE_LOCK.acquire(blocking=False):
        return
    ctx.emit("another approval of this run is waiting: this one comes after it")
    while not _PAUSE_LOCK.acquire(timeout=POLL_SECONDS):
        if ctx.cancelled:
            raise StepCancelled("the run was cancelled while waiting for an approval")


@step_executor
def execute_approval(ctx: StepContext, config: ApprovalConfig) -> StepResult:
    """Pause the run until an answer, the timeout or a cancel; approved: the answer as
    outputs, rejected or not answered in time: StepFailed."""
    from prefect.context import FlowRunContext  # noqa: PLC0415

    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or flow_ctx.flow_run is None:
        raise StepFailed("an approval step pauses its flow run: it runs only inside one")
    flow_run_id = flow_ctx.flow_run.id
    timeout = ctx.budget(config.timeout)
    timeout = config.timeout if timeout is None else timeout
    message = ctx.masker(config.message)
    form = approval_form(config, message)
    _take_turn(ctx)
    try:
        answer = _pause_and_wait(ctx, form, flow_run_id, timeout, message)
    finally:
        _PAUSE_LOCK.release()
    if answer is None:
        emit_approval_event(EVENT_DECIDED, ctx, flow_run_id,
                            {"decision": "timed out", "comment": ""})
        raise StepTimedOut(f"not approved within {timeout:g} s")
    outputs = answer_outputs(config, answer)
    said = f" ({outputs['comment']})" if outputs["comment"] else ""
    emit_approval_event(EVENT_DECIDED, ctx, flow_run_id,
                        {"decision": "approved" if answer.approve else "rejected",
                         "comment": outputs["comment"]})
    if not answer.approve:
        raise StepFailed(f"rejected{said}")
    ctx.emit(f"approved{said}")
    return StepResult(outputs=outputs)


def _pause_and_wait(ctx: StepContext, form: Any, flow_run_id: Any, timeout: float,
                    message: str) -> Any:
    """Pause the flow run for ``form``; the loaded answer, or None when none came in time."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.exceptions import Abort  # noqa: PLC0415
    from prefect.input.run_input import keyset_from_paused_state  # noqa: PLC0415
    from prefect.states import Paused  # noqa: PLC0415
    from prefect.utilities.engine import propose_state_sync  # noqa: PLC0415

    # A key of its own per attempt: a retried run's rejection is not read back as its answer.
    key = f"ansflow-{ctx.step_id}-{uuid.uuid4().hex[:12]}"
    proposed = Paused(timeout_seconds=int(timeout) + PAUSE_MARGIN, reschedule=False,
                      pause_key=key)
    keyset = keyset_from_paused_state(proposed)
    proposed.state_details.run_input_keyset = keyset
    with get_client(sync_client=True) as client:
        try:
            state = propose_state_sync(client, proposed, flow_run_id=flow_run_id)
        except Abort as exc:
            raise StepFailed(f"the run cannot be paused for an approval: {exc}") from None
        if not state.is_paused():
            raise StepFailed(f"the run cannot be paused for an approval (it is {state.name})")
        form.save(keyset, flow_run_id=flow_run_id)
        link = run_link(flow_run_id)
        ctx.emit(f"waiting up to {timeout:g} s for an approval: {message} (approve or reject "
                 f"on the run's page{' ' + link if link else ''}, or: ansflow approve "
                 f"{flow_run_id})", stream="stderr")
        emit_approval_event(EVENT_REQUESTED, ctx, flow_run_id,
                            {"message": message, "timeout": timeout})
        deadline = time.monotonic() + timeout
        resumed = False
        try:
            while True:
                current = client.read_flow_run(flow_run_id).state
                if current is not None and current.is_running():
                    resumed = True
                    return _load(form, keyset, flow_run_id)
                if current is None or not current.is_paused() or ctx.cancelled:
                    raise StepCancelled("the run was cancelled while waiting for an approval")
                if time.monotonic() >= deadline:
                    return None
                ctx.control.cancelled.wait(min(POLL_SECONDS,
                                               max(0.0, deadline - time.monotonic())))
        finally:
            if not resumed:
                _unpause(client, flow_run_id, key)


def _load(form: Any, keyset: dict[str, str], flow_run_id: Any) -> Any:
    try:
        return form.load(keyset, flow_run_id=flow_run_id)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise StepFailed(f"the approval's answer is not valid: {problems}") from None
    except Exception as exc:  # noqa: BLE001 - resumed without an answer
        raise StepFailed(f"the run was resumed without an answer to the approval "
                         f"({type(exc).__name__})") from None


def _unpause(client: Any, flow_run_id: Any, key: str) -> None:
    """Set the run back to Running if it is still paused by this step (timeout, the run's
    deadline): the rest of the run goes on, and ends with its own message."""
    from prefect.states import Running  # noqa: PLC0415

    try:
        current = client.read_flow_run(flow_run_id).state
        if current is not None and current.is_paused() and \
                current.state_details.pause_key == key:
            client.set_flow_run_state(flow_run_id, Running(), force=True)
    except Exception:  # noqa: BLE001,S110 - the server away: the run's end still comes
        pass


@step_task("approval", execute_approval)
def approval(
    *,
    message: str = "Approve to let the run go on.",
    timeout: float | str = 3600.0,
    fields: dict[str, dict[str, Any]] | None = None,
) -> StepOutput:
    """Pause the flow run until someone approves or rejects it.

    The Prefect UI shows a form on the paused run (approve, comment and ``fields``);
    ``ansflow approve RUN_ID`` answers it from a terminal.

    Args:
        message: What the approver is asked.
        timeout: Seconds (or '30m', '2h') to wait for an answer; then the task fails.
        fields: Values the approver fills in: {name: {type, description, default, enum}}.

    Returns:
        outputs ``approved``, ``comment`` and one per field (as text).

    Raises:
        StepFailed: rejected (with the approver's comment), or an answer that does not fit
            the declared fields.
        StepTimedOut / StepCancelled: no answer within ``timeout``, or the run was cancelled.

    Example:
        ```python
        from ansflow.tasks import approval

        answer = approval(message="Release 1.2 to production?", timeout="2h",
                          fields={"note": {"type": "string", "description": "Release note"}})
        ```
    """
    config = config_of(ApprovalConfig, {"message": message, "timeout": timeout,
                                        "fields": fields})
    return run_standalone("approval", execute_approval, config)
