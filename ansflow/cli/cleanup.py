"""`ansflow cleanup`: remove what pipeline runs left behind (ansflow.upkeep.cleanup)."""

from __future__ import annotations

import typer

from ansflow.errors import AnsflowError

RUN_LABEL = "ansflow.dev/run-id"
MAX_LISTED = 200


def cleanup(
    cluster: list[str] = typer.Option(
        None, "--cluster", "-c", metavar="NAME",
        help="A saved KubernetesCluster block: remove its step pods of finished runs and "
             "its expired objects (expire_after). Repeat for several."),
    docker: bool = typer.Option(
        False, "--docker", help="Remove Docker containers of finished runs and images beyond "
                                "each pipeline's newest --keep-builds builds."),
    records: bool = typer.Option(
        False, "--records", help="Remove run records (and removed inventory records) older "
                                 "than --retention-days."),
    workspaces: bool = typer.Option(
        False, "--workspaces", help="Remove this machine's run workspaces kept after a failure "
                                    "past their keep time, or left by a crashed run."),
    run_id: str | None = typer.Option(
        None, "--run-id", help="Only what this pipeline run created, whatever its state "
                               "(default: every finished run)."),
    pipeline: list[str] = typer.Option(
        None, "--pipeline", "-p", help="Only what this pipeline left (repeatable)."),
    keep_builds: int = typer.Option(5, "--keep-builds", min=0,
                                    help="Images of the newest N builds of each pipeline stay."),
    retention_days: float = typer.Option(30.0, "--retention-days", min=0,
                                         help="Age in days beyond which records go."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the plan; delete nothing."),
) -> None:
    """Remove what pipeline runs left behind, and only what carries ansflow's run labels.

    Steps label what they create `ansflow.dev/run-id=<run>`. Pods, Jobs and containers of
    runs the Prefect server (or the ansflow store) reports finished are removed; those of
    runs still going, or unknown to both, are skipped and listed. Objects deployed with
    `expire_after:` go once expired. Never kube-system, kube-public, kube-node-lease, nor
    anything annotated `ansflow.dev/keep: "true"`. Exit 1 when a delete failed or a cluster
    or engine could not be read (the rest is done all the same); 2 for bad input.
    """
    clusters = list(cluster or [])
    if not (clusters or docker or records or workspaces):
        typer.echo("error: say what to clean up: --cluster NAME, --docker, --records or "
                   "--workspaces", err=True)
        raise typer.Exit(2)
    from ansflow.upkeep.cleanup import CleanupOptions  # noqa: PLC0415

    options = CleanupOptions(clusters=clusters, docker=docker, keep_builds=keep_builds,
                             run_retention_days=retention_days if records else None,
                             pipelines=list(pipeline or []), run_id=run_id, dry_run=dry_run,
                             workspaces=workspaces)
    try:
        if clusters or records or (docker and not run_id):  # run states: the server
            from ansflow.cli.runner import ensure_server  # noqa: PLC0415 - imports Prefect

            ensure_server()
        if clusters:
            _check_clusters(clusters)
        report = _run(options)
    except AnsflowError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _print(report, options)
    if report.failed or report.problems:
        raise typer.Exit(1)


def _check_clusters(names: list[str]) -> None:
    from ansflow.blocks.kubernetes import saved_cluster_names  # noqa: PLC0415

    saved = saved_cluster_names()  # AnsflowError: the server refused, said in one line
    missing = [n for n in names if n not in saved]
    if missing:
        listed = ", ".join(saved) if saved else "none"
        typer.echo(f"error: no saved Kubernetes cluster block named {missing[0]!r} (saved: "
                   f"{listed}); save one: ansflow cluster add NAME --kubeconfig FILE", err=True)
        raise typer.Exit(2)


def _run(options):  # noqa: ANN001, ANN202
    from ansflow.upkeep.cleanup import cleanup as run_cleanup  # noqa: PLC0415

    return run_cleanup(options)


def _counts(items) -> str:  # noqa: ANN001
    by_kind: dict[str, int] = {}
    for item in items:
        by_kind[item.kind.lower()] = by_kind.get(item.kind.lower(), 0) + 1
    return ", ".join(f"{n} {k}(s)" for k, n in by_kind.items()) or "nothing"


def _line(item) -> str:  # noqa: ANN001
    ident = f"{item.key['id'][:12]}  " if item.kind == "Container" else ""
    return f"{ident}{item.ref()}  ({item.reason})"


def _print(report, options) -> None:  # noqa: ANN001
    kept = report.kept if options.dry_run else [i for i in report.kept
                                                 if i.reason.startswith(("run ", "kept:"))]
    for item in kept[:MAX_LISTED]:
        typer.echo(f"skipped {_line(item)}", err=True)
    if len(kept) > MAX_LISTED:
        typer.echo(f"... and {len(kept) - MAX_LISTED} more skipped", err=True)
    for item in report.failed:
        typer.echo(f"error: could not remove {_line(item)}", err=True)
    for problem in report.problems:
        typer.echo(f"error: {problem}", err=True)
    scope = f"of run {options.run_id}" if options.run_id else \
        "of finished ansflow runs, expired objects, old builds and records"
    if options.dry_run:
        for item in report.remove:
            typer.echo(_line(item))
        typer.echo(f"would remove {_counts(report.remove)} {scope}")
        return
    for item in report.removed:
        typer.echo(f"removed {_line(item)}")
    note = f"; skipped {len(report.kept)}" if report.kept else ""
    typer.echo(f"removed {_counts(report.removed)} {scope}{note}")
