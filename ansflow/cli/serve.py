"""`ansflow serve`: every valid pipeline file becomes a Prefect deployment, served here."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ansflow.errors import AnsflowError

if TYPE_CHECKING:
    from ansflow.serving import Discovery


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
    manage: bool = typer.Option(
        False, "--manage",
        help="Also serve the cluster management deployments ansflow-k8s/<operation> "
             "(alone when no path is given)."),
    upkeep: bool = typer.Option(
        False, "--upkeep",
        help="Also serve the scheduled upkeep deployments ansflow-sync, ansflow-health and "
             "ansflow-cleanup (alone when no path is given; docs/cleanup.md)."),
    sync_cron: str = typer.Option(
        None, "--sync-cron", envvar="ANSFLOW_SYNC_CRON", show_default="*/5 * * * *",
        help="--upkeep: the cron schedule (UTC) of ansflow-sync."),
    health_cron: str = typer.Option(
        None, "--health-cron", envvar="ANSFLOW_HEALTH_CRON", show_default="* * * * *",
        help="--upkeep: the cron schedule (UTC) of ansflow-health."),
    cleanup_cron: str = typer.Option(
        None, "--cleanup-cron", envvar="ANSFLOW_CLEANUP_CRON", show_default="0 * * * *",
        help="--upkeep: the cron schedule (UTC) of ansflow-cleanup."),
) -> None:
    """Serve pipeline files as Prefect deployments named `ansflow-pipeline/<pipeline name>`,
    and with --manage the cluster operations as `ansflow-k8s/<operation>` (docs/manage.md),
    with --upkeep the cron-scheduled sync, health and cleanup flows (docs/cleanup.md).

    Each deployment's parameters are the pipeline's variables (the Prefect UI's run form),
    a pipeline's `schedule:` becomes the deployment's cron schedule, and the process picks
    up runs started from the UI, `prefect deployment run`, schedules and Automations until
    it is stopped (schedules stay active). Invalid files are reported and skipped.
    """
    alone = manage or upkeep
    found = _discover_pipelines(paths, alone)
    crons = _upkeep_schedules({"ansflow-sync": sync_cron, "ansflow-health": health_cron,
                               "ansflow-cleanup": cleanup_cron}) if upkeep else {}
    _list_served(found.plans, alone=alone, manage=manage, upkeep=upkeep, crons=crons)
    if check:
        raise typer.Exit(1 if found.problems else 0)
    _prepare_environment()
    try:
        deployments, clusters = _deployments(found.plans, alone=alone, manage=manage,
                                             upkeep=upkeep, crons=crons,
                                             crash_lost_runs=crash_lost_runs)
    except AnsflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if crash_lost_runs and found.plans:
        _set_up_lost_run_automation()
    _serve_until_stopped(deployments, limit=limit, manage=manage, clusters=clusters)


def _discover_pipelines(paths: list[str] | None, alone: bool) -> Discovery:
    """The valid pipeline files under ``paths``, the invalid ones reported; none looked for
    when only --manage or --upkeep was asked for."""
    from ansflow.serving import Discovery, discover  # noqa: PLC0415

    found = discover(paths or ["."]) if paths or not alone else Discovery()
    for problem in found.problems:
        typer.echo(f"error: {problem}", err=True)
    return found


def _list_served(plans: dict, *, alone: bool, manage: bool, upkeep: bool,
                 crons: dict[str, str]) -> None:
    """Say what is going to be served; exit when that is nothing."""
    if not plans and not alone:
        typer.echo("error: no valid pipeline to serve", err=True)
        raise typer.Exit(1)
    _list_pipelines(plans)
    if manage:
        _list_operations()
    if upkeep:
        _list_upkeep(crons)


def _list_pipelines(plans: dict) -> None:
    from ansflow.serving import form_variables  # noqa: PLC0415

    for name, (file, plan) in plans.items():
        fields = form_variables(plan)
        for var in plan.variables:
            if var not in fields:
                typer.echo(f"warning: {_shown(file)}: variable {var!r} is not a Python "
                           "identifier, so it cannot be a run-form field; served with its "
                           "default", err=True)
        cron = f"; schedule {plan.schedule['cron']} ({plan.schedule.get('timezone') or 'UTC'})" \
            if plan.schedule else ""
        if plan.on_push:
            cron += f"; on push to {plan.on_push['repository']}"
        typer.echo(f"serving ansflow-pipeline/{name} from {_shown(file)} "
                   f"({', '.join(fields) or 'no variables'}{cron})", err=True)


def _prepare_environment() -> None:
    from ansflow.cli.runner import default_environment  # noqa: PLC0415

    default_environment()
    # Flow-run processes inherit it: heartbeats let the server notice a vanished run.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")


def _deployments(plans: dict, *, alone: bool, manage: bool, upkeep: bool,
                 crons: dict[str, str], crash_lost_runs: bool) -> tuple[list, list[str]]:
    """Everything to serve, and the saved clusters the management forms offer. Raises
    AnsflowError when the server does not answer or nothing is left to serve."""
    from ansflow.cli.runner import ensure_server  # noqa: PLC0415
    from ansflow.flows.deployment import lost_run_window  # noqa: PLC0415
    from ansflow.serving import record_served  # noqa: PLC0415

    if crash_lost_runs:
        lost_run_window(_heartbeat_seconds())  # a bad ANSFLOW_LOST_RUN_AFTER: say so now
    ensure_server()
    deployments = _pipeline_deployments(plans)
    if not deployments and not alone:
        raise AnsflowError("no valid pipeline to serve")
    if plans:
        record_served(plans)
    clusters: list[str] = []
    if manage:
        clusters = _saved_clusters()
        deployments.extend(_manage_deployments(clusters))
    if upkeep:
        deployments.extend(_upkeep_deployments(crons))
    return deployments, clusters


def _pipeline_deployments(plans: dict) -> list:
    """A deployment per pipeline; a pipeline Prefect refuses is reported and dropped from
    ``plans``, so that it is not recorded as served."""
    from ansflow.flows.deployment import build_deployment  # noqa: PLC0415

    deployments = []
    for name, (file, plan) in list(plans.items()):
        try:
            deployment = build_deployment(plan, file)
            deployment.triggers = _push_triggers(plan)
            deployments.append(deployment)
        except (ValueError, TypeError, AnsflowError) as exc:  # e.g. a cron Prefect refuses
            typer.echo(f"error: {_shown(file)}: cannot serve {name!r}: {exc}", err=True)
            del plans[name]
    _publish_push_filters(plans)
    return deployments


def _push_triggers(plan) -> list:
    """The deployment trigger of the pipeline's `on.push` (none without it). Raises
    ValueError (a UsageError) when its filters cannot be published."""
    from prefect.events import DeploymentEventTrigger  # noqa: PLC0415

    from ansflow.serving import push_trigger  # noqa: PLC0415

    spec = push_trigger(plan)
    return [DeploymentEventTrigger(**spec)] if spec else []


def _publish_push_filters(plans: dict) -> None:
    """Publish each served pipeline's `on.push` filter as a Prefect Variable (the git hook
    and the webhook receiver read them); a pipeline served without `on.push` has its old
    one removed, so pushes stop selecting it."""
    from prefect.variables import Variable  # noqa: PLC0415

    from ansflow.gitpush.events import REGISTRATION_TAG, registration_name  # noqa: PLC0415
    from ansflow.serving import push_registration  # noqa: PLC0415

    for name, (_file, plan) in plans.items():
        try:
            value = push_registration(plan)
            if value is None:
                Variable.unset(registration_name(name))
            else:
                Variable.set(registration_name(name), value, tags=[REGISTRATION_TAG],
                             overwrite=True)
        except Exception as exc:  # noqa: BLE001 - the server refused: say so, serve the rest
            typer.echo(f"warning: pipeline {name!r}: could not publish its on.push filters "
                       f"({exc}); pushes will not start it", err=True)


def _set_up_lost_run_automation() -> None:
    from ansflow.flows.deployment import ensure_lost_run_automation  # noqa: PLC0415

    try:
        ensure_lost_run_automation(_heartbeat_seconds())
    except Exception as exc:  # noqa: BLE001 - serving still works without it
        typer.echo(f"warning: could not set up the lost-run Automation: {exc}", err=True)


def _serve_until_stopped(deployments: list, *, limit: int | None, manage: bool,
                         clusters: list[str]) -> None:
    from prefect import serve as prefect_serve  # noqa: PLC0415

    stop = threading.Event()
    if manage:
        _start_cluster_choices_refresh(stop, clusters)
    try:
        prefect_serve(*deployments, pause_on_shutdown=False, limit=limit,
                      print_starting_message=False)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - a server gone mid-serve: say so, no traceback
        typer.echo(f"error: serving stopped: {exc}", err=True)
        raise typer.Exit(1) from None
    finally:
        stop.set()


def _start_cluster_choices_refresh(stop: threading.Event, clusters: list[str]) -> None:
    """Keeps the management forms' cluster choices in step with the saved blocks until
    ``stop`` is set."""
    from ansflow.flows.manage import (  # noqa: PLC0415
        cluster_refresh_seconds,
        refresh_cluster_choices,
    )

    threading.Thread(target=refresh_cluster_choices, daemon=True,
                     args=(stop, cluster_refresh_seconds(), clusters),
                     name="ansflow-cluster-choices").start()


def _list_operations() -> None:
    from ansflow.flows.manage import FLOW_NAME, form_fields  # noqa: PLC0415
    from ansflow.manage import load_operations  # noqa: PLC0415

    for name, op in sorted(load_operations().items()):
        note = "; destructive: runs with confirm = the object's name, or an approval" \
            if op.destructive else ""
        typer.echo(f"serving {FLOW_NAME}/{name} ({', '.join(form_fields(op))}{note})",
                   err=True)


def _upkeep_schedules(overrides: dict[str, str | None]) -> dict[str, str]:
    from ansflow.errors import UsageError  # noqa: PLC0415
    from ansflow.flows.upkeep import schedules  # noqa: PLC0415

    try:
        return schedules(overrides)
    except UsageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _list_upkeep(crons: dict[str, str]) -> None:
    """Say which upkeep deployments are served, on which schedule; a job whose flow this
    version does not have is named as skipped."""
    import logging  # noqa: PLC0415

    from ansflow.flows.upkeep import UPKEEP, load_flow  # noqa: PLC0415

    class Echo(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            typer.echo(f"warning: {record.getMessage()}", err=True)

    logger = logging.getLogger("ansflow.upkeep")
    handler, propagate = Echo(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # said once, here
    try:
        for name, job in UPKEEP.items():
            if load_flow(job) is not None:
                typer.echo(f"serving {name} on schedule {crons[name]} (UTC; a new run is "
                           "cancelled while the previous one is still going)", err=True)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _upkeep_deployments(crons: dict[str, str]) -> list:
    """The upkeep deployments whose flow this version has (the others were named above)."""
    from ansflow.flows.upkeep import upkeep_deployments  # noqa: PLC0415

    logging_off = __import__("logging").getLogger("ansflow.upkeep")
    before = logging_off.disabled
    logging_off.disabled = True  # already said by _list_upkeep
    try:
        return upkeep_deployments(crons)
    finally:
        logging_off.disabled = before


def _saved_clusters() -> list[str]:
    from ansflow.blocks.kubernetes import saved_cluster_names  # noqa: PLC0415

    try:
        return saved_cluster_names()
    except Exception as exc:  # noqa: BLE001 - a server refusal: serve with a free-text field
        typer.echo(f"warning: could not list the saved Kubernetes clusters: {exc}", err=True)
        return []


def _manage_deployments(clusters: list[str]) -> list:
    """The management deployments, the cluster field a choice of the saved blocks."""
    from ansflow.flows.manage import manage_deployments  # noqa: PLC0415

    if clusters:
        typer.echo(f"cluster choices: {', '.join(clusters)} (kept in step with the saved "
                   "blocks while serving)", err=True)
    else:
        typer.echo("warning: no Kubernetes cluster block is saved, so the cluster field is free "
                   "text (save one: ansflow cluster add NAME --kubeconfig FILE)", err=True)
    return manage_deployments(clusters)


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
