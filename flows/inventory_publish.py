"""The inventory, browsable in the Prefect UI: after each sync of a cluster, table artifacts
with stable keys (so the Artifacts page always shows the latest) and a markdown summary.

- ``ansflow-inventory-<cluster>-<hash>``: the cluster table (per namespace: health, objects,
  counts by health and by kind; the totals row carries the nodes of the last health check);
- ``ansflow-namespace-<cluster>-<namespace>-<hash>``: one table per namespace (kind, name,
  health and message, age, images, replicas, drift), at most MAX_NAMESPACES per cluster;
- ``ansflow-inventory-<cluster>-<hash>-summary``: markdown linking them, with the objects
  that are not healthy.

The rows are built by ``ansflow.upkeep.inventory_tables`` (bounded, one line per cell,
markdown-escaped); everything is masked with the cluster block's credentials and the
Prefect Secret blocks management runs may have put into a cluster (as a manage run's
output is). All artifacts of one sync go through one API client.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prefect.settings import PREFECT_UI_URL

from ansflow.errors import AnsflowError
from ansflow.masking import Masker
from ansflow.upkeep import inventory_tables as T
from ansflow.upkeep.inventory import Inventory

POST_PARALLEL = 8  # artifact requests in flight at once


@dataclass
class Published:
    """What one publication wrote: the artifact keys, and how long it took."""

    keys: list[str] = field(default_factory=list)
    namespaces: int = 0  # namespaces with a table
    objects: int = 0
    seconds: float = 0.0


def inventory_masker(block: Any = None, *, allowed_blocks: bool = True) -> Masker:
    """A masker holding the cluster block's credentials and, with ``allowed_blocks``, the
    Prefect Secret blocks management runs may put into clusters.

    Raises:
        StepFailed: those blocks cannot be read (nothing is published unmasked).
    """
    masker = Masker()
    values = block.secret_values() if block is not None and hasattr(block, "secret_values") \
        else []
    for _what, value in values:
        if value:
            masker.add(value)
    if allowed_blocks:
        from ansflow.manage.secret_blocks import mask_allowed_values  # noqa: PLC0415

        mask_allowed_values(masker)
    return masker


def artifacts_of(tables: T.ClusterTables, masker: Masker, ui_url: str | None,
                 max_namespaces: int = T.MAX_NAMESPACES) -> list[dict[str, Any]]:
    """The artifacts of a cluster's tables, as the API's create bodies (pure)."""
    cluster = T.md(T.plain(tables.cluster, masker))
    shown = tables.shown_namespaces(max_namespaces)
    linked = {t.namespace for t in shown}
    out = [{"key": T.cluster_key(tables.cluster), "type": "table",
            "description": f"Inventory of cluster {cluster}: {tables.objects} objects, "
                           f"{T.counts_text(tables.by_health)}",
            "data": json.dumps([T.md_row(r) for r in T.cluster_rows(tables, masker)])}]
    for t in shown:
        label = T.md(T.plain(t.label, masker))
        cut = f" (the {len(t.rows)} least healthy shown)" if t.truncated > 0 else ""
        out.append({"key": T.namespace_key(tables.cluster, t.namespace), "type": "table",
                    "description": f"Namespace {label} of cluster {cluster}: {t.objects} "
                                   f"objects, {T.counts_text(t.by_health)}{cut}",
                    "data": json.dumps([T.md_row(r) for r in T.namespace_rows(t)])})
    out.append({"key": T.summary_key(tables.cluster), "type": "markdown",
                "description": f"Inventory of cluster {cluster}",
                "data": T.summary_markdown(tables, ui_url, masker, linked,
                                           T.problem_rows(tables))})
    return out


def post_artifacts(bodies: list[dict[str, Any]], parallel: int = POST_PARALLEL) -> None:
    """Create the artifacts through one client (``parallel`` requests at a time), attached
    to the current flow / task run.

    Raises:
        Exception: the first request that failed (the others were still sent).
    """
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import ArtifactCreate  # noqa: PLC0415
    from prefect.utilities.context import get_task_and_flow_run_ids  # noqa: PLC0415

    task_run_id, flow_run_id = get_task_and_flow_run_ids()
    requests = [ArtifactCreate(**body, flow_run_id=flow_run_id, task_run_id=task_run_id)
                for body in bodies]
    with get_client(sync_client=True) as client:
        if len(requests) <= 1 or parallel <= 1:
            for request in requests:
                client.create_artifact(request)
            return
        with ThreadPoolExecutor(max_workers=parallel,
                                thread_name_prefix="ansflow-artifacts") as pool:
            # Each request in a copy of this thread's context: the Prefect settings and the
            # run context (the artifact-created events name the run) go along.
            futures = [pool.submit(contextvars.copy_context().run, client.create_artifact, r)
                       for r in requests]
        errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]


def inventory_items(inventory: Inventory, cluster: str) -> Iterator[dict[str, Any]]:
    """The present objects of ``cluster``, with only what the tables show: kind, namespace,
    name, health and message, first seen (as stored), and ``fields`` / ``drift`` as their
    JSON text (parsed by the table builder for the rows it keeps). One streamed query, no
    per-row conversion: the inventory of a big cluster is read in a fraction of
    ``Inventory.objects``' time, and never held whole in memory.

    Raises:
        StoreError: the store cannot be read.
    """
    from sqlalchemy import String, select, type_coerce  # noqa: PLC0415
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from ansflow.store import StoreError  # noqa: PLC0415
    from ansflow.upkeep.inventory import objects as table  # noqa: PLC0415

    names = ("kind", "namespace", "name", "health", "health_message")
    columns = [table.c[n] for n in names if n in table.c]
    columns += [type_coerce(table.c[n], String).label(n)
                for n in ("first_seen", "fields", "drift")]
    query = select(*columns).where(table.c.cluster == cluster, table.c.removed.is_(None))
    try:
        with inventory.store.engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=2000).execute(query)
            for row in rows:
                yield dict(row._mapping)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read the inventory of cluster {cluster!r} "
                         f"({type(exc).__name__})") from None


def publish_inventory(cluster: str, masker: Masker, *, inventory: Inventory | None = None,
                      ui_url: str | None = None) -> Published:
    """Publish the cluster's inventory tables and summary (as of its last sync).

    Raises:
        StoreError: the inventory cannot be read.
        Exception: the Prefect API refused or failed (the caller only warns).
    """
    started = time.monotonic()
    own = inventory is None
    inventory = inventory or Inventory()
    try:
        record = inventory.cluster_record(cluster) or {}
        tables = T.build(cluster, inventory_items(inventory, cluster), record, mask=masker)
    finally:
        if own:
            inventory.close()
    bodies = artifacts_of(tables, masker, ui_url if ui_url is not None else PREFECT_UI_URL.value())
    post_artifacts(bodies)
    return Published([b["key"] for b in bodies], len(bodies) - 2, tables.objects,
                     round(time.monotonic() - started, 3))


def publish_after_sync(cluster: str, block: Any, logger: Any) -> Published | None:
    """The sync's inventory artifacts; a failure only warns (the sync's outcome stands)."""
    try:
        masker = inventory_masker(block)
    except AnsflowError as exc:
        logger.warning(f"inventory artifacts of cluster {cluster!r} not published: {exc}")
        return None
    try:
        published = publish_inventory(cluster, masker)
    except Exception as exc:  # noqa: BLE001 - the sync's outcome must not depend on it
        logger.warning(f"could not publish the inventory artifacts of cluster {cluster!r}: "
                       f"{type(exc).__name__}")
        return None
    logger.info(f"cluster {cluster!r}: inventory published ({published.objects} objects, "
                f"{published.namespaces} namespace tables, {published.seconds:.2f} s)")
    return published
