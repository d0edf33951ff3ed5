"""The `revert` operation (destructive): re-apply what k8s_deploy applied to an object that
drifted, taking back the fields other field managers changed (server-side apply with
force, as Argo CD's sync does). Replicas an HPA or a scaler owns are left to them."""

from __future__ import annotations

from ansflow.engines.kube_drift import REPLICAS, applied_manifest, drift_markdown, with_applied
from ansflow.engines.kube_objects import apply_object, get_object, resolve_type
from ansflow.errors import StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.describe import object_drift
from ansflow.manage.validation import Problems, check_object_name, require_namespace, shown
from ansflow.runtime.k8s_session import api_errors


def _fields(drift: list[dict]) -> str:
    return ", ".join(d["field"] for d in drift)


@register("revert", destructive=True)
def revert(ctx, session, *, resource_type: str = "deployment", resource_name: str
           ) -> OperationResult:
    """Re-apply what k8s_deploy applied to an object, undoing its drift (destructive: the
    changes other field managers made to those fields are lost).

    Args:
        resource_type: The object's kind: deployment, service, configmap, statefulset...
        resource_name: The object's name (what confirm must equal).

    Returns:
        Before / after: the drifted fields; outputs ``reverted`` (the fields put back).

    Raises:
        StepFailed: an unknown type or object, an object k8s_deploy did not apply, or
            refused by the API server.
    """
    problems = Problems("revert")
    if not isinstance(resource_type, str) or not resource_type.strip() \
            or len(resource_type) > 253:
        problems.add(f"resource_type {shown(resource_type)} is not a resource type")
    check_object_name(problems, "resource_name", resource_name)
    problems.raise_if_any()
    api, cluster = session.api, session.name
    with api_errors(cluster, f"look up resource type {resource_type.strip()!r}"):
        res = resolve_type(api, resource_type)
    namespace = require_namespace("revert", session.namespace) if res.namespaced else None
    ref = res.ref(resource_name, namespace)
    target = ObjectRef(cluster, res.kind, resource_name, namespace)
    with api_errors(cluster, f"read {ref}"):
        live = get_object(api, res, resource_name, namespace)
        if live is None:
            raise StepFailed(f"cluster {cluster!r}: {ref} not found")
        applied = applied_manifest(live)
        if applied is None:
            raise StepFailed(f"cluster {cluster!r}: {ref} keeps no manifest ansflow applied; "
                             "only what k8s_deploy applied can be reverted")
        meta = applied["metadata"]
        if applied.get("kind") != res.kind or meta.get("name") != resource_name or \
                (meta.get("namespace") or None) != namespace:
            raise StepFailed(f"cluster {cluster!r}: the applied manifest kept on {ref} names "
                             "another object; nothing was changed")
        drift = object_drift(api, res, live) or []
    if not drift:
        return OperationResult(target=target, summary=f"{ref} has no drift: nothing to revert",
                               outputs={"reverted": ""}, changed=False,
                               markdown=drift_markdown([]))
    body = applied
    live_replicas = (live.get("spec") or {}).get("replicas")
    if REPLICAS not in {d["field"] for d in drift} and \
            (body.get("spec") or {}).get("replicas", live_replicas) != live_replicas:
        body = {**body, "spec": {k: v for k, v in body["spec"].items() if k != "replicas"}}
        ctx.emit(f"{ref}: its replicas are left to the scaler that owns them")
    ctx.emit(f"reverting {ref}: {_fields(drift)}")
    with api_errors(cluster, f"apply {ref}"):
        apply_object(api, res, with_applied(body), force=True)
        after = object_drift(api, res, get_object(api, res, resource_name, namespace) or {})
    return OperationResult(
        target=target, summary=f"reverted {ref} on cluster {cluster!r}: {_fields(drift)}",
        outputs={"reverted": _fields(drift)}, before={"drift": drift},
        after={"drift": after or []},
        markdown="### Drift before\n\n" + drift_markdown(drift)
        + "\n### Drift after\n\n" + drift_markdown(after or []))
