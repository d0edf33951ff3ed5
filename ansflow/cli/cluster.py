"""`ansflow cluster`: saved Kubernetes cluster blocks (placeholder until it lands)."""

import typer

app = typer.Typer(help="Manage saved Kubernetes cluster credentials (Prefect blocks).",
                  no_args_is_help=True)
