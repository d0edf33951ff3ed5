"""`ansflow cleanup`: remove what pipeline runs left behind (first version: Docker containers)."""

from __future__ import annotations

import typer

from ansflow.errors import AnsflowError


def cleanup(
    docker: bool = typer.Option(
        False, "--docker", help="Kill and remove containers carrying ansflow's run labels."
    ),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Only what this pipeline run created (default: every run)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be removed."),
) -> None:
    """Remove containers and objects that pipeline runs left behind.

    A cancelled run removes its containers itself; a crashed one leaves them, labelled
    `ansflow.dev/run-id=<run>`. This command finds them by that label.
    """
    if not docker:
        typer.echo("say what to clean up: --docker", err=True)
        raise typer.Exit(2)
    from ansflow.engines.docker import list_labelled_containers, remove_labelled_containers

    try:
        if dry_run:
            found = list_labelled_containers(run_id)
            for c in found:
                typer.echo(f"{c['id']}  {c['state']:<10} {c['name']}  "
                           f"run={c['labels'].get('ansflow.dev/run-id', '?')}")
            typer.echo(f"would remove {len(found)} container(s)")
            return
        removed = remove_labelled_containers(run_id)
    except AnsflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    scope = f"of run {run_id}" if run_id else "of ansflow runs"
    typer.echo(f"removed {removed} container(s) {scope}")
