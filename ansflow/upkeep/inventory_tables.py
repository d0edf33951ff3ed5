"""The inventory as tables (pure: no I/O, no Prefect): one table per cluster (its namespaces,
object counts by kind and by health, nodes), one per namespace (kind, name, health and
message, age, images, replicas, drift) and a markdown summary linking them.

The same rows feed the Prefect artifacts the sync publishes (``ansflow.flows.inventory_publish``)
and `ansflow inventory` in a terminal. Everything shown comes from a cluster, so it is
untrusted: every cell is one line, without control characters, masked (the caller's masker)
and cut to :data:`MAX_CELL` characters; the artifact forms are markdown-escaped (the Prefect
UI renders every string cell of a table artifact as markdown). Tables are bounded:
:data:`MAX_NAMESPACE_ROWS` objects per namespace (the least healthy first), at most
:data:`MAX_NAMESPACES` namespace tables per cluster, :data:`MAX_SUMMARY_ROWS` rows per
summary section.

Artifact keys (Prefect allows lowercase letters, digits and dashes) are stable per cluster
and namespace, and collision-free: a readable slug plus 8 hex digits of a hash of the exact
names, so `a-b`/`c` and `a`/`b-c` never share a key.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ansflow.engines.kube_kinds import KIND_ALIASES, NODES

STATUSES = ("Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown")
# The order rows are shown in: what needs a look first.
_SEVERITY = {"Degraded": 0, "Missing": 1, "Progressing": 2, "Unknown": 3, "Suspended": 4,
             "Healthy": 5}
NO_HEALTH = "-"  # a row written before health was assessed
MAX_CELL = 200
MAX_PRECUT = 4096  # a value is cut to this before masking (fields are bounded already)
MAX_NAMESPACE_ROWS = 500
MAX_NAMESPACES = 200
MAX_SUMMARY_ROWS = 100
MAX_IMAGES = 5
MAX_DRIFT_FIELDS = 5
KEY_PREFIX = "ansflow-inventory"
NAMESPACE_KEY_PREFIX = "ansflow-namespace"
CLUSTER_SCOPED = ""  # the namespace of cluster-scoped objects
CLUSTER_SCOPED_LABEL = "(cluster-scoped)"

Mask = Callable[[str], str]

# The inventory's kind names -> the kind users know (the sync's kinds; others shown as kept).
_KIND_NAMES = {res.plural: res.kind for res in (*KIND_ALIASES.values(), NODES)}
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")
_SLUG = re.compile(r"[^a-z0-9]+")
# Markdown that could change what a cell shows: inline syntax, HTML, entities, tables.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#!|~&\"'])")
_MD_LINE_START = re.compile(r"^([-+=:>]|\d+[.)])")
_AUTOLINK = re.compile(r"(?i)(://|www\.)")
_MD_ANY = re.compile(r"""[\\`*_{}\[\]()<>#!|~&"']|://|(?i:www\.)|^(?:[-+=:>]|\d+[.)])""")


def _identity(text: str) -> str:
    return text


# ---- cells and keys -------------------------------------------------------------------------


def _clean(value: Any) -> str:
    if value is None:
        return ""
    text = (value if isinstance(value, str) else str(value))[:MAX_PRECUT]
    if not (text.isascii() and text.isprintable()):
        text = _CONTROL.sub(" ", text)
    if "  " in text or text[:1].isspace() or text[-1:].isspace() or not text.isprintable():
        text = _SPACES.sub(" ", text).strip()
    return text


def _cut(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plain(value: Any, mask: Mask = _identity, limit: int = MAX_CELL) -> str:
    """``value`` as one printable line: control and invisible characters and line breaks
    turned into spaces, masked, at most ``limit`` characters (cut with "…")."""
    return _cut(mask(_clean(value)), limit)


def plain_all(values: list[Any], mask: Mask = _identity) -> list[str]:
    """:func:`plain` of each value, masked in one call (cells joined by NUL, which no
    cleaned cell holds)."""
    cleaned = [_clean(v) for v in values]
    masked = mask("\0".join(cleaned)).split("\0")
    if len(masked) != len(cleaned):  # a secret held a NUL: mask each on its own
        masked = [mask(c) for c in cleaned]
    return [_cut(c) for c in masked]


def md(text: str) -> str:
    """``text`` (already one plain line) escaped so a markdown renderer shows it as it is:
    no link, image, emphasis, HTML, entity, table cell break, heading or list."""
    if not _MD_ANY.search(text):
        return text
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _AUTOLINK.sub(lambda m: m.group(1).replace("/", "\\/").replace(".", "\\."), text)
    return _MD_LINE_START.sub(r"\\\1", text)


def md_row(row: dict[str, Any]) -> dict[str, Any]:
    """A table row for a Prefect table artifact: every string cell markdown-escaped."""
    return {k: md(v) if isinstance(v, str) else v for k, v in row.items()}


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:8]


def slug(name: str, limit: int) -> str:
    """Lowercase letters, digits and dashes only, at most ``limit`` characters."""
    return _SLUG.sub("-", name.lower()).strip("-")[:limit].strip("-") or "x"


def cluster_key(cluster: str) -> str:
    """The stable key of a cluster's table artifact: ``ansflow-inventory-<slug>-<hash>``."""
    return f"{KEY_PREFIX}-{slug(cluster, 60)}-{_hash(cluster)}"


def summary_key(cluster: str) -> str:
    """The stable key of a cluster's markdown summary (the cluster's key + ``-summary``)."""
    return f"{cluster_key(cluster)}-summary"


def namespace_key(cluster: str, namespace: str) -> str:
    """The stable key of one namespace's table: ``ansflow-namespace-<cluster>-<namespace>-
    <hash of both>`` (cluster-scoped objects: the namespace part reads ``cluster-scoped``)."""
    ns = slug(namespace, 63) if namespace else "cluster-scoped"
    return f"{NAMESPACE_KEY_PREFIX}-{slug(cluster, 30)}-{ns}-{_hash(cluster, namespace)}"


def artifact_link(key: str, ui_url: str | None) -> str:
    """Where the Prefect UI shows the latest artifact of ``key`` (relative without a UI URL)."""
    return f"{(ui_url or '').rstrip('/')}/artifacts/key/{key}"


# ---- what one object shows ------------------------------------------------------------------


def kind_name(kind: str) -> str:
    """The kind as users know it (``Deployment``) for an inventory kind (``deployments``)."""
    return _KIND_NAMES.get(kind, kind)


def human_age(created: datetime | None, now: datetime) -> str:
    """kubectl's short age: 45s, 12m, 5h, 3d, 2y; "" when unknown."""
    if created is None:
        return ""
    seconds = max(0, int((now - created).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (1 if unit == "y" else 2):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def _json(value: Any, default: Any) -> Any:
    """A JSON column as read (text, parsed only for the rows shown) or already parsed."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return default if value is None else value


def created_time(item: dict, fields: dict | None = None) -> datetime | None:
    """When the object was created (its summary's ``created``), else first seen by a sync."""
    if fields is None:
        fields = _json(item.get("fields"), {})
    created = fields.get("created") if isinstance(fields, dict) else None
    return _time(created) or _time(item.get("first_seen"))


def images(fields: dict) -> list[str]:
    found = fields.get("images")
    if not isinstance(found, list):
        found = [c.get("image") for c in fields.get("containers") or [] if isinstance(c, dict)]
    return [str(i) for i in found if i]


def replicas(fields: dict) -> str:
    """``ready/desired`` for what has replicas (a Job: ``succeeded/completions``, an HPA:
    ``current/desired``); "" for the rest."""
    def shown(value: Any, default: Any = 0) -> str:
        return str(value if value is not None and not isinstance(value, bool) else default)

    if "completions" in fields:
        return f"{shown(fields.get('succeeded'))}/{shown(fields.get('completions'), 1)}"
    if "desired" in fields and "ready" not in fields:
        return f"{shown(fields.get('replicas'))}/{shown(fields.get('desired'), '?')}"
    if "replicas" not in fields:
        return ""
    return f"{shown(fields.get('ready'))}/{shown(fields.get('replicas'), '?')}"


def drift_text(drift: Any) -> str:
    if not isinstance(drift, list) or not drift:
        return ""
    shown = [f"{d.get('field')} ({d.get('manager')})" for d in drift[:MAX_DRIFT_FIELDS]
             if isinstance(d, dict)]
    more = f" +{len(drift) - MAX_DRIFT_FIELDS} more" if len(drift) > MAX_DRIFT_FIELDS else ""
    return ", ".join(shown) + more


def health_of(item: dict) -> str:
    value = item.get("health")
    return value if value in _SEVERITY else NO_HEALTH


def object_row(item: dict, now: datetime, mask: Mask = _identity) -> dict[str, str]:
    """One namespace-table row: kind, name, health, message, age, images, replicas, drift."""
    fields = _json(item.get("fields"), {})
    fields = fields if isinstance(fields, dict) else {}
    shown = images(fields)
    more = f" +{len(shown) - MAX_IMAGES} more" if len(shown) > MAX_IMAGES else ""
    kind, name, message, shown_images, count, drift = plain_all(
        [kind_name(str(item.get("kind") or "")), item.get("name"), item.get("health_message"),
         ", ".join(shown[:MAX_IMAGES]) + more, replicas(fields),
         drift_text(_json(item.get("drift"), None))], mask)
    return {"kind": kind, "name": name, "health": health_of(item), "message": message,
            "age": human_age(created_time(item, fields), now), "images": shown_images,
            "replicas": count, "drift": drift}


# ---- the whole cluster ----------------------------------------------------------------------


@dataclass
class NamespaceTable:
    """One namespace's objects: its counts, and its rows (bounded, least healthy first)."""

    namespace: str
    objects: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_health: Counter = field(default_factory=Counter)
    health: str = ""  # the Namespace object's own health ("" for cluster-scoped objects)
    rows: list[dict[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.namespace or CLUSTER_SCOPED_LABEL

    @property
    def truncated(self) -> int:
        """How many objects have no row (beyond MAX_NAMESPACE_ROWS)."""
        return self.objects - len(self.rows)


@dataclass
class ClusterTables:
    """A cluster's inventory as tables: per namespace, and the counts of the whole."""

    cluster: str
    namespaces: dict[str, NamespaceTable]
    by_kind: Counter
    by_health: Counter
    record: dict[str, Any]
    now: datetime
    max_rows: int = MAX_NAMESPACE_ROWS

    @property
    def objects(self) -> int:
        return sum(self.by_kind.values())

    def shown_namespaces(self, limit: int = MAX_NAMESPACES) -> list[NamespaceTable]:
        """The namespaces that get a table: the least healthy and largest first, at most
        ``limit``; then by name."""
        ranked = sorted(self.namespaces.values(),
                        key=lambda t: (-t.by_health.get("Degraded", 0)
                                       - t.by_health.get("Missing", 0), -t.objects,
                                       t.namespace))
        return sorted(ranked[:limit], key=lambda t: t.namespace)


def _row_key(item: dict) -> tuple:
    return (_SEVERITY.get(item.get("health") or "", 6), str(item.get("kind")),
            str(item.get("name")))


def build(cluster: str, items: Iterable[dict], record: dict | None = None, *,
          now: datetime | None = None, mask: Mask = _identity,
          max_rows: int = MAX_NAMESPACE_ROWS, kinds: set[str] | None = None,
          healths: set[str] | None = None, namespaces: set[str] | None = None,
          ) -> ClusterTables:
    """The tables of ``cluster`` from its inventory ``items`` (``Inventory.objects``) and
    its ``record`` (``Inventory.cluster_record``: nodes, last sync).

    ``kinds`` / ``healths`` / ``namespaces``: only objects of these (filters of `ansflow
    inventory`); ``max_rows``: rows kept per namespace, the least healthy first.
    """
    now = now or datetime.now(timezone.utc)
    heaps: dict[str, list] = {}
    tables: dict[str, NamespaceTable] = {}
    by_kind: Counter = Counter()
    by_health: Counter = Counter()
    ns_health: dict[str, str] = {}
    for n, item in enumerate(items):
        kind = str(item.get("kind") or "")
        namespace = str(item.get("namespace") or "")
        if kind == "namespaces":
            ns_health[str(item.get("name") or "")] = health_of(item)
        health = health_of(item)
        if kinds is not None and kind not in kinds:
            continue
        if healths is not None and health not in healths:
            continue
        if namespaces is not None and namespace not in namespaces:
            continue
        table = tables.get(namespace)
        if table is None:
            table = tables[namespace] = NamespaceTable(namespace)
            heaps[namespace] = []
        table.objects += 1
        table.by_kind[kind] += 1
        table.by_health[health] += 1
        by_kind[kind] += 1
        by_health[health] += 1
        bucket = heaps[namespace]
        bucket.append((_row_key(item), n, item))
        if len(bucket) >= 2 * max_rows + 64:  # memory bounded per namespace, not per object
            heaps[namespace] = heapq.nsmallest(max_rows, bucket)
    for namespace, table in tables.items():
        kept = heapq.nsmallest(max_rows, heaps[namespace])  # the least healthy first
        table.rows = [object_row(item, now, mask) for _, _, item in kept]
        table.health = ns_health.get(namespace, "") if namespace else ""
    return ClusterTables(cluster, dict(sorted(tables.items())), by_kind, by_health,
                         dict(record or {}), now, max_rows)


def _kind_columns(tables: ClusterTables) -> list[str]:
    return sorted(tables.by_kind, key=lambda k: (k != "namespaces", kind_name(k)))


def cluster_rows(tables: ClusterTables, mask: Mask = _identity) -> list[dict[str, Any]]:
    """The cluster table: a totals row (with the nodes), then one row per namespace
    (its own health, objects, counts by health and by kind). Bounded by MAX_NAMESPACES
    plus one row counting the namespaces left out."""
    kinds = _kind_columns(tables)
    record = tables.record

    def row(name: str, health: str, objects: int, by_health: Counter, by_kind: Counter,
            nodes: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"namespace": plain(name, mask), "health": health,
                               "objects": objects}
        out.update({s: by_health.get(s, 0) for s in STATUSES})
        out["no health yet"] = by_health.get(NO_HEALTH, 0)
        out.update({kind_name(k): by_kind.get(k, 0) for k in kinds})
        out["nodes"] = nodes
        return out

    nodes = ""
    if record.get("nodes_total") is not None:
        nodes = f"{record.get('nodes_ready') or 0}/{record['nodes_total']} ready"
    rows = [row("(all)", plain(record.get("status") or "not checked", mask), tables.objects,
                tables.by_health, tables.by_kind, nodes)]
    listed = sorted(tables.namespaces.values(), key=lambda t: t.namespace)
    for t in listed[:MAX_NAMESPACES]:
        rows.append(row(t.label, t.health, t.objects, t.by_health, t.by_kind))
    if len(listed) > MAX_NAMESPACES:
        rest = listed[MAX_NAMESPACES:]
        rows.append(row(f"({len(rest)} more namespaces)", "", sum(t.objects for t in rest),
                        sum((t.by_health for t in rest), Counter()),
                        sum((t.by_kind for t in rest), Counter())))
    return rows


def namespace_rows(table: NamespaceTable) -> list[dict[str, str]]:
    """One namespace's table: its rows, and a last row saying how many were left out."""
    rows = list(table.rows)
    if table.truncated > 0:
        rows.append({"kind": "", "name": f"({table.truncated} more objects not shown)",
                     "health": "", "message": "", "age": "", "images": "", "replicas": "",
                     "drift": ""})
    return rows


def counts_text(counts: Counter) -> str:
    """``3 Healthy, 1 Degraded`` in the statuses' order (none: "no objects")."""
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts.get(s)]
    if counts.get(NO_HEALTH):
        parts.append(f"{counts[NO_HEALTH]} not assessed yet")
    return ", ".join(parts) or "no objects"


def summary_markdown(tables: ClusterTables, ui_url: str | None, mask: Mask = _identity,
                     linked: set[str] | None = None, problems: list[dict] | None = None,
                     ) -> str:
    """The cluster's markdown summary: its health and nodes, a link to the cluster table,
    one line per namespace linking its table (those in ``linked`` have one), and the
    objects that are not healthy (``problems``: rows with a namespace)."""
    record = tables.record
    name = md(plain(tables.cluster, mask))
    status = md(plain(record.get("status") or "not checked", mask))
    last_sync = record.get("last_sync")
    when = f"{last_sync:%Y-%m-%d %H:%M:%S} UTC" if isinstance(last_sync, datetime) else "never"
    lines = [f"# Cluster {name}", "",
             f"Health check: **{status}**"
             + (f" ({md(plain(record.get('message'), mask))})" if record.get("message") else "")
             + f". Last sync: {when}.", ""]
    if record.get("nodes_total") is not None:
        lines += [f"Nodes: {record.get('nodes_ready') or 0} of {record['nodes_total']} ready.",
                  ""]
    lines += [f"{tables.objects} objects: {counts_text(tables.by_health)}. "
              f"[Cluster table]({artifact_link(cluster_key(tables.cluster), ui_url)})", ""]
    listed = sorted(tables.namespaces.values(), key=lambda t: t.namespace)
    if listed:
        lines += ["## Namespaces", "", "| namespace | health | objects | by health | table |",
                  "|---|---|---|---|---|"]
        for t in listed[:MAX_SUMMARY_ROWS]:
            link = (f"[{md(plain(t.label, mask))}]"
                    f"({artifact_link(namespace_key(tables.cluster, t.namespace), ui_url)})"
                    if linked is None or t.namespace in linked else "not published")
            lines.append(f"| {md(plain(t.label, mask))} | {md(t.health) or ''} | {t.objects} "
                         f"| {counts_text(t.by_health)} | {link} |")
        if len(listed) > MAX_SUMMARY_ROWS:
            lines.append(f"\n{len(listed) - MAX_SUMMARY_ROWS} more namespaces: see the "
                         "cluster table.")
        lines.append("")
    if problems:
        lines += ["## Not healthy", "", "| namespace | kind | name | health | message |",
                  "|---|---|---|---|---|"]
        for p in problems[:MAX_SUMMARY_ROWS]:
            lines.append(f"| {md(p['namespace'])} | {md(p['kind'])} | {md(p['name'])} | "
                         f"{md(p['health'])} | {md(p['message'])} |")
        if len(problems) > MAX_SUMMARY_ROWS:
            lines.append(f"\n{len(problems) - MAX_SUMMARY_ROWS} more: see the namespace tables.")
    return "\n".join(lines) + "\n"


def problem_rows(tables: ClusterTables) -> list[dict[str, str]]:
    """The rows whose health is Degraded or Missing, with their namespace, least healthy
    first (from the namespace tables' kept rows)."""
    found = []
    for t in tables.namespaces.values():
        for r in t.rows:
            if r["health"] in ("Degraded", "Missing"):
                found.append({"namespace": t.label, **r})
    return sorted(found, key=lambda r: (_SEVERITY[r["health"]], r["namespace"], r["kind"],
                                        r["name"]))
