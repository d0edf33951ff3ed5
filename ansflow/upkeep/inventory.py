"""The cluster inventory in ansflow's store: observed objects per cluster and one record per
cluster (its health and sync times).

Tables ``ansflow_k8s_objects`` (one row per object, keyed by cluster and uid, with the
resourceVersion, first / last seen, the time it was found removed, and what users look at as
JSON: see ``ansflow.upkeep.fields``) and ``ansflow_k8s_clusters``. They live in the store of
``ansflow.store`` (SQLite under ANSFLOW_HOME, or ANSFLOW_DATABASE_URL, e.g. PostgreSQL
shared by several workers). A sync writes in one transaction guarded by the cluster's sync
generation, so an interrupted sync leaves the previous inventory whole and of two racing
syncs of one cluster only one writes (the other is reported as superseded).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite

from ansflow.engines.object_health import HEALTHY, MAX_MESSAGE, MISSING, STATUSES, Health
from ansflow.store import Store, add_missing_columns, create_tables, guarded

CLUSTER_STATUSES = ("ok", "degraded", "unreachable", "forbidden")
WRITE_BATCH = 500

inventory_metadata = MetaData()
clusters = Table(
    "ansflow_k8s_clusters", inventory_metadata,
    Column("cluster", String(255), primary_key=True),
    Column("status", String(16)),
    Column("message", Text),
    Column("server_version", String(64)),
    Column("nodes_total", Integer), Column("nodes_ready", Integer),
    Column("pods_total", Integer), Column("pods_running", Integer),
    Column("pods_failing", Integer),
    Column("checks", Text),  # JSON: the health check's details
    Column("last_health", DateTime(timezone=True)),
    Column("last_sync", DateTime(timezone=True)),
    Column("sync_summary", Text),  # JSON: counts of the last sync
    Column("sync_generation", Integer, nullable=False, default=0),
)
objects = Table(
    "ansflow_k8s_objects", inventory_metadata,
    Column("cluster", String(255), primary_key=True),
    Column("uid", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("namespace", String(253), nullable=False, default=""),
    Column("name", String(253), nullable=False),
    Column("resource_version", String(64), nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    Column("last_seen", DateTime(timezone=True), nullable=False),
    Column("changed", DateTime(timezone=True), nullable=False),
    Column("removed", DateTime(timezone=True)),
    Column("fields", Text, nullable=False),
    Column("applied_time", String(64)),  # ansflow's last server-side apply (managedFields)
    Column("applied_fields", Text),  # JSON list: the fields that apply owned then
    Column("drift", Text),  # JSON list of {"field", "manager"} (null: no drift)
    # Its health (ansflow.engines.object_health: Healthy, Progressing, Degraded, Suspended,
    # Missing, Unknown) and why; NULL only on rows a store from before health kept.
    Column("health", String(16)),
    Column("health_message", Text),
    Index("ix_ansflow_k8s_objects_kind", "cluster", "kind", "namespace"),
)


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Known:
    """What the inventory held of one object when a sync started."""

    resource_version: str
    kind: str
    removed: bool
    applied_time: str | None = None
    applied_fields: list[str] | None = None
    drift: list | None = None
    namespace: str = ""
    name: str = ""
    health: str | None = None


@dataclass
class Snapshot:
    """The inventory of one cluster as a sync starts: uid -> Known, and its generation."""

    generation: int
    known: dict[str, Known]
    last_sync: datetime | None


@dataclass
class Changes:
    """What a sync writes: new rows, updated rows (both as column dicts), removed uids."""

    added: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


class _Superseded(Exception):
    """Another sync of the cluster committed first (the transaction is rolled back)."""


def _insert(conn: Any, table: Table):
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    return dialect.insert(table)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back: they were written as UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Inventory:
    """The inventory tables of one store (open one per use, then ``close()``)."""

    def __init__(self, url: str | None = None) -> None:
        self.store = Store(url)
        self.url = self.store.url
        self._create()

    @guarded("create the inventory tables")
    def _create(self) -> None:
        create_tables(self.store.engine, inventory_metadata)
        add_missing_columns(self.store.engine, objects)  # a store from before health

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Inventory:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- sync ----------------------------------------------------------------------------

    @guarded("read the cluster's inventory")
    def snapshot(self, cluster: str) -> Snapshot:
        """uid -> resourceVersion (and drift baselines) of every object of ``cluster``."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(clusters.c.sync_generation, clusters.c.last_sync)
                               .where(clusters.c.cluster == cluster)).first()
            known: dict[str, Known] = {}
            cols = (objects.c.uid, objects.c.resource_version, objects.c.kind,
                    objects.c.removed, objects.c.applied_time, objects.c.applied_fields,
                    objects.c.drift, objects.c.namespace, objects.c.name, objects.c.health)
            result = conn.execution_options(stream_results=True, yield_per=2000).execute(
                select(*cols).where(objects.c.cluster == cluster))
            for uid, rv, kind, removed, a_time, a_fields, drift, ns, name, health in result:
                known[uid] = Known(rv, kind, removed is not None, a_time,
                                   json.loads(a_fields) if a_fields else None,
                                   json.loads(drift) if drift else None, ns, name, health)
        return Snapshot(row[0] if row else 0, known, _aware(row[1]) if row else None)

    @guarded("write the cluster's inventory")
    def commit(self, cluster: str, generation: int, changes: Changes,
               when: datetime | None = None) -> bool:
        """Write a sync's changes in one transaction; False (nothing written) when another
        sync of ``cluster`` committed since ``generation`` was read."""
        when = when or now()
        try:
            self._write(cluster, generation, changes, when)
        except _Superseded:
            return False
        return True

    def _write(self, cluster: str, generation: int, changes: Changes, when: datetime) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(_insert(conn, clusters).values(cluster=cluster, sync_generation=0)
                         .on_conflict_do_nothing(index_elements=["cluster"]))
            claimed = conn.execute(
                clusters.update().where(and_(clusters.c.cluster == cluster,
                                             clusters.c.sync_generation == generation))
                .values(sync_generation=generation + 1, last_sync=when,
                        sync_summary=json.dumps(changes.summary)))
            if claimed.rowcount != 1:
                raise _Superseded
            for start in range(0, len(changes.added), WRITE_BATCH):
                conn.execute(_insert(conn, objects), changes.added[start:start + WRITE_BATCH])
            if changes.changed:
                stmt = objects.update().where(and_(
                    objects.c.cluster == bindparam("b_cluster"),
                    objects.c.uid == bindparam("b_uid")))
                for start in range(0, len(changes.changed), WRITE_BATCH):
                    conn.execute(stmt, [{**row, "b_cluster": cluster, "b_uid": row["uid"]}
                                        for row in changes.changed[start:start + WRITE_BATCH]])
            for start in range(0, len(changes.removed), WRITE_BATCH):
                conn.execute(objects.update().where(and_(
                    objects.c.cluster == cluster,
                    objects.c.uid.in_(changes.removed[start:start + WRITE_BATCH]),
                    objects.c.removed.is_(None))).values(removed=when))

    # ---- health --------------------------------------------------------------------------

    @guarded("record the cluster's health")
    def record_health(self, cluster: str, values: dict[str, Any]) -> str | None:
        """Store a health check's result on the cluster's record; the previous status."""
        allowed = {"status", "message", "server_version", "nodes_total", "nodes_ready",
                   "pods_total", "pods_running", "pods_failing", "checks", "last_health"}
        values = {k: v for k, v in values.items() if k in allowed}
        with self.store.engine.begin() as conn:
            conn.execute(_insert(conn, clusters).values(cluster=cluster, sync_generation=0)
                         .on_conflict_do_nothing(index_elements=["cluster"]))
            previous = conn.execute(select(clusters.c.status).where(
                clusters.c.cluster == cluster).with_for_update()).scalar()
            conn.execute(clusters.update().where(clusters.c.cluster == cluster).values(**values))
        return previous

    # ---- reading -------------------------------------------------------------------------

    @guarded("read the cluster record")
    def cluster_record(self, cluster: str) -> dict | None:
        """The cluster's record (health and sync), or None if never checked nor synced."""
        with self.store.engine.connect() as conn:
            row = conn.execute(clusters.select().where(clusters.c.cluster == cluster)).first()
        if row is None:
            return None
        record = dict(row._mapping)
        for key in ("checks", "sync_summary"):
            record[key] = json.loads(record[key]) if record[key] else None
        for key in ("last_health", "last_sync"):
            record[key] = _aware(record[key])
        return record

    @guarded("read the inventory")
    def objects(self, cluster: str, *, kind: str | None = None, namespace: str | None = None,
                removed: bool = False, health: str | None = None) -> Iterator[dict]:
        """The inventory's objects of ``cluster`` (present ones; with ``removed``, also
        those found removed), ordered by kind, namespace, name. A present object's
        ``last_seen`` is the cluster's last sync; ``health`` / ``health_message`` its health
        at that sync (``health`` filters on it)."""
        last_sync = (self.cluster_record(cluster) or {}).get("last_sync")
        query = objects.select().where(objects.c.cluster == cluster)
        if kind:
            query = query.where(objects.c.kind == kind)
        if namespace is not None:
            query = query.where(objects.c.namespace == namespace)
        if not removed:
            query = query.where(objects.c.removed.is_(None))
        if health is not None:
            query = query.where(objects.c.health == health)
        query = query.order_by(objects.c.kind, objects.c.namespace, objects.c.name)
        with self.store.engine.connect() as conn:
            for row in conn.execution_options(stream_results=True, yield_per=1000).execute(
                    query):
                item = dict(row._mapping)
                item["fields"] = json.loads(item["fields"])
                item["drift"] = json.loads(item["drift"]) if item["drift"] else None
                item.pop("applied_fields", None)
                for key in ("first_seen", "last_seen", "changed", "removed"):
                    item[key] = _aware(item[key])
                if item["removed"] is None and last_sync is not None:
                    item["last_seen"] = last_sync
                yield item

    @guarded("count the objects by health")
    def health_counts(self, cluster: str) -> dict[str, dict[str, int]]:
        """How many present objects of ``cluster`` are in each health, per kind:
        {kind: {status: count}} (status "" for rows not assessed yet)."""
        query = (select(objects.c.kind, objects.c.health, func.count())
                 .where(objects.c.cluster == cluster, objects.c.removed.is_(None))
                 .group_by(objects.c.kind, objects.c.health))
        counts: dict[str, dict[str, int]] = {}
        with self.store.engine.connect() as conn:
            for kind, health, count in conn.execute(query):
                per_kind = counts.setdefault(kind, {})
                per_kind[health or ""] = per_kind.get(health or "", 0) + int(count)
        return counts

    @guarded("purge removed objects")
    def purge_removed(self, older_than: timedelta | datetime,
                      cluster: str | None = None) -> int:
        """Forget objects found removed before ``older_than`` (an age, or a time); the count.

        For the cleanup's retention: an object's record is kept as removed for that long.
        """
        cutoff = older_than if isinstance(older_than, datetime) else now() - older_than
        stmt = objects.delete().where(and_(objects.c.removed.is_not(None),
                                           objects.c.removed < cutoff))
        if cluster is not None:
            stmt = stmt.where(objects.c.cluster == cluster)
        with self.store.engine.begin() as conn:
            return conn.execute(stmt).rowcount or 0


def purge_removed(older_than: timedelta | datetime) -> int:
    """Forget the objects of every cluster found removed before ``older_than`` (the
    cleanup's retention of removed-object records); how many.

    Raises:
        StoreError: the store cannot be reached.
    """
    inventory = Inventory()
    try:
        return inventory.purge_removed(older_than)
    finally:
        inventory.close()


# ---- health changes --------------------------------------------------------------------------


def health_change(kind: str, namespace: str, name: str, uid: str, health: Health,
                  known: Known | None) -> dict | None:
    """The change a sync reports when an object's health differs from the one the inventory
    held (None: no change). An object new to the inventory is reported unless Healthy (a
    healthy newcomer is not news; a Degraded one is); a row written before health was kept
    (health NULL) is not a change, only its first assessment."""
    if known is not None and not known.removed:
        if known.health is None or known.health == health.status:
            return None
        previous: str | None = known.health
    elif health.status == HEALTHY:
        return None
    else:
        previous = None
    return {"kind": kind, "namespace": namespace, "name": name, "uid": uid,
            "health": health.status, "message": health.message[:MAX_MESSAGE],
            "previous": previous}


def missing_change(kind: str, uid: str, known: Known) -> dict | None:
    """An object ansflow applied that has gone from the cluster is Missing (Argo CD: the
    desired object is not there); an object only observed that goes is just removed."""
    if known.applied_time is None or known.removed:
        return None
    return {"kind": kind, "namespace": known.namespace, "name": known.name, "uid": uid,
            "health": MISSING, "message": "ansflow applied it; it is gone from the cluster",
            "previous": known.health}


def by_severity(changes: list[dict]) -> list[dict]:
    """Changes, the worst health first (what a capped list of events must not drop)."""
    rank = {s: i for i, s in enumerate(STATUSES)}
    return sorted(changes, key=lambda c: -rank.get(c["health"], len(STATUSES)))


def total_by_health(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """{kind: {status: n}} summed over kinds, in Argo CD's order (worst last)."""
    totals: dict[str, int] = {}
    for per_kind in counts.values():
        for status, n in per_kind.items():
            totals[status] = totals.get(status, 0) + n
    order = {s: i for i, s in enumerate(STATUSES)}
    return dict(sorted(totals.items(), key=lambda kv: order.get(kv[0], len(STATUSES))))



def objects_health_text(totals: dict[str, int]) -> str:
    """``; objects at the last sync: 950 Healthy, 3 Degraded`` (empty before any sync)."""
    if not totals:
        return ""
    return "; objects at the last sync: " + ", ".join(
        f"{n} {status or 'not assessed'}" for status, n in totals.items())
