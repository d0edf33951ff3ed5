"""`ansflow validate | plan | run | schema`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from ansflow.errors import AnsflowError, SpecError, UsageError
from ansflow.plan import Plan
from ansflow.spec.schema import pipeline_json_schema
from ansflow.spec.validate import load_plan
from ansflow.variables import parse_var_options, resolve_variables

err = Console(stderr=True, highlight=False, soft_wrap=True)


def _load(path: Path, invalid_code: int = 1) -> Plan:
    """The plan of ``path``; prints problems and exits ``invalid_code`` (invalid) or 2."""
    try:
        return load_plan(path)
    except SpecError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False)
        err.print(f"{path}: {len(exc.problems)} problem(s)", markup=False)
        raise typer.Exit(invalid_code) from None
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None


def validate(files: list[Path] = typer.Argument(..., help="Pipeline YAML files.")) -> None:
    """Validate pipeline files; report every problem as FILE:LINE:COL: message."""
    worst = 0
    for path in files:
        try:
            plan = _load(path)
        except typer.Exit as exit_:
            worst = max(worst, exit_.exit_code)
            continue
        err.print(f"{path}: valid ({plan.name!r}: {len(plan.stages)} stage(s), "
                  f"{len(plan.steps) + len(plan.finally_steps)} step(s))", markup=False)
    raise typer.Exit(worst)


def plan_cmd(
    file: Path = typer.Argument(..., help="Pipeline YAML file."),
    format: str = typer.Option("text", "--format", "-f", help="text, json or mermaid."),
) -> None:
    """Show stages, steps, dependencies and where each step runs, without running anything."""
    from ansflow.cli.render import plan_mermaid, plan_text  # noqa: PLC0415

    if format not in ("text", "json", "mermaid"):
        err.print(f"error: --format must be text, json or mermaid, not {format!r}")
        raise typer.Exit(2)
    plan = _load(file)
    if format == "json":
        typer.echo(json.dumps(plan.to_dict(), indent=2, ensure_ascii=False))
    elif format == "mermaid":
        typer.echo(plan_mermaid(plan))
    else:
        Console(highlight=False).print(plan_text(plan))


def run(
    file: Path = typer.Argument(..., help="Pipeline YAML file."),
    var: Optional[list[str]] = typer.Option(None, "--var", help="Override a variable: K=V."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout."),
    dev_cluster: Optional[list[str]] = typer.Option(
        None, "--dev-cluster", metavar="NAME",
        help="Save the running dev cluster NAME as the cluster block NAME on this run's "
             "Prefect server before the run (one server for both, e.g. the ephemeral one)."),
    dev_host: Optional[list[str]] = typer.Option(
        None, "--dev-host", metavar="NAME",
        help="Save the private sshd of scripts/sshd.sh (its ANSFLOW_SSHD_* variables) as the "
             "SSH host block NAME on this run's Prefect server before the run."),
    ref: Optional[str] = typer.Option(
        None, "--ref", help="With a git `source:`: the branch, tag or commit to build."),
    sha: Optional[str] = typer.Option(
        None, "--sha", help="With a git `source:`: the exact commit (full SHA) to build."),
) -> None:
    """Run a pipeline as a Prefect flow (ephemeral Prefect unless PREFECT_API_URL is set)."""
    plan = _load(file, invalid_code=2)
    try:
        values = resolve_variables(plan, parse_var_options(var or []))
    except UsageError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    from ansflow.cli.runner import run_pipeline  # noqa: PLC0415 - imports Prefect

    try:
        summary = run_pipeline(file, values, live=not as_json and sys.stdout.isatty(),
                               dev_clusters=dev_cluster or [], dev_hosts=dev_host or [],
                               plan=plan, git={k: v for k, v in (("ref", ref), ("sha", sha))
                                               if v is not None})
    except AnsflowError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        from ansflow.cli.render import summary_table  # noqa: PLC0415

        Console(highlight=False).print(summary_table(summary))
    raise typer.Exit(0 if summary["state"] == "completed" else 1)


def schema() -> None:
    """Print the JSON Schema of pipeline files."""
    typer.echo(json.dumps(pipeline_json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    """Attach the pipeline commands to the top-level app."""
    app.command("validate")(validate)
    app.command("plan")(plan_cmd)
    app.command("run")(run)
    app.command("schema")(schema)
