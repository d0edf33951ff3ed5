"""`ansflow serve`: every valid pipeline file becomes a Prefect deployment, served here."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ansflow.errors import AnsflowError


def serve(
    paths: list[str] = typer.Argument(None, help="Pipeline files or folders (default: .)."),
    limit: int = typer.Option(None, "--limit", min=1,
                              help="Most runs this process executes at the same time."),
    check: bool = typer.Option(False, "--check",
                               help="Validate and list what would be served, then exit."),
    crash_lost_runs: bool = typer.Option(
        True, "--crash-lost-runs/--no-crash-lost-runs",
        help="Keep the server's Automation that marks a pipeline run Crashed when its "
             "process is gone (no heartbeat for 3 periods of PREFECT_FLOWS_HEARTBEAT_FREQUENCY,"
             " 30 s by default here)."),
) -> None:
    """Serve pipeline files as Prefect deployments named `ansflow-pipeline/<pipeline name>`.

    Each deployment's parameters are the pipeline's variables (the Prefect UI's run form),
    a pipeline's `schedule:` becomes the deployment's cron schedule, and the process picks
    up runs started from the UI, `prefect deployment run`, schedules and Automations until
    it is stopped (schedules stay active). Invalid files are reported and skipped.
    """
    from ansflow.cli.runner import default_environment, ensure_server  # noqa: PLC0415
    from ansflow.serving import discover, form_variables, record_served  # noqa: PLC0415

    found = discover(paths or ["."])
    for problem in found.problems:
        typer.echo(f"error: {problem}", err=True)
    if not found.plans:
        typer.echo("error: no valid pipeline to serve", err=True)
        raise typer.Exit(1)
    for name, (file, plan) in found.plans.items():
        fields = ", ".join(form_variables(plan)) or "no variables"
        for var in plan.variables:
            if var not in form_variables(plan):
                typer.echo(f"warning: {_shown(file)}: variable {var!r} is not a Python "
                           "identifier, so it cannot be a run-form field; served with its "
                           "default", err=True)
        cron = f"; schedule {plan.schedule['cron']} ({plan.schedule.get('timezone') or 'UTC'})" \
            if plan.schedule else ""
        typer.echo(f"serving ansflow-pipeline/{name} from {_shown(file)} ({fields}{cron})",
                   err=True)
    if check:
        raise typer.Exit(1 if found.problems else 0)
    default_environment()
    # Flow-run processes inherit it: heartbeats let the server notice a vanished run.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    try:
        ensure_server()
        from prefect import serve as prefect_serve  # noqa: PLC0415

        from ansflow.flows.deployment import (  # noqa: PLC0415
            build_deployment,
            ensure_lost_run_automation,
        )

        deployments = []
        for name, (file, plan) in list(found.plans.items()):
            try:
                deployments.append(build_deployment(plan, file))
            except (ValueError, TypeError) as exc:  # e.g. a cron or timezone Prefect refuses
                typer.echo(f"error: {_shown(file)}: cannot serve {name!r}: {exc}", err=True)
                del found.plans[name]
        if not deployments:
            raise AnsflowError("no valid pipeline to serve")
        record_served(found.plans)
    except AnsflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if crash_lost_runs:
        try:
            ensure_lost_run_automation(_heartbeat_seconds())
        except Exception as exc:  # noqa: BLE001 - serving still works without it
            typer.echo(f"warning: could not set up the lost-run Automation: {exc}", err=True)
    try:
        prefect_serve(*deployments, pause_on_shutdown=False, limit=limit,
                      print_starting_message=False)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - a server gone mid-serve: say so, no traceback
        typer.echo(f"error: serving stopped: {exc}", err=True)
        raise typer.Exit(1) from None


def _heartbeat_seconds() -> int:
    try:
        return max(30, int(os.environ["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]))
    except (KeyError, ValueError):
        return 30


def _shown(file: Path) -> str:
    try:
        return str(file.relative_to(Path.cwd()))
    except ValueError:
        return str(file)
