"""The `ansflow` command line: validate, plan, run, schema, and the engine sub-commands."""

from __future__ import annotations

import typer

from ansflow.cli import approve as approve_cli
from ansflow.cli import cleanup as cleanup_cli
from ansflow.cli import cluster as cluster_cli
from ansflow.cli import dev_cluster as dev_cluster_cli
from ansflow.cli import git_hook as git_hook_cli
from ansflow.cli import host as host_cli
from ansflow.cli import pipeline as pipeline_cli
from ansflow.cli import retry as retry_cli
from ansflow.cli import serve as serve_cli
from ansflow.cli import upkeep as upkeep_cli
from ansflow.cli import webhook as webhook_cli

app = typer.Typer(
    name="ansflow",
    help="Hybrid shell / Docker / Kubernetes CI/CD pipelines, run as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
pipeline_cli.register(app)
retry_cli.register(app)
approve_cli.register(app)
app.command("serve")(serve_cli.serve)
app.command("cleanup")(cleanup_cli.cleanup)
app.command("webhook")(webhook_cli.webhook)
upkeep_cli.register(app)
app.add_typer(dev_cluster_cli.app, name="dev-cluster")
app.add_typer(cluster_cli.app, name="cluster")
app.add_typer(host_cli.app, name="host")
app.add_typer(git_hook_cli.app, name="git-hook")
