"""Runs a pipeline flow for the CLI: server check, live progress, the run's summary."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ansflow.errors import AnsflowError
from ansflow.plan import Plan, PlannedStep

_ICON = {"running": "▶", "completed": "✔", "failed": "✘", "timedout": "⏱", "cancelled": "■",
         "skipped": "↷", "not_run": "·"}


# Prefect waits 20 s for its temporary server; a cold one needs 25-45 s on a slow 2-core
# machine (fresh database: migrations, imports), more when the machine is busy.
EPHEMERAL_STARTUP_SECONDS = "180"
_EPHEMERAL_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def ensure_server() -> str:
    """Make sure a Prefect API answers before anything else talks to it; returns its URL.

    With PREFECT_API_URL set, that server must answer /health. Without it, Prefect's
    temporary (ephemeral) server is started now, once for the whole process: every later
    client call of this process (block loads and saves, the flow run) re-uses it. Failures are
    an AnsflowError with one line that says what to do, never Prefect's traceback.
    """
    url = os.environ.get("PREFECT_API_URL")
    if url:
        _check_health(url)
        return url
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED  # noqa: PLC0415

    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        raise AnsflowError("no Prefect server: PREFECT_API_URL is not set and the ephemeral "
                           "server is disabled; start one with `prefect server start` and "
                           "set PREFECT_API_URL=http://127.0.0.1:4200/api")
    from prefect.server.api.server import SubprocessASGIServer  # noqa: PLC0415

    server = SubprocessASGIServer()
    if not server.running:
        print("starting Prefect's temporary server (PREFECT_API_URL is not set; this can take "
              "a minute on a slow machine)", file=sys.stderr, flush=True)
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - Prefect raises a bare RuntimeError
        raise ephemeral_server_error(exc) from None
    return server.api_url


def ephemeral_server_error(exc: BaseException) -> AnsflowError:
    """The one-line error for Prefect's temporary server failing to start."""
    waited = os.environ.get(_EPHEMERAL_SETTING, EPHEMERAL_STARTUP_SECONDS)
    cause = str(exc).split(" stdout:")[0].strip()[:300] or type(exc).__name__
    return AnsflowError(
        f"Prefect's temporary server did not start ({cause}; waited {waited} s, set by "
        f"{_EPHEMERAL_SETTING}). Raise that setting, or start a server with `prefect server "
        "start` and set PREFECT_API_URL=http://127.0.0.1:4200/api")


def is_ephemeral_server_error(exc: BaseException) -> bool:
    """Is ``exc`` Prefect's "could not start the ephemeral server" error?"""
    return isinstance(exc, RuntimeError) and "ephemeral Prefect API server" in str(exc)


def _check_health(url: str) -> None:
    """Fail early, with the address, when ``url`` points at no running server."""
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


def run_pipeline(file: Path, values: dict[str, Any], *, live: bool,
                 dev_clusters: list[str] = (), dev_hosts: list[str] = (),
                 plan: Plan | None = None, git: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Run ``file`` with ``values`` as one Prefect flow run; returns the JSON summary.

    ``dev_clusters`` are running dev clusters whose blocks are saved first, on the same
    Prefect server as the run (with the ephemeral server: one server for both); so are the
    SshHost blocks ``dev_hosts`` of the private sshd (scripts/sshd.sh). ``plan``
    is the file's plan when the caller has loaded it already (the file is not parsed again).
    ``git``: the run's `ref` / `sha` (a pipeline with a git `source:`).
    """
    _save_dev_blocks(dev_clusters, dev_hosts)
    state = _run_flow(file, values, live=live, plan=plan, git=git or {})
    summary = summary_of(state)
    if summary is not None:
        return summary
    return _unrecorded_summary(file, state)


def _save_dev_blocks(dev_clusters: list[str], dev_hosts: list[str]) -> None:
    """Save the blocks of the dev clusters and hosts a run uses, on the run's server. Both are
    read before the server is started (which can take a minute), so a missing one fails at
    once."""
    from ansflow.cli.dev_cluster import (  # noqa: PLC0415
        running_cluster_kubeconfig,
        save_running_cluster_block,
    )

    kubeconfigs = {name: running_cluster_kubeconfig(name) for name in dev_clusters}
    hosts = {}
    if dev_hosts:
        from ansflow.cli.host import dev_host_block  # noqa: PLC0415

        block = dev_host_block()
        hosts = {name: block for name in dev_hosts}
    ensure_server()
    for name, kubeconfig in kubeconfigs.items():
        save_running_cluster_block(name, kubeconfig)
    for name, block in hosts.items():
        try:
            block.save(name, overwrite=True)
        except Exception as exc:  # noqa: BLE001 - a bad name or an unreachable server
            raise AnsflowError(f"cannot save the host block {name!r}: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _run_flow(file: Path, values: dict[str, Any], *, live: bool, plan: Plan | None,
              git: dict[str, str]) -> Any:
    """The pipeline flow's final state (None when it did not start); an interrupt or SIGTERM
    becomes an AnsflowError."""
    from ansflow.flows.pipeline import PRELOADED_PLAN, pipeline_flow  # noqa: PLC0415
    from ansflow.flows.scheduler import progress_listener  # noqa: PLC0415

    token = progress_listener.set(_progress_printer()) if live else None
    preload = PRELOADED_PLAN.set(plan)
    try:
        return pipeline_flow(str(file.resolve()), values, **git, return_state=True)
    except KeyboardInterrupt:
        raise AnsflowError("interrupted") from None
    except BaseException as exc:  # Prefect's TerminationSignal: SIGTERM outside the steps
        if type(exc).__name__ != "TerminationSignal":
            raise
        raise AnsflowError("terminated (SIGTERM)") from None
    finally:
        PRELOADED_PLAN.reset(preload)
        if token is not None:
            progress_listener.reset(token)


def _progress_printer() -> Callable[[PlannedStep, str], None]:
    console = Console(stderr=True, highlight=False)

    def show(step: PlannedStep, state: str) -> None:
        console.print(f"{_ICON.get(state, '?')} [{step.stage}] {step.name} ({step.id}): "
                      f"{state}", markup=False)
    return show


def _unrecorded_summary(file: Path, state) -> dict[str, Any]:  # noqa: ANN001
    """The summary of a run that recorded none: from its final state, if it has one."""
    message = state.message if state is not None else "the run did not start"
    return {"pipeline": file.stem, "run_id": str(state.state_details.flow_run_id)
            if state is not None else None, "build_number": 0,
            "state": "cancelled" if state is not None and state.is_cancelled() else "failed",
            "message": message, "steps": []}


def summary_of(state) -> dict[str, Any] | None:  # noqa: ANN001
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

    try:
        store = Store()
        try:
            return store.summary(str(state.state_details.flow_run_id))
        finally:
            store.close()
    except AnsflowError:  # the store is unusable: the run's own state message says why
        return None


def default_environment() -> None:
    """Prefect settings that suit a CLI run, unless the user set them (before Prefect loads)."""
    if "prefect" in sys.modules:
        return
    os.environ.setdefault("PREFECT_LOGGING_TO_API_BATCH_INTERVAL", "0.25")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_TELEMETRY_ENABLED", "false")
    os.environ.setdefault(_EPHEMERAL_SETTING, EPHEMERAL_STARTUP_SECONDS)
