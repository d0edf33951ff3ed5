"""`ansflow sync`, `ansflow health`, `ansflow inventory`: the cluster inventory commands."""

from __future__ import annotations

import typer

from ansflow.cli import inventory as inventory_cli
from ansflow.cli.common import fail as _fail
from ansflow.errors import AnsflowError


def _names(clusters: list[str] | None) -> list[str]:
    from ansflow.blocks.kubernetes import ClusterNotFound  # noqa: PLC0415
    from ansflow.cli.runner import ensure_server  # noqa: PLC0415
    from ansflow.flows.clusters import choose_clusters  # noqa: PLC0415

    try:
        ensure_server()
        names = choose_clusters(clusters or None)
    except ClusterNotFound as exc:
        _fail(str(exc), 2)
    except AnsflowError as exc:
        _fail(str(exc))
    if not names:
        typer.echo("no saved clusters (add one with `ansflow cluster add`)")
        raise typer.Exit(0)
    return names


def sync(
    clusters: list[str] = typer.Argument(None, help="Saved cluster blocks (default: all)."),
    max_parallel: int = typer.Option(4, "--max-parallel", min=1, max=64,
                                     help="Clusters synced at once."),
) -> None:
    """Sync saved clusters' objects into the inventory (a Prefect flow run `ansflow-sync`)."""
    names = _names(clusters)
    from ansflow.flows.sync import sync as sync_flow  # noqa: PLC0415

    state = sync_flow(clusters=names, max_parallel=max_parallel, return_state=True)
    results = state.result(raise_on_failure=False) if state.is_completed() else None
    if not isinstance(results, dict):
        _fail(f"sync failed: {state.message or state.name}"[:2000])
    typer.echo(f"{'CLUSTER':<24}{'OUTCOME':<12}{'OBJECTS':>8}{'ADDED':>8}{'CHANGED':>8}"
               f"{'REMOVED':>8}{'DRIFTED':>8}")
    for name, r in results.items():
        t = r["totals"]
        typer.echo(f"{name:<24}{r['outcome']:<12}{t['total']:>8}{t['added']:>8}"
                   f"{t['changed']:>8}{t['removed']:>8}{len(r['drift']):>8}")
        for kind, reason in r["skipped"].items():
            typer.echo(f"  {kind} skipped: {reason}", err=True)


def health(
    clusters: list[str] = typer.Argument(None, help="Saved cluster blocks (default: all)."),
    interval: float = typer.Option(60.0, "--interval", min=1, max=604800,
                                   help="Seconds of Warning events to count."),
) -> None:
    """Check saved clusters' health (a Prefect flow run `ansflow-health`); exit 1 when a
    cluster is not ok."""
    names = _names(clusters)
    from ansflow.flows.health import health as health_flow  # noqa: PLC0415

    state = health_flow(clusters=names, interval=interval, return_state=True)
    results = state.result(raise_on_failure=False) if state.is_completed() else None
    if not isinstance(results, dict):
        _fail(f"health check failed: {state.message or state.name}"[:2000])
    for name, r in results.items():
        typer.echo(f"{name}: {r['status']}: {r['message']}")
        for problem in r["failed_checks"] + r["node_problems"] + r["stuck_pods"]:
            typer.echo(f"  {problem}")
    raise typer.Exit(0 if all(r["status"] == "ok" for r in results.values()) else 1)


def register(app: typer.Typer) -> None:
    app.command("sync")(sync)
    app.command("health")(health)
    app.command("inventory")(inventory_cli.inventory)
