"""The sync flow (`ansflow-sync`): saved clusters' objects into the inventory, one task per
cluster, clusters in parallel under the Prefect concurrency limit `ansflow-k8s-sync`.

Each cluster's sync publishes a table artifact (`ansflow-sync-<cluster>`: counts per kind,
added / changed / removed) and the event `ansflow.k8s.sync.completed` with the counts;
objects that drifted from what ansflow applied get the event `ansflow.k8s.resource.drifted`
(naming the object and the fields) and the artifact `ansflow-drift-<cluster>`. Drift is
reported, never reverted. An object whose health changed (``ansflow.engines.object_health``)
gets the event `ansflow.k8s.health.<status>` (healthy, progressing, degraded, suspended,
missing, unknown), its resource the object as management operations name it, so that an
Automation can page someone when a Deployment turns Degraded. The inventory itself is then
published as browsable tables (``ansflow.flows.inventory_publish``: one per cluster, one per
namespace, a summary).
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.concurrency.sync import concurrency
from prefect.events import emit_event
from prefect.task_runners import ThreadPoolTaskRunner

from ansflow.blocks.kubernetes import load_saved_cluster
from ansflow.errors import AnsflowError
from ansflow.flows.clusters import choose_clusters, ensure_concurrency_limit
from ansflow.flows.inventory_publish import publish_after_sync
from ansflow.flows.manage_publish import resource_of
from ansflow.manage import ObjectRef
from ansflow.upkeep.inventory import by_severity
from ansflow.upkeep.sync import SyncResult, sync_cluster

FLOW_NAME = "ansflow-sync"
LIMIT_NAME = "ansflow-k8s-sync"
DEFAULT_PARALLEL = 4
MAX_PARALLEL = 64
SYNC_EVENT = "ansflow.k8s.sync.completed"
DRIFT_EVENT = "ansflow.k8s.resource.drifted"
MAX_DRIFT_EVENTS = 100
HEALTH_EVENT_PREFIX = "ansflow.k8s.health."
MAX_HEALTH_EVENTS = 200  # per cluster and sync, the worst first


class SyncFailures(AnsflowError):
    """One or more clusters could not be synced (each named with its reason)."""


def cluster_resource(cluster: str) -> dict[str, str]:
    return {"prefect.resource.id": f"ansflow.k8s.cluster.{cluster}",
            "prefect.resource.name": cluster, "ansflow.cluster": cluster}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:80] or "cluster"


def sync_rows(result: SyncResult) -> list[dict[str, Any]]:
    rows = [{"kind": kind, "total": c.total, "added": c.added, "changed": c.changed,
             "removed": c.removed} for kind, c in result.counts.items()]
    rows += [{"kind": kind, "total": "skipped", "added": reason[:200], "changed": "",
              "removed": ""} for kind, reason in result.skipped.items()]
    return rows


def drift_markdown(result: SyncResult) -> str:
    lines = [f"# Drift in cluster {result.cluster}", "",
             "| object | namespace | fields (now owned by) |", "|---|---|---|"]
    for item in result.drift[:500]:
        fields = ", ".join(f"`{f['field']}` ({f['manager']})" for f in item["fields"][:20])
        lines.append(f"| {item['kind']}/{item['name']} | {item['namespace'] or '-'} "
                     f"| {fields.replace('|', '/')} |")
    return "\n".join(lines)


def publish_sync(result: SyncResult) -> None:
    """The cluster's artifacts and events; a failure here only warns."""
    logger = get_run_logger()
    totals = result.totals
    try:
        create_table_artifact(
            table=sync_rows(result), key=f"ansflow-sync-{slug(result.cluster)}",
            description=f"Sync of cluster {result.cluster}: {result.outcome}, "
                        f"{totals.added} added, {totals.changed} changed, "
                        f"{totals.removed} removed")
        if result.drift:
            create_markdown_artifact(markdown=drift_markdown(result),
                                     key=f"ansflow-drift-{slug(result.cluster)}",
                                     description=f"{len(result.drift)} drifted object(s) in "
                                                 f"cluster {result.cluster}")
    except Exception as exc:  # noqa: BLE001 - the sync's outcome must not depend on it
        logger.warning(f"could not publish the sync's artifacts: {type(exc).__name__}")
    try:
        data = result.as_dict()
        emit_event(event=SYNC_EVENT, resource=cluster_resource(result.cluster),
                   payload={"outcome": result.outcome, "counts": data["counts"],
                            "totals": data["totals"], "skipped": result.skipped,
                            "drifted": len(result.drift), "seconds": result.seconds,
                            "health_changes": len(result.health_changes)})
        for item in result.drifted[:MAX_DRIFT_EVENTS]:
            ns = item["namespace"]
            emit_event(
                event=DRIFT_EVENT,
                resource={"prefect.resource.id": f"ansflow.k8s.{result.cluster}."
                                                 f"{item['kind'].lower()}.{ns or '-'}."
                                                 f"{item['name']}",
                          "prefect.resource.name": f"{item['kind']}/{item['name']}",
                          "ansflow.cluster": result.cluster, "ansflow.namespace": ns,
                          "ansflow.kind": item["kind"]},
                related=[{**cluster_resource(result.cluster),
                          "prefect.resource.role": "cluster"}],
                payload={"object": item, "fields": [f["field"] for f in item["fields"]]})
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"could not emit the sync's events: {type(exc).__name__}")
    publish_health_changes(result)


def health_event(status: str) -> str:
    """``ansflow.k8s.health.<status>``, the status lowercased."""
    return HEALTH_EVENT_PREFIX + status.lower()


def health_resource(cluster: str, change: dict) -> dict[str, str]:
    """The object whose health changed, as docs/manage.md names an object."""
    return resource_of(ObjectRef(cluster, change["kind"], change["name"],
                                 change["namespace"] or None))


def publish_health_changes(result: SyncResult) -> int:
    """One event per object whose health changed (the worst first, at most
    MAX_HEALTH_EVENTS); how many were emitted. A failure here only warns."""
    logger = get_run_logger()
    changes = by_severity(result.health_changes)
    emitted = 0
    try:
        for change in changes[:MAX_HEALTH_EVENTS]:
            emit_event(event=health_event(change["health"]),
                       resource=health_resource(result.cluster, change),
                       related=[{**cluster_resource(result.cluster),
                                 "prefect.resource.role": "cluster"}],
                       payload={k: change[k] for k in ("health", "previous", "message",
                                                       "kind", "namespace", "name", "uid")})
            emitted += 1
    except Exception as exc:  # noqa: BLE001 - the sync's outcome must not depend on it
        logger.warning(f"could not emit the health events: {type(exc).__name__}")
    if len(changes) > MAX_HEALTH_EVENTS:
        logger.warning(f"cluster {result.cluster!r}: {len(changes)} objects changed health; "
                       f"events for the {MAX_HEALTH_EVENTS} worst only")
    return emitted


@task(name="sync-cluster", task_run_name="sync-{cluster}")
def sync_cluster_task(cluster: str, page_size: int = 500) -> dict[str, Any]:
    """Sync one saved cluster into the inventory and publish what changed.

    Args:
        cluster: The saved KubernetesCluster block's name.
        page_size: Objects per list request.

    Returns:
        The sync's result as a dict (counts per kind, drift, outcome).
    """
    logger = get_run_logger()
    block = load_saved_cluster(cluster)
    with concurrency(LIMIT_NAME, occupy=1, strict=False):
        result = sync_cluster(cluster, block, page_size=page_size)
    totals = result.totals
    logger.info(f"cluster {cluster!r}: {result.outcome}: {totals.total} objects, "
                f"{totals.added} added, {totals.changed} changed, {totals.removed} removed, "
                f"{len(result.drift)} drifted ({result.seconds:.1f} s)")
    for kind, reason in result.skipped.items():
        logger.warning(f"cluster {cluster!r}: {kind} skipped: {reason}")
    publish_sync(result)
    if result.outcome == "synced":
        publish_after_sync(cluster, block, logger)
    return result.as_dict()


@flow(name=FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL),
      log_prints=False)
def sync(clusters: list[str] | None = None, max_parallel: int = DEFAULT_PARALLEL,
         page_size: int = 500) -> dict[str, dict[str, Any]]:
    """Sync saved clusters' namespaces, deployments, services, pods, configmaps and secrets
    (never a secret's values) into ansflow's inventory.

    Args:
        clusters: The saved cluster blocks to sync (empty: every saved cluster).
        max_parallel: How many clusters sync at once (the concurrency limit
            `ansflow-k8s-sync` is created with this many slots; once it exists, the limit
            set on the server wins).
        page_size: Objects per list request (1 to 10000).

    Returns:
        Per cluster: the counts per kind (total, added, changed, removed) and the drift.

    Raises:
        SyncFailures: a cluster could not be synced (the others were).
    """
    if not 1 <= max_parallel <= MAX_PARALLEL:
        raise ValueError(f"max_parallel must be 1 to {MAX_PARALLEL}, got {max_parallel}")
    names = choose_clusters(clusters)
    logger = get_run_logger()
    if not names:
        logger.info("no saved clusters to sync")
        return {}
    ensure_concurrency_limit(LIMIT_NAME, max_parallel)
    futures = {name: sync_cluster_task.submit(name, page_size) for name in names}
    results, failures = {}, []
    for name, future in futures.items():
        try:
            results[name] = future.result()
        except AnsflowError as exc:
            failures.append(f"{name}: {exc}")
            logger.error(f"cluster {name!r}: not synced: {exc}")
    if failures:
        raise SyncFailures(f"{len(failures)} of {len(names)} cluster(s) not synced: "
                           + "; ".join(failures)[:2000])
    return results
