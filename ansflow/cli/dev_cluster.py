"""`ansflow dev-cluster`: a real local Kubernetes control plane (placeholder until it lands)."""

import typer

app = typer.Typer(help="Run a real local Kubernetes control plane (etcd, API server, kwok).",
                  no_args_is_help=True)
