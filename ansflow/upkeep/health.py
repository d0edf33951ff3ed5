"""The health check of one cluster: API server probes, nodes, stuck pods, Warning events.

``/livez`` and ``/readyz?verbose`` (failing checks named from their ``[-]name`` lines),
``/version``, each node's Ready and pressure conditions, pods stuck in CrashLoopBackOff /
ImagePullBackOff (read as the API server's own table, as ``kubectl get pods`` shows them, so
that 10,000 pods cost little), and the Warning events of the last interval. The result is
stored on the cluster's record. A cluster that cannot be reached, or whose identity is
refused, is reported as ``unreachable`` / ``forbidden`` with the reason: never as healthy.
Nothing here knows about Prefect (``ansflow.flows.health`` publishes the events).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client as k8s

from ansflow.engines.kube import ClusterSource
from ansflow.engines.kube_objects import (
    KubeError,
    KubeForbidden,
    get_raw,
    list_pages,
    request,
)
from ansflow.errors import AnsflowError
from ansflow.upkeep.fields import text
from ansflow.upkeep.inventory import Inventory, now, objects_health_text, total_by_health

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
TIMEOUT = (5, 30)
PAGE_SIZE = 500
STUCK_REASONS = frozenset({"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"})
PRESSURES = ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable")
MAX_NAMED = 20


@dataclass
class HealthReport:
    """One health check's outcome (``as_dict()`` is serializable)."""

    cluster: str
    status: str  # ok / degraded / unreachable / forbidden
    message: str
    checked: datetime
    server_version: str | None = None
    nodes_total: int | None = None
    nodes_ready: int | None = None
    pods_total: int | None = None
    pods_running: int | None = None
    pods_failing: int | None = None
    failed_checks: list[str] = field(default_factory=list)
    node_problems: list[str] = field(default_factory=list)
    stuck_pods: list[str] = field(default_factory=list)
    warnings: int = 0
    warning_samples: list[str] = field(default_factory=list)
    previous_status: str | None = None
    seconds: float = 0.0
    # The cluster's objects by health at its last sync (Healthy, Progressing, Degraded...).
    objects_by_health: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return self.previous_status != self.status

    def as_dict(self) -> dict:
        data = asdict(self)
        data["checked"] = self.checked.isoformat()
        return data


class _Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


def _refusal(exc: KubeError, path: str) -> _Refused:
    if isinstance(exc, KubeForbidden):
        what = ("401 Unauthorized: the credentials were rejected" if exc.status == 401
                else f"403 Forbidden: the identity may not read {path}")
        return _Refused("forbidden", what)
    if exc.status:  # an HTTP answer other than 2xx
        return _Refused("unreachable", f"{path}: HTTP {exc.status}")
    return _Refused("unreachable", f"{path}: {exc}")


@contextmanager
def _reading(path: str):
    """A refusal, no answer or a non-JSON answer of ``path`` as _Refused."""
    try:
        yield
    except KubeError as exc:
        raise _refusal(exc, path) from None
    except ValueError:
        raise _Refused("unreachable", f"{path}: not a JSON answer") from None


def _json(api: k8s.ApiClient, path: str) -> dict:
    with _reading(path):
        data = request(api, "GET", path, timeout=TIMEOUT)
    return data if isinstance(data, dict) else {}


def _pages(api: k8s.ApiClient, path: str, query: list | None = None,
           accept: str = "application/json"):
    with _reading(path):
        yield from list_pages(api, path, query=query, page_size=PAGE_SIZE, timeout=TIMEOUT,
                              accept=accept)


def _items(api: k8s.ApiClient, path: str, query: list | None = None):
    for page in _pages(api, path, query):
        items = page.get("items")
        yield from items if isinstance(items, list) else []


def failed_checks(verbose: str) -> list[str]:
    """The names of the failed checks of a ``/readyz?verbose`` (or livez) answer."""
    names = []
    for line in verbose.splitlines():
        line = line.strip()
        if line.startswith("[-]"):
            names.append(text(line[3:].split(" ", 1)[0], 128))
    return names[:50]


def _probe(api: k8s.ApiClient, path: str, report: HealthReport) -> None:
    try:
        status, body = get_raw(api, path, query=[("verbose", "true")], timeout=TIMEOUT)
    except KubeError as exc:
        raise _refusal(exc, path) from None
    if status in (401, 403):
        raise _refusal(KubeForbidden("", status=status), path)
    if status != 200:
        names = failed_checks(body.decode("utf-8", "replace")) or [f"{path} (HTTP {status})"]
        report.failed_checks += [f"{path.strip('/')}: {n}" for n in names]


def node_problems(node: dict) -> tuple[bool, list[str]]:
    """(ready, problems) of a node from its conditions."""
    name = text((node.get("metadata") or {}).get("name"), 253)
    conditions = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []
                  if isinstance(c, dict)}
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    problems = [] if ready else [f"{name}: not Ready "
                                 f"({text((conditions.get('Ready') or {}).get('reason'), 64)})"]
    problems += [f"{name}: {p}" for p in PRESSURES
                 if (conditions.get(p) or {}).get("status") == "True"]
    if (node.get("spec") or {}).get("unschedulable"):
        problems.append(f"{name}: cordoned")
    return ready, problems


def _pods(api: k8s.ApiClient, report: HealthReport) -> None:
    total = running = failing = 0
    columns: dict[str, int] = {}
    for page in _pages(api, "/api/v1/pods", [("includeObject", "None")], TABLE):
        if not columns:
            columns = {str(c.get("name")): i
                       for i, c in enumerate(page.get("columnDefinitions") or [])}
        for row in page.get("rows") or []:
            cells = row.get("cells") or [] if isinstance(row, dict) else []
            status = str(cells[columns.get("Status", 2)]) if len(cells) > 2 else ""
            total += 1
            running += status == "Running"
            reason = status.removeprefix("Init:")
            if reason in STUCK_REASONS:
                failing += 1
                if len(report.stuck_pods) < MAX_NAMED:
                    report.stuck_pods.append(f"{text(cells[columns.get('Name', 0)], 253)}: "
                                             f"{text(reason, 64)}")
    report.pods_total, report.pods_running, report.pods_failing = total, running, failing


def _event_time(event: dict) -> str:
    series = event.get("series") or {}
    return str(series.get("lastObservedTime") or event.get("lastTimestamp")
               or event.get("eventTime") or (event.get("metadata") or {})
               .get("creationTimestamp") or "")


def _warnings(api: k8s.ApiClient, report: HealthReport, since: datetime) -> None:
    cutoff = since.strftime("%Y-%m-%dT%H:%M:%S")
    for event in _items(api, "/api/v1/events", [("fieldSelector", "type=Warning")]):
        if not isinstance(event, dict) or _event_time(event)[:19] < cutoff:
            continue
        report.warnings += 1
        if len(report.warning_samples) < MAX_NAMED:
            obj = event.get("involvedObject") or {}
            report.warning_samples.append(
                f"{text(obj.get('kind'), 64)}/{text(obj.get('name'), 253)}"
                f" in {text(obj.get('namespace') or '-', 253)}: {text(event.get('reason'), 64)}"
                f": {text(event.get('message'), 200)}")


def _verdict(report: HealthReport) -> None:
    problems = report.failed_checks + report.node_problems + report.stuck_pods
    if report.nodes_total == 0:
        problems.append("no nodes")
    report.status = "degraded" if problems else "ok"
    parts = [f"Kubernetes {report.server_version}",
             f"nodes {report.nodes_ready}/{report.nodes_total} ready",
             f"pods {report.pods_running}/{report.pods_total} running"]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; ... {len(problems) - 5} more"
                                           if len(problems) > 5 else "")
        parts.append(f"problems: {shown}")
    if report.warnings:
        parts.append(f"{report.warnings} Warning event(s) in the interval")
    report.message = ", ".join(parts)


def check_health(name: str, source: ClusterSource, *, interval: float = 60.0,
                 inventory: Inventory | None = None, store: bool = True) -> HealthReport:
    """Check the cluster ``name`` and store the outcome on its inventory record.

    Args:
        name: the cluster's name in the inventory (its block's name).
        source: builds the ApiClient (a ``KubernetesCluster`` block).
        interval: seconds of Warning events to count (the time since the last check).
        inventory: the inventory to write (default: ansflow's store).
        store: write the outcome on the cluster's record.

    Returns:
        The report; ``previous_status`` is the record's status before (``changed`` tells
        whether an unhealthy / healthy event is due).

    Raises:
        StoreError: the store cannot be written.
    """
    started = time.monotonic()
    report = HealthReport(name, "unreachable", "", now())
    try:
        with source.get_client() as api:
            _probe(api, "/livez", report)
            _probe(api, "/readyz", report)
            report.server_version = text(_json(api, "/version").get("gitVersion"), 64)
            nodes = list(_items(api, "/api/v1/nodes"))
            report.nodes_total = len(nodes)
            for node in nodes:
                ready, problems = node_problems(node)
                report.nodes_ready = (report.nodes_ready or 0) + ready
                report.node_problems += problems[:MAX_NAMED]
            report.nodes_ready = report.nodes_ready or 0
            _pods(api, report)
            _warnings(api, report, report.checked - timedelta(seconds=max(interval, 1)))
        _verdict(report)
    except _Refused as exc:
        report.status = exc.status
        report.message = f"{exc.status}: {exc.reason}"
    except KubeError as exc:
        report.status, report.message = "unreachable", f"unreachable: {exc}"
    except AnsflowError as exc:  # credentials that do not load: StepFailed
        report.status = "unreachable"
        report.message = f"unreachable: {type(exc).__name__}: {text(exc, 300)}"
    report.seconds = round(time.monotonic() - started, 3)
    if store:
        _store(name, report, inventory)
    return report


def _store(name: str, report: HealthReport, inventory: Inventory | None) -> None:
    own = inventory is None
    inventory = inventory or Inventory()
    try:
        report.objects_by_health = total_by_health(inventory.health_counts(name))
        report.message += objects_health_text(report.objects_by_health)
        checks: dict[str, Any] = {k: getattr(report, k) for k in (
            "failed_checks", "node_problems", "stuck_pods", "warnings", "warning_samples",
            "objects_by_health")}
        report.previous_status = inventory.record_health(name, {
            "status": report.status, "message": report.message[:2000],
            "server_version": report.server_version, "nodes_total": report.nodes_total,
            "nodes_ready": report.nodes_ready, "pods_total": report.pods_total,
            "pods_running": report.pods_running, "pods_failing": report.pods_failing,
            "checks": json.dumps(checks), "last_health": report.checked})
    finally:
        if own:
            inventory.close()
