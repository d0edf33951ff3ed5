"""`ansflow validate|plan|run|schema`."""

import typer


def register(app: typer.Typer) -> None:
    """Attach the pipeline commands to the top-level app."""
