"""`ansflow serve`: pipelines as Prefect deployments (placeholder until it lands)."""

import typer


def serve(paths: list[str] = typer.Argument(None, help="Pipeline files or folders.")) -> None:
    """Serve pipeline files as Prefect deployments."""
    typer.echo("error: `ansflow serve` is not available yet", err=True)
    raise typer.Exit(2)
