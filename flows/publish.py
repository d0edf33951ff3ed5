"""A finished run's summary, published: table + markdown artifacts and a Prefect event.

The event (`ansflow.pipeline.completed` / `.failed` / `.cancelled`) is what Automations
match on: its resource is `ansflow.pipeline.<name>`, its payload carries the pipeline, the
build number and the failed steps, so "notify me when a pipeline fails" needs no code.
"""

from __future__ import annotations

import json
import re
from typing import Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from prefect.settings import PREFECT_UI_URL

from ansflow.masking import Masker, as_masker

EVENT_PREFIX = "ansflow.pipeline"
_FAILED_STATES = {"failed", "timedout"}
_SHOWN_OUTPUTS = ("image", "digest", "image_id", "revision")
_MAX_CELL = 300


def artifact_key(pipeline: str) -> str:
    """An artifact key for ``pipeline``: lowercase letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", pipeline.lower()).strip("-") or "pipeline"
    return f"ansflow-{slug}"[:100]


def mask(text: str, secrets: Masker | dict[str, str]) -> str:
    """``text`` with every secret (and its encodings, and its lines) masked."""
    return as_masker(secrets)(text)


def _cell(value: Any, secrets: Masker | dict[str, str]) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = mask(text, secrets)
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def summary_rows(summary: dict[str, Any], secrets: Masker | dict[str, str]) -> list[dict[str, str]]:
    """One table row per step: what ran, how it ended, how long it took, what it produced."""
    rows = []
    for step in summary.get("steps", []):
        rows.append({
            "step": _cell(step.get("name") or step.get("id"), secrets),
            "id": str(step.get("id")),
            "stage": _cell(step.get("stage") or "", secrets),
            "type": str(step.get("type")),
            "state": str(step.get("state")),
            "exit code": "" if step.get("exit_code") is None else str(step["exit_code"]),
            "attempts": str(step.get("attempts") or 0),
            "duration (s)": f"{step.get('duration_s') or 0:.2f}",
            "outputs": _cell(step.get("outputs") or {}, secrets),
            "message": _cell(step.get("message") or "", secrets),
        })
    return rows


def failed_steps(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"id": s.get("id"), "name": s.get("name"), "state": s.get("state"),
             "exit_code": s.get("exit_code"), "message": s.get("message")}
            for s in summary.get("steps", []) if s.get("state") in _FAILED_STATES]


def summary_markdown(summary: dict[str, Any], secrets: Masker | dict[str, str]) -> str:
    """The run as markdown: headline, what it built / pushed / deployed, failed steps."""
    run_id = summary.get("run_id")
    title = f"{summary.get('pipeline')} #{summary.get('build_number')}"
    ui = PREFECT_UI_URL.value()
    link = f"[{title}]({ui.rstrip('/')}/runs/flow-run/{run_id})" if ui and run_id else title
    lines = [f"# {link}: {summary.get('state')}", "", mask(str(summary.get("message") or ""),
                                                           secrets), ""]
    produced = []
    for step in summary.get("steps", []):
        outputs = step.get("outputs") or {}
        shown = {k: outputs[k] for k in _SHOWN_OUTPUTS if outputs.get(k)}
        if shown:
            parts = ", ".join(f"{k} `{mask(str(v), secrets)}`" for k, v in shown.items())
            produced.append(f"- **{step.get('name')}** ({step.get('type')}): {parts}")
    if produced:
        lines += ["## Built, pushed, deployed", "", *produced, ""]
    commit = commit_lines(summary, secrets)
    if commit:
        lines += ["## Commit", "", *commit, ""]
    approvals = approval_lines(summary, secrets)
    if approvals:
        lines += ["## Approvals", "", *approvals, ""]
    failed = failed_steps(summary)
    if failed:
        lines += ["## Failed steps", ""]
        lines += [f"- **{s['name']}** (`{s['id']}`): "
                  f"{mask(str(s['message'] or s['state']), secrets)}" for s in failed]
    return "\n".join(lines)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")
_CONTROLS = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x1f\x7f]")


def markdown_text(text: str, limit: int = _MAX_CELL) -> str:
    """Untrusted text (a commit message, an author) as literal markdown on one line: controls
    dropped, every markdown / HTML character escaped, cut to ``limit``."""
    text = _CONTROLS.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def commit_lines(summary: dict[str, Any], secrets: Masker | dict[str, str]) -> list[str]:
    """The commit a run with a git source built: repository, ref, SHA, author, subject."""
    git = summary.get("git")
    if not isinstance(git, dict) or not git.get("sha"):
        return []
    subject = str(git.get("message") or "").split("\n", 1)[0]
    ref = git.get("branch") or git.get("tag") or git.get("ref") or "(a commit)"
    return [f"- repository: {markdown_text(mask(str(git.get('repository') or ''), secrets))}",
            f"- ref: {markdown_text(mask(str(ref), secrets))}",
            f"- commit: `{str(git['sha'])[:64]}`",
            f"- author: {markdown_text(mask(str(git.get('author') or ''), secrets))}",
            f"- message: {markdown_text(mask(subject, secrets))}"]


def approval_lines(summary: dict[str, Any], secrets: Masker | dict[str, str]) -> list[str]:
    """One line per approval step: the decision, its comment and the fields filled in."""
    lines = []
    for step in summary.get("steps", []):
        if step.get("type") != "approval" or step.get("state") in ("pending", "not_run"):
            continue
        outputs = dict(step.get("outputs") or {})
        if step.get("state") == "completed":
            comment = outputs.pop("comment", "")
            outputs.pop("approved", None)
            said = f": {mask(str(comment), secrets)}" if comment else ""
            fields = ", ".join(f"{k} `{_cell(v, secrets)}`" for k, v in outputs.items() if v)
            decision = f"approved{said}" + (f" ({fields})" if fields else "")
        else:
            decision = mask(str(step.get("message") or step.get("state")), secrets)
        lines.append(f"- **{_cell(step.get('name') or step.get('id'), secrets)}**: {decision}")
    return lines


def event_name(state: str) -> str:
    if state == "completed":
        return f"{EVENT_PREFIX}.completed"
    if state == "cancelled":
        return f"{EVENT_PREFIX}.cancelled"
    return f"{EVENT_PREFIX}.failed"


def emit_run_event(summary: dict[str, Any], secrets: Masker | dict[str, str]) -> None:
    """Emit the run's finishing event (matched by Automations)."""
    pipeline = str(summary.get("pipeline"))
    payload = {
        "pipeline": pipeline,
        "build_number": summary.get("build_number"),
        "state": summary.get("state"),
        "message": mask(str(summary.get("message") or ""), secrets),
        "failed_steps": [{**s, "message": mask(str(s["message"] or ""), secrets)}
                         for s in failed_steps(summary)],
        "flow_run_id": summary.get("run_id"),
    }
    git = summary.get("git")
    if isinstance(git, dict) and git.get("sha"):
        payload["git"] = {k: str(git.get(k) or "") for k in ("sha", "ref", "repository")}
    emit_event(
        event=event_name(str(summary.get("state"))),
        resource={"prefect.resource.id": f"{EVENT_PREFIX}.{pipeline}",
                  "prefect.resource.name": pipeline, "ansflow.pipeline": pipeline},
        related=[{"prefect.resource.id": f"prefect.flow-run.{summary.get('run_id')}",
                  "prefect.resource.role": "flow-run"}],
        payload=payload,
    )


def publish_run(summary: dict[str, Any], secrets: Masker | dict[str, str] | None = None) -> None:
    """Publish ``summary`` as artifacts and an event; a failure here only logs a warning.

    ``secrets``: the run's Masker (or a dict of secret values) applied to all that is shown.
    """
    secrets = as_masker(secrets)
    logger = get_run_logger()
    key = artifact_key(str(summary.get("pipeline")))
    title = f"{summary.get('pipeline')} #{summary.get('build_number')}"
    try:
        create_table_artifact(table=summary_rows(summary, secrets), key=key,
                              description=f"Steps of {title}: {summary.get('state')}")
        create_markdown_artifact(markdown=summary_markdown(summary, secrets),
                                 key=f"{key}-summary", description=f"Summary of {title}")
    except Exception as exc:  # noqa: BLE001 - the run's outcome must not depend on artifacts
        logger.warning(f"could not publish the run's artifacts: {exc}")
    try:
        emit_run_event(summary, secrets)
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"could not emit the run's event: {exc}")
