"""Sync one cluster's objects into the inventory: list each kind in pages, diff by uid and
resourceVersion, write only what changed, in one transaction.

The listing is streamed page by page (``limit`` / ``continue``): what stays in memory is the
inventory's uid -> resourceVersion map and the rows to write, never the cluster's objects.
Each kind is listed as metadata first (uid and resourceVersion: a re-sync reads little);
only what is new or changed is then read in full.
Objects that ansflow server-side applied are checked for drift on the way (the fields its
apply owned that another field manager has since taken over: ``ansflow.upkeep.fields``).
Nothing here knows about Prefect: the flow in ``ansflow.flows.sync`` publishes the result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

from kubernetes import client as k8s

from ansflow.engines.kube import ClusterSource
from ansflow.engines.kube_objects import (
    KubeError,
    KubeForbidden,
    KubeNotFound,
    KubeUnavailable,
    request,
)
from ansflow.engines.kube_objects import list_pages as kube_pages
from ansflow.engines.object_health import assess
from ansflow.errors import AnsflowError
from ansflow.upkeep import fields as F
from ansflow.upkeep.inventory import (
    Changes,
    Inventory,
    Known,
    Snapshot,
    health_change,
    missing_change,
    now,
)

PAGE_SIZE = 500
REQUEST_TIMEOUT = (10, 120)
GONE = 410  # the continue token expired: that kind's listing starts over


class SyncFailed(AnsflowError):
    """A cluster could not be synced; ``status`` says how (unreachable, forbidden, error)."""

    def __init__(self, message: str, status: str = "error") -> None:
        self.status = status
        super().__init__(message)


@dataclass
class KindCounts:
    total: int = 0
    added: int = 0
    changed: int = 0
    removed: int = 0


@dataclass
class SyncResult:
    """What one cluster's sync did (serializable: ``as_dict()``).

    ``outcome`` is ``synced`` or ``superseded`` (another sync of the same cluster committed
    first: nothing of this one was written). ``drifted`` lists the objects that drifted since
    the last sync, ``drift`` every object drifted now; ``skipped`` the kinds the identity may
    not list (their inventory left as it was).
    """

    cluster: str
    outcome: str
    counts: dict[str, KindCounts]
    drifted: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Objects whose health changed (inventory.health_change): kind, namespace, name, uid,
    # health, message, previous.
    health_changes: list[dict] = field(default_factory=list)

    @property
    def totals(self) -> KindCounts:
        total = KindCounts()
        for c in self.counts.values():
            total.total += c.total
            total.added += c.added
            total.changed += c.changed
            total.removed += c.removed
        return total

    def as_dict(self) -> dict:
        data = asdict(self)
        data["totals"] = asdict(self.totals)
        return data


METADATA = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
# Past this share of a kind's objects changed, one full listing beats a GET per object.
FULL_LIST_SHARE = 0.05
FULL_LIST_MIN = 200


def _get_json(api: k8s.ApiClient, path: str, query: list, accept: str) -> dict:
    try:
        data = request(api, "GET", path, query=query, timeout=REQUEST_TIMEOUT, accept=accept)
    except ValueError:  # not JSON, or not UTF-8
        raise KubeError(f"{path}: the API server's answer is not JSON") from None
    return data if isinstance(data, dict) else {}


def list_pages(api: k8s.ApiClient, path: str, page_size: int = PAGE_SIZE, *,
               metadata_only: bool = False) -> Iterator[list]:
    """The items of a list path, page by page (``limit`` / ``continue``); with
    ``metadata_only``, each item's metadata only (PartialObjectMetadata)."""
    accept = METADATA if metadata_only else "application/json"
    try:
        for page in kube_pages(api, path, page_size=page_size, timeout=REQUEST_TIMEOUT,
                               accept=accept):
            items = page.get("items")
            yield items if isinstance(items, list) else []
    except ValueError:  # not JSON, or not UTF-8
        raise KubeError(f"{path}: the API server's answer is not JSON") from None


def object_path(kind: F.Kind, namespace: str, name: str) -> str:
    if not kind.namespaced:
        return f"{kind.path}/{name}"
    base, plural = kind.path.rsplit("/", 1)
    return f"{base}/namespaces/{namespace}/{plural}/{name}"


def _drift_state(obj: dict, known: Known | None) -> tuple[str | None, list | None, list | None]:
    """(applied_time, baseline fields, drift) of an added or changed object."""
    own = F.ownership(obj)
    if own.applied_time is None:
        return None, None, None
    if known is not None and known.applied_time == own.applied_time \
            and known.applied_fields is not None:
        drift = F.drifted_fields(set(known.applied_fields), own)
        return own.applied_time, known.applied_fields, drift or None
    return own.applied_time, sorted(own.applied), None  # a new apply: the new baseline


def _ref(kind: F.Kind, namespace: str, name: str, uid: str, drift: list) -> dict:
    return {"kind": kind.kind, "namespace": namespace, "name": name, "uid": uid,
            "fields": drift}


class _Diff:
    """The diff of one cluster's listing against its snapshot, kind by kind."""

    def __init__(self, cluster: str, snapshot: Snapshot, when: datetime) -> None:
        self.cluster, self.snapshot, self.when = cluster, snapshot, when
        self.changes = Changes()
        self.counts: dict[str, KindCounts] = {}
        self.drifted: list[dict] = []
        self.drift: list[dict] = []
        self.health_changes: list[dict] = []
        self._kind_health: list[dict] = []  # this kind's, kept once its listing completes

    def kind(self, api: k8s.ApiClient, kind: F.Kind, page_size: int) -> None:
        """Diff one kind: its metadata listed first (uid, resourceVersion); the objects new
        or changed since then read in full (one GET each, or a full listing when many)."""
        counts, seen, stale = KindCounts(), set(), {}
        self._kind_health = []
        for page in list_pages(api, kind.path, page_size, metadata_only=True):
            for item in page:
                self._metadata(kind, item, counts, seen, stale)
        if len(stale) > max(FULL_LIST_MIN, FULL_LIST_SHARE * counts.total):
            for page in list_pages(api, kind.path, page_size):
                for obj in page:
                    meta = obj.get("metadata") if isinstance(obj, dict) else None
                    uid = F.text(meta.get("uid"), 64) if isinstance(meta, dict) else None
                    if uid in stale:
                        self._object(kind, obj, counts)
                        del stale[uid]
        else:
            for uid, (namespace, name) in list(stale.items()):
                obj = get_object_at(api, object_path(kind, namespace, name))
                if obj is not None and F.text(obj["metadata"].get("uid"), 64) == uid:
                    self._object(kind, obj, counts)
                    del stale[uid]
        for uid in stale:  # deleted between the two reads: gone now
            seen.discard(uid)
            counts.total -= 1
        for uid, known in self.snapshot.known.items():
            if known.kind == kind.name and not known.removed and uid not in seen:
                self.changes.removed.append(uid)
                counts.removed += 1
                gone = missing_change(kind.kind, uid, known)
                if gone:
                    self._kind_health.append(gone)
        self.counts[kind.name] = counts
        self.health_changes += self._kind_health

    def restart(self, kind: F.Kind, mark: tuple[int, int, int, int]) -> None:
        """Forget what a listing of ``kind`` that could not finish collected."""
        added, changed, drifted, drift = mark
        del self.changes.added[added:], self.changes.changed[changed:]
        del self.drifted[drifted:], self.drift[drift:]

    def _metadata(self, kind: F.Kind, item: dict, counts: KindCounts, seen: set,
                  stale: dict) -> None:
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(meta, dict) or not meta.get("uid"):
            return
        uid = F.text(meta["uid"], 64)
        if uid in seen:
            return
        seen.add(uid)
        counts.total += 1
        rv = F.text(meta.get("resourceVersion"), 64) or ""
        namespace = F.text(meta.get("namespace"), 253) or ""
        name = F.text(meta.get("name"), 253) or ""
        known = self.snapshot.known.get(uid)
        if known is not None and not known.removed and known.resource_version == rv \
                and known.health is not None:  # (a row from before health: read it once)
            if known.drift:
                self.drift.append(_ref(kind, namespace, name, uid, known.drift))
            return
        stale[uid] = (namespace, name)

    def _object(self, kind: F.Kind, obj: dict, counts: KindCounts) -> None:
        meta = obj["metadata"]
        uid = F.text(meta["uid"], 64)
        rv = F.text(meta.get("resourceVersion"), 64) or ""
        namespace = F.text(meta.get("namespace"), 253) or ""
        name = F.text(meta.get("name"), 253) or ""
        known = self.snapshot.known.get(uid)
        applied_time, baseline, drift = _drift_state(obj, known)
        health = assess(obj, kind.kind)
        change = health_change(kind.kind, namespace, name, uid, health, known)
        if change:
            self._kind_health.append(change)
        row = {"uid": uid, "kind": kind.name, "namespace": namespace, "name": name,
               "resource_version": rv, "last_seen": self.when, "changed": self.when,
               "removed": None, "fields": json.dumps(F.summarize(kind.name, obj)),
               "applied_time": applied_time,
               "applied_fields": json.dumps(baseline) if baseline is not None else None,
               "drift": json.dumps(drift) if drift else None,
               "health": health.status, "health_message": health.message}
        if known is None:
            self.changes.added.append({**row, "cluster": self.cluster,
                                       "first_seen": self.when})
            counts.added += 1
        else:
            self.changes.changed.append(row)
            if known.removed:
                counts.added += 1
            else:
                counts.changed += 1
        if drift:
            self.drift.append(_ref(kind, namespace, name, uid, drift))
            if drift != (known.drift if known else None):
                self.drifted.append(_ref(kind, namespace, name, uid, drift))


def get_object_at(api: k8s.ApiClient, path: str) -> dict | None:
    """The object at ``path``, or None when it no longer exists."""
    try:
        obj = _get_json(api, path, [], "application/json")
    except KubeNotFound:
        return None
    return obj if isinstance(obj.get("metadata"), dict) else None


def sync_cluster(name: str, source: ClusterSource, *, inventory: Inventory | None = None,
                 page_size: int = PAGE_SIZE) -> SyncResult:
    """Sync the cluster ``name`` (credentials from ``source``, e.g. its KubernetesCluster
    block) into the inventory.

    Args:
        name: the cluster's name in the inventory (its block's name).
        source: builds the ApiClient (a ``KubernetesCluster`` block).
        inventory: the inventory to write (default: ansflow's store).
        page_size: objects per list request.

    Returns:
        The counts per kind (total, added, changed, removed), the drift found, and whether
        this sync was written or superseded by a concurrent one.

    Raises:
        SyncFailed: the cluster is unreachable, the identity may list none of the kinds, or
            a listing failed (the inventory is left as it was).
        StoreError: the store cannot be read or written.
    """
    if not 1 <= page_size <= 10000:
        raise SyncFailed(f"page_size must be 1 to 10000, got {page_size}")
    started = time.monotonic()
    own = inventory is None
    inventory = inventory or Inventory()
    try:
        snapshot = inventory.snapshot(name)
        diff = _Diff(name, snapshot, now())
        skipped: dict[str, str] = {}
        with source.get_client() as api:
            for kind in F.KINDS:
                _list_kind(api, name, diff, kind, page_size, skipped)
        if len(skipped) == len(F.KINDS):
            raise SyncFailed(f"cluster {name!r}: the identity may list none of "
                             f"{', '.join(F.KIND_NAMES)} ({next(iter(skipped.values()))})",
                             status="forbidden")
        summary = {k: asdict(v) for k, v in diff.counts.items()}
        diff.changes.summary = {"counts": summary, "skipped": skipped}
        written = inventory.commit(name, snapshot.generation, diff.changes, diff.when)
    finally:
        if own:
            inventory.close()
    return SyncResult(name, "synced" if written else "superseded", diff.counts,
                      diff.drifted if written else [], diff.drift, skipped,
                      round(time.monotonic() - started, 3),
                      diff.health_changes if written else [])


def _list_kind(api: k8s.ApiClient, name: str, diff: _Diff, kind: F.Kind, page_size: int,
               skipped: dict[str, str]) -> None:
    mark = (len(diff.changes.added), len(diff.changes.changed), len(diff.drifted),
            len(diff.drift))
    for attempt in (1, 2):
        try:
            diff.kind(api, kind, page_size)
            return
        except KubeForbidden as exc:
            diff.restart(kind, mark)
            if exc.status == 401:
                raise SyncFailed(f"cluster {name!r}: 401 Unauthorized (the credentials were "
                                 "rejected)", status="forbidden") from None
            skipped[kind.name] = f"list {kind.name}: {exc}"
            return
        except KubeUnavailable as exc:
            raise SyncFailed(f"cluster {name!r}: list {kind.name}: {exc}",
                             status="unreachable") from None
        except KubeNotFound:  # a kind (or API version) this cluster does not serve
            diff.restart(kind, mark)
            skipped[kind.name] = f"list {kind.name}: not served by this cluster"
            return
        except KubeError as exc:
            diff.restart(kind, mark)
            if exc.status == GONE and attempt == 1:
                continue
            raise SyncFailed(f"cluster {name!r}: list {kind.name}: {exc}") from None
