"""The health flow (`ansflow-health`): each saved cluster's health checked (one task per
cluster, in parallel under the concurrency limit `ansflow-k8s-health`) and stored on its
inventory record; `ansflow.k8s.cluster.unhealthy` / `ansflow.k8s.cluster.healthy` is
emitted when a cluster's status changes, so that an Automation can notify. The verdict counts
the cluster's objects by health at its last sync (``objects_by_health``: Healthy,
Progressing, Degraded, ...; each object's own changes are the sync's events).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.task_runners import ThreadPoolTaskRunner

from ansflow.blocks.kubernetes import load_saved_cluster
from ansflow.errors import AnsflowError
from ansflow.flows.clusters import choose_clusters, ensure_concurrency_limit
from ansflow.flows.sync import MAX_PARALLEL, cluster_resource, slug
from ansflow.upkeep.health import HealthReport, check_health

FLOW_NAME = "ansflow-health"
LIMIT_NAME = "ansflow-k8s-health"
DEFAULT_PARALLEL = 8
UNHEALTHY_EVENT = "ansflow.k8s.cluster.unhealthy"
HEALTHY_EVENT = "ansflow.k8s.cluster.healthy"


class UnhealthyClusters(AnsflowError):
    """Some clusters are not healthy (each named with its status and reason)."""


def health_event(report: HealthReport) -> str | None:
    """The event due for ``report``: None when the status did not change."""
    if not report.changed:
        return None
    return HEALTHY_EVENT if report.status == "ok" else UNHEALTHY_EVENT


def publish_health(report: HealthReport) -> None:
    logger = get_run_logger()
    event = health_event(report)
    if event:
        try:
            emit_event(event=event, resource=cluster_resource(report.cluster),
                       payload={"status": report.status, "previous": report.previous_status,
                                "message": report.message, **{
                                    k: v for k, v in report.as_dict().items()
                                    if k in ("server_version", "nodes_total", "nodes_ready",
                                             "pods_total", "pods_running", "pods_failing",
                                             "failed_checks", "node_problems",
                                             "stuck_pods", "warnings",
                                             "objects_by_health")}})
        except Exception as exc:  # noqa: BLE001
            logger.warning(f"could not emit the health event: {type(exc).__name__}")
    try:
        rows = [{"check": k, "value": str(v)[:300]} for k, v in report.as_dict().items()
                if k not in ("cluster", "checked")]
        create_table_artifact(table=rows, key=f"ansflow-health-{slug(report.cluster)}",
                              description=f"Health of cluster {report.cluster}: "
                                          f"{report.status}")
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"could not publish the health artifact: {type(exc).__name__}")


@task(name="check-cluster-health", task_run_name="health-{cluster}")
def health_task(cluster: str, interval: float = 60.0) -> dict[str, Any]:
    """Check one saved cluster's health, store it, emit an event if its status changed.

    Args:
        cluster: The saved KubernetesCluster block's name.
        interval: Seconds of Warning events to look at.

    Returns:
        The health report as a dict.
    """
    logger = get_run_logger()
    with concurrency(LIMIT_NAME, occupy=1, strict=False):
        report = check_health(cluster, load_saved_cluster(cluster), interval=interval)
    log = logger.info if report.status == "ok" else logger.warning
    log(f"cluster {cluster!r}: {report.status}: {report.message}")
    publish_health(report)
    return report.as_dict()


@flow(name=FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL))
def health(clusters: list[str] | None = None, interval: float = 60.0,
           max_parallel: int = DEFAULT_PARALLEL,
           fail_when_unhealthy: bool = False) -> dict[str, dict[str, Any]]:
    """Check the health of saved clusters: API server /livez and /readyz (failing checks
    named), version, nodes Ready and pressure, pods stuck in CrashLoopBackOff /
    ImagePullBackOff, Warning events of the last interval.

    Args:
        clusters: The saved cluster blocks to check (empty: every saved cluster).
        interval: Seconds of Warning events to count (set it to the schedule's period).
        max_parallel: How many clusters are checked at once (the concurrency limit
            `ansflow-k8s-health` is created with this many slots if it does not exist).
        fail_when_unhealthy: End the run Failed when a cluster is not ok.

    Returns:
        Per cluster: its report (status ok / degraded / unreachable / forbidden, message,
        counts and the problems found).
    """
    if not 1 <= max_parallel <= MAX_PARALLEL:
        raise ValueError(f"max_parallel must be 1 to {MAX_PARALLEL}, got {max_parallel}")
    if not 1 <= interval <= 7 * 86400:
        raise ValueError(f"interval must be 1 s to 7 days, got {interval}")
    names = choose_clusters(clusters)
    if not names:
        get_run_logger().info("no saved clusters to check")
        return {}
    ensure_concurrency_limit(LIMIT_NAME, max_parallel)
    futures = {name: health_task.submit(name, interval) for name in names}
    results = {name: future.result() for name, future in futures.items()}
    bad = [f"{n}: {r['status']}: {r['message']}" for n, r in results.items()
           if r["status"] != "ok"]
    if bad and fail_when_unhealthy:
        raise UnhealthyClusters("; ".join(bad)[:2000])
    return results
