"""The k8s_get step: read one object of any kind the cluster serves (as ``kubectl get -o
json``), with its health. prefect-kubernetes has a ``read_namespaced_*`` task per kind; this
one task covers every kind through the API server's discovery.

What is returned is small and never holds a Secret's values: managedFields are dropped, a
Secret's ``data`` / ``stringData`` are dropped (its key names are the ``keys`` output), the
``kubectl.kubernetes.io/last-applied-configuration`` annotation (a copy of what was applied,
values included) is omitted, and an object larger than :data:`MAX_OBJECT_BYTES` is cut down
(a ConfigMap's values first, then all but its metadata).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_objects import get_object, list_objects, resolve_type
from ansflow.engines.object_health import assess
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.k8s_session import api_errors, cluster_session
from ansflow.runtime.k8s_workload import suggestion
from ansflow.runtime.public import StepOutput, run_cluster_task, step_task
from ansflow.spec.steps_k8s import K8sGetConfig
from ansflow.tasks.k8s_list import key_names

MAX_OBJECT_BYTES = 256 * 1024
MAX_SUGGESTION_NAMES = 5000
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
OMITTED = "(omitted)"


def _size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":"), default=str))


def shown_object(obj: dict, limit: int = MAX_OBJECT_BYTES) -> tuple[dict, bool]:
    """What k8s_get returns of ``obj``, and whether it was cut down to fit ``limit``: no
    managedFields, no last-applied-configuration, a Secret without its values."""
    out = {k: v for k, v in obj.items() if k not in ("data", "stringData")} \
        if obj.get("kind") == "Secret" else copy.copy(obj)
    meta = dict(out.get("metadata") or {}) if isinstance(out.get("metadata"), dict) else {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        meta["annotations"] = {**annotations, LAST_APPLIED: OMITTED}
    out["metadata"] = meta
    if _size(out) <= limit:
        return out, False
    for section in ("data", "binaryData"):  # a ConfigMap's values: the sizes instead
        values = out.get(section)
        if isinstance(values, dict):
            out[section] = {k: f"({len(str(v))} characters, omitted)" for k, v in values.items()}
    if _size(out) <= limit:
        return out, True
    keep = {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                 "creationTimestamp") if k in meta}
    return {"apiVersion": out.get("apiVersion"), "kind": out.get("kind"), "metadata": keep,
            "omitted": f"the object is larger than {limit} bytes"}, True


@step_executor
def execute_k8s_get(ctx: StepContext, config: K8sGetConfig) -> StepResult:
    """Read one object, with its health (kubectl get -o json).

    Returns:
        Outputs ``found``, ``kind``, ``name``, ``namespace``, ``uid``, ``resource_version``,
        ``health``, ``health_message``, ``keys`` (a ConfigMap's or Secret's key names) and
        ``object`` (JSON).

    Raises:
        StepFailed: unknown cluster or resource type, a missing object (close names
            suggested) unless ``ignore_not_found``, a refusal of the API server.
    """
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, cluster = session.api, config.cluster or session.name
        with api_errors(cluster, f"look up resource type {config.resource_type.strip()!r}"):
            res = resolve_type(api, config.resource_type)
        namespace = session.namespace if res.namespaced else None
        if res.namespaced and not namespace:
            raise StepFailed(f"cluster {cluster!r}: no namespace to get {res.plural} in",
                             hint="set namespace")
        ref = res.ref(config.resource_name, namespace)
        where = f" in namespace {namespace}" if namespace else ""
        with api_errors(cluster, f"get {res.plural} {config.resource_name!r}{where}"):
            obj = get_object(api, res, config.resource_name, namespace)
            if obj is None and not config.ignore_not_found:
                items = list_objects(api, res, namespace).get("items") or []
                names = [str((o.get("metadata") or {}).get("name", ""))
                         for o in items[:MAX_SUGGESTION_NAMES] if isinstance(o, dict)]
    if obj is None:
        if not config.ignore_not_found:
            hint = suggestion(config.resource_name, names, res, namespace or "(cluster-wide)")
            raise StepFailed(f"cluster {cluster!r}: {ref} not found{hint}")
        ctx.emit(f"{ref} is not there on cluster {cluster!r}")
        missing = assess(None, kind=res.kind)
        return StepResult(outputs={
            "found": "false", "kind": res.kind, "name": config.resource_name,
            "namespace": namespace or "", "uid": "", "resource_version": "",
            "health": missing.status, "health_message": missing.message, "keys": "",
            "object": "null"})
    obj.setdefault("apiVersion", res.api_version)
    health = assess(obj, kind=res.kind)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    shown, cut = shown_object(obj)
    keys = key_names(obj) if res.kind in ("Secret", "ConfigMap") else []
    ctx.emit(f"{ref} on cluster {cluster!r}: {health.status} ({health.message})"
             + (" (cut down to its metadata and sizes: too large)" if cut else ""))
    return StepResult(outputs={
        "found": "true", "kind": str(obj.get("kind") or res.kind),
        "name": str(meta.get("name") or config.resource_name), "namespace": namespace or "",
        "uid": str(meta.get("uid") or ""),
        "resource_version": str(meta.get("resourceVersion") or ""),
        "health": health.status, "health_message": health.message, "keys": ",".join(keys),
        "object": json.dumps(shown, separators=(",", ":"), default=str)})


@step_task("k8s_get", execute_k8s_get)
def k8s_get(
    *,
    cluster: str | KubernetesCluster | None = None,
    resource_type: str,
    resource_name: str,
    namespace: str | None = None,
    ignore_not_found: bool = False,
) -> StepOutput:
    """Read one object of any kind the cluster serves (``kubectl get -o json``), with its
    health; of a Secret, its key names only.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace; unused for cluster-scoped
            kinds).
        resource_type: ``deployment``, ``pod``, ``service``, ``configmap``, ``secret``,
            ``namespace``, ``node``... or any kind, short name or plural the cluster serves.
        resource_name: The object's name.
        ignore_not_found: A missing object is not an error (``found`` is ``false``, health
            ``Missing``).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``found``, ``kind``, ``name``, ``namespace``,
        ``uid``, ``resource_version``, ``health``, ``health_message``, ``keys`` (a
        ConfigMap's or Secret's key names, comma-separated) and ``object`` (JSON, without
        managedFields; a Secret without ``data`` / ``stringData``).

    Raises:
        StepFailed: a missing object (close names suggested), an unknown resource type, a
            refusal of the API server.

    Example:
        ```python
        from ansflow.tasks import k8s_get

        web = k8s_get(cluster="prod", namespace="shop", resource_type="deploy",
                      resource_name="web")
        print(web["outputs"]["health"], web["outputs"]["health_message"])
        ```
    """
    return run_cluster_task("k8s_get", execute_k8s_get, K8sGetConfig, locals())
