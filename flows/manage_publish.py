"""What a management run leaves behind: the event `ansflow.k8s.<operation>` about the object
(the Prefect event feed as an audit trail) and a markdown artifact of its before / after.

Everything shown passes the run's masker; values read from the cluster or typed into the
form are untrusted, so table cells are escaped and bounded.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from ansflow.manage import ObjectRef, OperationResult
from ansflow.masking import Masker

EVENT_PREFIX = "ansflow.k8s"
MAX_CELL = 300
MAX_MARKDOWN = 50_000


def event_name(operation: str, failed: bool = False) -> str:
    """``ansflow.k8s.<operation>``, or ``ansflow.k8s.<operation>.failed`` for a refusal."""
    return f"{EVENT_PREFIX}.{operation}" + (".failed" if failed else "")


def resource_of(target: ObjectRef) -> dict[str, str]:
    """The event's resource: the object, with its kind, name, namespace and cluster."""
    return {"prefect.resource.id": target.resource_id,
            "prefect.resource.name": f"{target.kind.lower()}/{target.name}",
            "ansflow.k8s.kind": target.kind, "ansflow.k8s.name": target.name,
            "ansflow.k8s.namespace": target.namespace or "",
            "ansflow.k8s.cluster": target.cluster}


def masked(value: Any, masker: Masker) -> Any:
    """``value`` (str, dict, list, scalars) with every string masked."""
    if isinstance(value, str):
        return masker(value)
    if isinstance(value, dict):
        return {masker(str(k)): masked(v, masker) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, masker) for v in value]
    return value


def cell(value: Any, masker: Masker) -> str:
    """A markdown table cell: masked, one line, pipes escaped, at most MAX_CELL chars."""
    text = masker("" if value is None else str(value))
    text = re.sub(r"\s+", " ", text).replace("|", "\\|").replace("`", "'")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def result_markdown(operation: str, result: OperationResult, masker: Masker) -> str:
    """The artifact: headline, before / after table, outputs, the operation's own body."""
    lines = [f"# {operation}: {cell(str(result.target), masker)}", "",
             cell(result.summary, masker), ""]
    before, after = result.before or {}, result.after or {}
    fields = list(dict.fromkeys([*before, *after]))
    if fields:
        lines += ["| field | before | after |", "|---|---|---|"]
        lines += [f"| {cell(f, masker)} | {cell(before.get(f, ''), masker)} | "
                  f"{cell(after.get(f, ''), masker)} |" for f in fields]
        lines.append("")
    if result.outputs:
        lines += ["| output | value |", "|---|---|"]
        lines += [f"| {cell(k, masker)} | {cell(v, masker)} |" for k, v in result.outputs.items()]
        lines.append("")
    if result.markdown:
        body = masker(result.markdown)
        lines.append(body if len(body) <= MAX_MARKDOWN else body[:MAX_MARKDOWN] + "\n\n…")
    return "\n".join(lines)


def artifact_key(operation: str) -> str:
    """``ansflow-k8s-<operation>``: lowercase letters, digits and dashes."""
    return "ansflow-k8s-" + (re.sub(r"[^a-z0-9]+", "-", operation.lower()).strip("-") or "op")


def publish_result(operation: str, result: OperationResult, masker: Masker,
                   flow_run_id: str | None) -> None:
    """Emit the run's event and publish its artifact; a failure of either only warns."""
    logger = get_run_logger()
    try:
        create_markdown_artifact(markdown=result_markdown(operation, result, masker),
                                 key=artifact_key(operation),
                                 description=cell(result.summary, masker)[:200])
    except Exception as exc:  # noqa: BLE001 - the outcome must not depend on the artifact
        logger.warning(f"could not publish the result artifact: {type(exc).__name__}")
    payload = {"operation": operation, "summary": result.summary, "changed": result.changed,
               "outputs": result.outputs, "before": result.before, "after": result.after}
    emit(operation, result.target, masked(payload, masker), flow_run_id, logger)


def publish_failure(operation: str, target: ObjectRef, message: str, masker: Masker,
                    flow_run_id: str | None) -> None:
    """Emit ``ansflow.k8s.<operation>.failed`` about ``target`` with the (masked) reason."""
    emit(operation, target, {"operation": operation, "error": masker(message)}, flow_run_id,
         get_run_logger(), failed=True)


def emit(operation: str, target: ObjectRef, payload: dict[str, Any], flow_run_id: str | None,
         logger: Any, failed: bool = False) -> None:
    related = ([{"prefect.resource.id": f"prefect.flow-run.{flow_run_id}",
                 "prefect.resource.role": "flow-run"}] if flow_run_id else [])
    try:
        emit_event(event=event_name(operation, failed), resource=resource_of(target),
                   related=related, payload=payload)
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"could not emit the run's event: {type(exc).__name__}")
