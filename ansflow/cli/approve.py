"""`ansflow approve RUN_ID`: answer a run's `approval` step from the terminal.

The run waits Paused with a run-input form (ansflow.tasks.approval); this command resumes it
with the answer, as the form in the Prefect UI does: approve (or `--reject`), a comment and
the step's own fields (`--set NAME=VALUE`, typed as the form declares them). The Prefect
server checks the answer against the form before the run resumes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import typer
from rich.console import Console

from ansflow.cli.common import parse_run_id, read_flow_run
from ansflow.errors import AnsflowError, UsageError

err = Console(stderr=True, highlight=False)
_OWN = ("approve", "comment")


def approve(
    run_id: str = typer.Argument(..., help="The paused pipeline run's flow run id."),
    reject: bool = typer.Option(False, "--reject", help="Reject instead of approving."),
    comment: str = typer.Option("", "--comment", help="Why (kept in the run's summary)."),
    sets: list[str] = typer.Option(
        [], "--set", help="A field of the approval's form: NAME=VALUE (repeatable)."),
) -> None:
    """Approve (or reject) a pipeline run waiting at an approval step."""
    try:
        decision = _approve(run_id, reject=reject, comment=comment, sets=sets)
    except AnsflowError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
    Console(highlight=False).print(decision, markup=False, soft_wrap=True)
    raise typer.Exit(0)


def _approve(run_id: str, *, reject: bool, comment: str, sets: list[str]) -> str:
    from ansflow.variables import parse_var_options  # noqa: PLC0415

    flow_run_id = parse_run_id(run_id)
    try:
        values = parse_var_options(sets)
    except UsageError as exc:
        raise UsageError(str(exc).replace("--var", "--set")) from None
    from ansflow.cli.runner import ensure_server  # noqa: PLC0415 - imports Prefect

    ensure_server()
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    with get_client(sync_client=True) as client:
        flow_run = read_flow_run(client, flow_run_id)
        state = flow_run.state
        keyset = state.state_details.run_input_keyset if state is not None else None
        if state is None or not state.is_paused() or not keyset:
            shown = state.name if state is not None else "unknown"
            raise AnsflowError(f"run {flow_run_id} is {shown}: it is not waiting for an "
                               "approval")
        properties = _form_properties(client, flow_run_id, keyset)
        answer: dict[str, Any] = {"approve": not reject, "comment": comment}
        answer.update(typed_fields(values, properties))
        result = client.resume_flow_run(flow_run_id, run_input=answer)
    if result.status.value != "ACCEPT":
        reason = getattr(result.details, "reason", None) or result.status.value
        raise AnsflowError(f"the Prefect server refused the answer: {reason}")
    return f"run {flow_run_id} {'rejected' if reject else 'approved'}"


def _form_properties(client: Any, flow_run_id: uuid.UUID,
                     keyset: dict[str, str]) -> dict[str, Any]:
    """The form's fields (JSON Schema properties) the paused step saved."""
    try:
        raw = client.read_flow_run_input(flow_run_id, keyset["schema"])
        schema = json.loads(raw) if isinstance(raw, str) else raw
    except Exception as exc:  # noqa: BLE001 - a run paused by something else than ansflow
        raise AnsflowError(f"run {flow_run_id}: its approval form cannot be read ({exc})") \
            from None
    properties = (schema or {}).get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict):
        raise AnsflowError(f"run {flow_run_id}: its approval form has no fields")
    return properties


_KINDS = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


def typed_fields(values: dict[str, str], properties: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values typed as the form's fields declare them.

    Raises:
        UsageError: a name the form does not have, or a value of the wrong type.
    """
    from ansflow.variables import coerce  # noqa: PLC0415

    fields = [k for k in properties if k not in _OWN]
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields or name in _OWN:
            listed = ", ".join(fields) or "none"
            hint = " (use --reject / --comment)" if name in _OWN else ""
            raise UsageError(f"unknown field {name!r}{hint}; the form's fields: {listed}")
        prop = properties[name] if isinstance(properties[name], dict) else {}
        kind = _KINDS.get(str(prop.get("type")))
        try:
            out[name] = coerce(name, value, kind)
        except UsageError as exc:
            raise UsageError(str(exc).replace("variable", "field", 1)) from None
    return out


def register(app: typer.Typer) -> None:
    app.command("approve")(approve)
