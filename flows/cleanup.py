"""The flow `ansflow-cleanup`: remove what pipeline runs left behind (ansflow.upkeep.cleanup).

Served hourly by `ansflow serve --upkeep` (flows/upkeep.py) and callable as a function. Each
run publishes its plan, or what it did, as the table artifact `ansflow-cleanup` (rows for
what goes, what stays and why, sources that could not be read); a dry run deletes nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.states import Failed, State

from ansflow.upkeep.cleanup import (
    DEFAULT_KEEP_BUILDS,
    DEFAULT_RUN_RETENTION_DAYS,
    CleanupOptions,
    CleanupReport,
    cleanup,
)

FLOW_NAME = "ansflow-cleanup"
ARTIFACT_KEY = "ansflow-cleanup"
MAX_ROWS = 1000
MAX_CELL = 300


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_CELL else text[:MAX_CELL - 1] + "…"


def publish_report(report: CleanupReport) -> None:
    """The run's table artifact: one row per object looked at (at most MAX_ROWS)."""
    rows = [{k: _cell(v) for k, v in row.items()} for row in report.rows(MAX_ROWS)]
    total = len(report.remove) + len(report.kept) + len(report.problems)
    more = f" (first {MAX_ROWS} of {total} rows)" if total > MAX_ROWS else ""
    create_table_artifact(key=ARTIFACT_KEY, table=rows or [{"action": "nothing",
                                                            "reason": "nothing to clean up"}],
                          description=f"ansflow cleanup: {report.summary()}{more}")


@flow(name=FLOW_NAME, persist_result=False, log_prints=False, validate_parameters=True)
def cleanup_flow(clusters: list[str] | None = None, docker: bool = True,
                 keep_builds: int = DEFAULT_KEEP_BUILDS,
                 run_retention_days: float | None = DEFAULT_RUN_RETENTION_DAYS,
                 pipelines: list[str] | None = None, dry_run: bool = False,
                 workspaces: bool = True) -> dict[str, int] | State:
    """Remove what pipeline runs left behind, and only what carries ansflow's run labels.

    Step pods of finished runs and objects deployed with `expire_after:` once expired
    (in each cluster), containers of finished runs and images beyond the newest
    `keep_builds` builds of each pipeline (on the worker's Docker engine), run records
    older than the retention, and this machine's run workspaces kept after a failure past
    their keep time (ANSFLOW_WORKSPACE_KEEP) or left by a crashed run. Never kube-system,
    kube-public, kube-node-lease, an object annotated `ansflow.dev/keep: "true"` or anything
    of a run still going.

    Args:
        clusters: Saved KubernetesCluster blocks to clean (empty: every saved cluster).
        docker: Clean the worker's Docker engine too (skipped with a warning if none).
        keep_builds: Images of the newest this many builds of each pipeline are kept.
        run_retention_days: Run records (and removed inventory records) older than this many
            days are removed; empty: kept forever.
        pipelines: Only what these pipelines left (empty: every pipeline).
        dry_run: Only publish the plan; delete nothing.
        workspaces: Clean this machine's run workspaces too (under ANSFLOW_WORKSPACES).

    Returns:
        The counts (planned, kept, removed, failed, problems); the run fails when a delete
        failed or a source could not be read (after everything else was done).
    """
    from ansflow.blocks.kubernetes import saved_cluster_names  # noqa: PLC0415

    log = get_run_logger()
    names = list(clusters) if clusters else saved_cluster_names()
    options = CleanupOptions(clusters=names, docker=docker, keep_builds=keep_builds,
                             run_retention_days=run_retention_days,
                             pipelines=list(pipelines or []), dry_run=dry_run,
                             workspaces=workspaces)
    report = cleanup(options)
    verb = "would remove" if dry_run else "removed"
    for item in report.remove if dry_run else report.removed:
        log.info(f"{verb} {item.ref()}: {item.reason}")
    for item in report.failed:
        log.error(f"could not remove {item.ref()}: {item.reason}")
    for problem in report.problems:
        if problem.startswith("docker:") and docker and "unreachable" in problem:
            log.warning(f"{problem}; Docker cleanup skipped")
        else:
            log.error(problem)
    publish_report(report)
    log.info(report.summary())
    counts = report.counts()
    hard = [p for p in report.problems if not (p.startswith("docker:") and "unreachable" in p)]
    if report.failed or hard:
        return Failed(message=f"cleanup: {report.summary()}", data=counts)
    return counts
