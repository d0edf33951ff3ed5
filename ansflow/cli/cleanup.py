"""`ansflow cleanup`: remove what pipeline runs left behind."""

import typer


def cleanup(
    docker: bool = typer.Option(False, "--docker", help="Remove leftover containers."),
) -> None:
    """Remove containers and objects that pipeline runs left behind."""
    typer.echo("nothing to clean up: no cleanup target is available yet", err=True)
    raise typer.Exit(2)
