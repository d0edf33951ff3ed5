"""The k8s_list step: list objects of any kind the cluster serves (as ``kubectl get``), in
the namespace or in all of them, by label selector; small summaries with each object's
health. prefect-kubernetes has a ``list_namespaced_*`` task per kind; this one task covers
every kind through the API server's discovery, custom resources included.

A Secret's values are never part of what is returned: of a Secret, its type and key names.
"""

from __future__ import annotations

import json
from typing import Any

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import list_pages, resolve_type
from ansflow.engines.object_health import assess
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.steps_k8s import K8sListConfig

PAGE_SIZE = 500
MAX_ITEMS_BYTES = 512 * 1024  # the `items` output stops growing past this
MAX_TEXT = 253
MAX_LABELS = 20
MAX_KEYS = 100
MAX_IMAGES = 10
REQUEST_TIMEOUT = (10, 120)


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """A bounded string of a value read from the cluster ("" for None)."""
    return "" if value is None else str(value)[:limit]


def key_names(obj: dict) -> list[str]:
    """The key names of a ConfigMap's or Secret's data (never a value), sorted, bounded."""
    keys: set[str] = set()
    for section in ("data", "stringData", "binaryData"):
        keys.update(text(k) for k in _d(obj.get(section)))
    return sorted(keys)[:MAX_KEYS]


def _images(spec: dict) -> list[str]:
    pod = _d(_d(_d(spec.get("jobTemplate")).get("spec")).get("template")) or \
        _d(spec.get("template"))
    pod_spec = _d(pod.get("spec")) if pod else spec
    return [text(c.get("image"), 512) for c in _l(pod_spec.get("containers"))[:MAX_IMAGES]
            if isinstance(c, dict)]


def summarize(obj: dict, kind: str) -> dict[str, Any]:
    """What a listing returns of one object: identity, creation time, labels (bounded),
    health, and per kind what ``kubectl get`` shows (ready, phase, type, images, key names).
    A Secret's values are not read."""
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    labels = list(_d(meta.get("labels")).items())[:MAX_LABELS]
    health = assess(obj, kind=kind)
    out: dict[str, Any] = {
        "kind": kind, "name": text(meta.get("name")),
        "namespace": text(meta.get("namespace")),
        "created": text(meta.get("creationTimestamp"), 32),
        "labels": {text(k): text(v, 63) for k, v in labels},
        "health": health.status, "health_message": health.message,
    }
    if kind in ("Secret", "ConfigMap"):
        out["keys"] = key_names(obj)
        if kind == "Secret":
            out["type"] = text(obj.get("type"), 128)
        return out
    if "replicas" in spec or "replicas" in status:
        out["ready"] = (f"{status.get('readyReplicas') or 0}/"
                        f"{spec.get('replicas', status.get('replicas', 0))}")
    if status.get("phase"):
        out["phase"] = text(status.get("phase"), 32)
    if kind == "Service":
        out["type"] = text(spec.get("type"), 32)
        out["cluster_ip"] = text(spec.get("clusterIP"), 64)
    if kind == "Node":
        out["ready"] = next((text(c.get("status"), 16) for c in _l(status.get("conditions"))
                             if isinstance(c, dict) and c.get("type") == "Ready"), "Unknown")
    images = _images(spec)
    if images:
        out["images"] = images
    return out


def list_summaries(api: Any, res: Any, namespace: str | None, label_selector: str | None,
                   limit: int, page_size: int = PAGE_SIZE) -> tuple[list[dict], bool]:
    """Up to ``limit`` summaries of the objects at ``res``'s path (in ``namespace``, or
    everywhere when None), page by page; and whether more were left out (the limit, or the
    items' size reaching MAX_ITEMS_BYTES)."""
    query = [("labelSelector", label_selector)] if label_selector else []
    items: list[dict] = []
    size = 0
    for page in list_pages(api, res.path(namespace), query=query,
                           page_size=min(page_size, limit), timeout=REQUEST_TIMEOUT):
        for obj in _l(page.get("items")):
            if not isinstance(obj, dict):
                continue
            if len(items) >= limit:
                return items, True
            summary = summarize(obj, res.kind)
            size += len(json.dumps(summary)) + 2
            if size > MAX_ITEMS_BYTES:
                return items, True
            items.append(summary)
        if len(items) >= limit and (page.get("metadata") or {}).get("continue"):
            return items, True
    return items, False


@step_executor
def execute_k8s_list(ctx: StepContext, config: K8sListConfig) -> StepResult:
    """List objects of a kind, with their health (kubectl get).

    Returns:
        Outputs ``count``, ``names`` (comma-separated; ``namespace/name`` when listing
        several namespaces), ``items`` (JSON list of summaries) and ``truncated``.

    Raises:
        StepFailed: unknown cluster or resource type, a namespaced kind without a namespace,
            a refusal of the API server (403 names the verb, resource and namespace).
    """
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, cluster = session.api, config.cluster or session.name
        with api_errors(cluster, f"look up resource type {config.resource_type.strip()!r}"):
            res = resolve_type(api, config.resource_type)
        namespace = None
        if res.namespaced and not config.all_namespaces:
            namespace = session.namespace
            if not namespace:
                raise StepFailed(f"cluster {cluster!r}: no namespace to list {res.plural} in",
                                 hint="set namespace, or all_namespaces: true")
        where = f" in namespace {namespace}" if namespace else (
            " in all namespaces" if res.namespaced else "")
        with api_errors(cluster, f"list {res.plural}{where}"):
            items, truncated = list_summaries(api, res, namespace, config.label_selector,
                                              config.limit)
    several = res.namespaced and namespace is None
    names = [f"{i['namespace']}/{i['name']}" if several else i["name"] for i in items]
    unhealthy = sum(1 for i in items if i["health"] not in ("Healthy", "Unknown"))
    selected = f" matching {config.label_selector!r}" if config.label_selector else ""
    ctx.emit(f"{len(items)}{'+' if truncated else ''} {res.plural}{selected}{where} on "
             f"cluster {cluster!r}" + (f", {unhealthy} not healthy" if unhealthy else ""))
    return StepResult(outputs={"count": str(len(items)), "names": ",".join(names),
                               "items": json.dumps(items, separators=(",", ":")),
                               "truncated": "true" if truncated else "false"})


@step_task("k8s_list", execute_k8s_list)
def k8s_list(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_type: str,
    namespace: str | None = None,
    label_selector: str | None = None,
    all_namespaces: bool = False,
    limit: int = 500,
) -> StepOutput:
    """List objects of any kind the cluster serves, as ``kubectl get`` does, with each
    object's health (Healthy, Progressing, Degraded, Suspended, Missing, Unknown).

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        resource_type: ``pod``, ``deployment``, ``service``, ``configmap``, ``secret``,
            ``namespace``, ``node``, ``jobs.batch``... or any kind, short name or plural the
            cluster serves (custom resources too).
        label_selector: Only objects matching it, e.g. ``app=web,tier!=db``.
        all_namespaces: List in every namespace (``kubectl get -A``).
        limit: At most this many objects (1 to 5000).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``count``, ``names``, ``items`` (a JSON list:
        kind, name, namespace, created, labels, health, health_message and, per kind, ready,
        phase, type, images or key names; a Secret's values are never read into it) and
        ``truncated`` (``true`` when the limit left objects out).

    Raises:
        StepFailed: an unknown resource type, a refusal of the API server.

    Example:
        ```python
        import json
        from ansflow.tasks import k8s_list

        pods = k8s_list(cluster="prod", namespace="shop", resource_type="pod",
                        label_selector="app=web")
        for pod in json.loads(pods["outputs"]["items"]):
            print(pod["name"], pod["health"], pod["health_message"])
        ```
    """
    return run_cluster_task("k8s_list", execute_k8s_list, K8sListConfig, locals())
