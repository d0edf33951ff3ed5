"""Runs a pipeline flow for the CLI: server check, live progress, the run's summary."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console

from ansflow.errors import AnsflowError
from ansflow.plan import PlannedStep

_ICON = {"running": "▶", "completed": "✔", "failed": "✘", "timedout": "⏱", "cancelled": "■",
         "skipped": "↷", "not_run": "·"}


def check_server() -> None:
    """Fail early, with the address, when PREFECT_API_URL points at no running server."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return  # Prefect starts an ephemeral server
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as resp:
            if resp.status == 200:
                return
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AnsflowError(f"the Prefect server at {url} is unreachable ({reason}); start it "
                           "with `prefect server start`, or unset PREFECT_API_URL to use an "
                           "ephemeral one") from None
    raise AnsflowError(f"the Prefect server at {url} is not healthy")


def run_pipeline(file: Path, values: dict[str, Any], *, live: bool) -> dict[str, Any]:
    """Run ``file`` with ``values`` as one Prefect flow run; returns the JSON summary."""
    check_server()
    from ansflow.flows.pipeline import pipeline_flow  # noqa: PLC0415
    from ansflow.flows.scheduler import progress_listener  # noqa: PLC0415

    console = Console(stderr=True, highlight=False)
    token = None
    if live:
        def show(step: PlannedStep, state: str) -> None:
            console.print(f"{_ICON.get(state, '?')} [{step.stage}] {step.name} ({step.id}): "
                          f"{state}", markup=False)
        token = progress_listener.set(show)
    try:
        state = pipeline_flow(str(file.resolve()), values, return_state=True)
    except KeyboardInterrupt:
        raise AnsflowError("interrupted") from None
    finally:
        if token is not None:
            progress_listener.reset(token)
    summary = _summary_of(state)
    if summary is not None:
        return summary
    message = state.message if state is not None else "the run did not start"
    return {"pipeline": file.stem, "run_id": str(state.state_details.flow_run_id)
            if state is not None else None, "build_number": 0,
            "state": "cancelled" if state is not None and state.is_cancelled() else "failed",
            "message": message, "steps": []}


def _summary_of(state) -> dict[str, Any] | None:  # noqa: ANN001
    """The run's summary: the final state's data, else what the run recorded in the store."""
    if state is None:
        return None
    try:
        summary = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - e.g. a run left Cancelling by the server
        summary = None
    if isinstance(summary, dict) and "steps" in summary:
        return summary
    from ansflow.store import Store  # noqa: PLC0415

    store = Store()
    try:
        return store.summary(str(state.state_details.flow_run_id))
    finally:
        store.close()


def default_environment() -> None:
    """Prefect settings that suit a CLI run, unless the user set them (before Prefect loads)."""
    if "prefect" in sys.modules:
        return
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.25")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_TELEMETRY_ENABLED", "false")
