"""The Kubernetes side of cleanup: step pods of finished runs, expired objects.

Lists go cluster-wide by label selector, in pages, asking for each object's metadata only
(a PartialObjectMetadataList: no specs or statuses travel). Every delete re-reads the object,
checks it is still what the plan chose, and sends its uid and resourceVersion as
preconditions with background propagation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from kubernetes import client as k8s

from ansflow.engines.kube import api_client_for
from ansflow.engines.kube_objects import (
    METADATA_ACCEPT,
    METADATA_LIST_ACCEPT,
    KubeConflict,
    KubeError,
    KubeNotFound,
    Resource,
    request,
)
from ansflow.engines.kube_pod import STEP_POD_LABEL
from ansflow.engines.untrusted import clean_text as _clean
from ansflow.errors import AnsflowError
from ansflow.runtime.base import label_value
from ansflow.upkeep.cleanup import (
    EXPIRES_LABEL,
    KEEP_ANNOTATION,
    PIPELINE_LABEL,
    PROTECTED_NAMESPACES,
    RUN_LABEL,
    CleanupOptions,
    CleanupReport,
    Item,
    RunStates,
)

# What a run leaves in a cluster is only what ansflow made for a step: a step pod and its
# Secret (left when the worker died before giving it to the pod), both labelled as a step
# pod's. k8s_deploy puts the run labels on everything it applies, so a run label alone says
# nothing: a Job or bare Pod a pipeline deployed (a migration running for hours) is the
# pipeline's, and goes only by its expire_after.
RUN_KINDS = ((Resource("v1", "Pod", "pods", True), f"{STEP_POD_LABEL}=true"),
             (Resource("v1", "Secret", "secrets", True), f"{STEP_POD_LABEL}=true"))
PAGE_SIZE = 500
# Kinds an expiry never applies to: records of other things, not things deployed.
_NEVER = frozenset({"Event", "Lease", "EndpointSlice", "Endpoints", "ControllerRevision",
                    "ReplicaSet", "Node", "ComponentStatus"})


def list_metadata(api: k8s.ApiClient, res: Resource, selector: str,
                  page: int = PAGE_SIZE) -> Iterator[dict]:
    """The metadata of every object of ``res`` matching ``selector``, all namespaces, paged."""
    token = ""
    while True:
        query = [("labelSelector", selector), ("limit", str(page))]
        if token:
            query.append(("continue", token))
        doc = request(api, "GET", res.path(None), query=query, accept=METADATA_LIST_ACCEPT)
        for item in doc.get("items") or []:
            if isinstance(item, dict) and isinstance(item.get("metadata"), dict):
                yield item["metadata"]
        token = str((doc.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def expirable_kinds(api: k8s.ApiClient) -> list[Resource]:
    """Every kind (preferred version of each group) that can be listed and deleted."""
    found: list[Resource] = []
    groups = request(api, "GET", "/apis").get("groups") or []
    versions = ["v1"] + [str((g.get("preferredVersion") or {}).get("groupVersion"))
                         for g in groups if (g.get("preferredVersion") or {}).get("groupVersion")]
    for gv in versions:
        try:
            doc = request(api, "GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
        except KubeError:
            continue  # an aggregated API that is down: its kinds are looked at next time
        for res in doc.get("resources") or []:
            verbs = set(res.get("verbs") or [])
            if "/" in str(res.get("name", "")) or not {"list", "delete"} <= verbs:
                continue
            if res.get("kind") in _NEVER:
                continue
            found.append(Resource(gv, str(res["kind"]), str(res["name"]),
                                  bool(res.get("namespaced"))))
    return found


def _selector(options: CleanupOptions, label: str, extra: str | None = None) -> str:
    parts = [f"{RUN_LABEL}={options.run_id}" if options.run_id and label == RUN_LABEL
             else label]
    if extra:
        parts.append(extra)
    if options.pipelines:
        values = ",".join(sorted({label_value(p) for p in options.pipelines}))
        parts.append(f"{PIPELINE_LABEL} in ({values})")
    return ",".join(parts)


def _guard(meta: dict) -> str | None:
    """Why an object is never removed, whatever the plan (None: it may be)."""
    ns = str(meta.get("namespace") or "")
    if ns in PROTECTED_NAMESPACES or (not ns and meta.get("name") in PROTECTED_NAMESPACES):
        return "system namespace: never touched"
    if str((meta.get("annotations") or {}).get(KEEP_ANNOTATION, "")).lower() == "true":
        return f'annotated {KEEP_ANNOTATION}: "true"'
    return None


def expiry_of(meta: dict) -> datetime | None:
    """When the object expires (its ansflow.dev/expires label), None if unreadable."""
    raw = str((meta.get("labels") or {}).get(EXPIRES_LABEL, ""))
    try:
        return datetime.fromtimestamp(int(raw), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def judge_run_object(meta: dict, kind: str, states: RunStates,
                     options: CleanupOptions) -> str | None:
    """None when a step pod (or its Secret) of a finished run may go, else why it stays."""
    guard = _guard(meta)
    if guard:
        return guard
    labels = meta.get("labels") or {}
    if labels.get(STEP_POD_LABEL) != "true":
        return f"a {_clean(kind)} that is not a step pod's: deployed, never a run's leftover"
    if EXPIRES_LABEL in labels:
        return "deployed with expire_after: removed when it expires"
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner is not None:
        return f"controlled by {_clean(owner.get('kind'))}/{_clean(owner.get('name'))}"
    return states.why_kept(str(labels.get(RUN_LABEL, "")), options)


def judge_expired(meta: dict, now: datetime) -> str | None:
    """None when an object deployed with expire_after has expired, else why it stays."""
    guard = _guard(meta)
    if guard:
        return guard
    when = expiry_of(meta)
    if when is None:
        return f"unreadable {EXPIRES_LABEL} label"
    if when > now:
        return f"expires at {when:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _item(cluster: str, res: Resource, meta: dict, reason: str, rule: str) -> Item:
    return Item(f"cluster {cluster}", res.kind, _clean(meta.get("name")),
                _clean(meta.get("namespace") or ""), reason,
                key={"res": res, "uid": meta.get("uid"), "rule": rule,
                     "run": str((meta.get("labels") or {}).get(RUN_LABEL, ""))})


def plan_cluster(cluster: str, options: CleanupOptions, states: RunStates,
                 report: CleanupReport) -> None:
    """Add what ``cluster`` holds to the plan: its step pods of runs and expired objects."""
    try:
        block = options.blocks.get(cluster) or _load(cluster)
        with api_client_for(block) as api:
            run_objects: list[tuple[Resource, dict]] = []
            for res, extra in RUN_KINDS:
                run_objects.extend((res, m) for m in list_metadata(
                    api, res, _selector(options, RUN_LABEL, extra)))
            if not options.run_id:
                states.lookup(str((m.get("labels") or {}).get(RUN_LABEL, ""))
                              for _, m in run_objects)
            for res, meta in run_objects:
                why = judge_run_object(meta, res.kind, states, options)
                rid = str((meta.get("labels") or {}).get(RUN_LABEL, ""))
                if why is None:
                    state = "chosen by --run-id" if options.run_id else \
                        f"ended {states.get(rid).state}"
                    report.remove.append(_item(cluster, res, meta,
                                               f"run {_clean(rid, 64)} {state}", "run"))
                else:
                    report.kept.append(_item(cluster, res, meta, why, "run"))
            if options.run_id:
                return
            for res in expirable_kinds(api):
                for meta in list_metadata(api, res, _selector(options, EXPIRES_LABEL)):
                    why = judge_expired(meta, options.now)
                    if why is None:
                        when = expiry_of(meta)
                        report.remove.append(_item(cluster, res, meta,
                                                   f"expired at {when:%Y-%m-%d %H:%M:%S} UTC",
                                                   "expiry"))
                    else:
                        report.kept.append(_item(cluster, res, meta, why, "expiry"))
    except (KubeError, AnsflowError) as exc:
        report.problems.append(f"cluster {cluster}: {_clean(exc, 300)}")
    except Exception as exc:  # noqa: BLE001 - urllib3 / OS errors of an unreachable server
        report.problems.append(f"cluster {cluster}: unreachable ({type(exc).__name__}: "
                               f"{_clean(exc, 200)})")


def _load(cluster: str):  # noqa: ANN202
    from ansflow.runtime.k8s_session import load_cluster  # noqa: PLC0415

    return load_cluster(cluster)


def delete_items(cluster: str, items: list[Item], options: CleanupOptions,
                 report: CleanupReport, states: RunStates | None = None) -> None:
    """Delete the planned objects of ``cluster``, each re-read and re-judged first."""
    states = states or RunStates()
    try:
        block = options.blocks.get(cluster) or _load(cluster)
    except AnsflowError as exc:
        for item in items:
            item.reason = f"not deleted: {_clean(exc, 200)}"
            report.failed.append(item)
        return
    with api_client_for(block) as api:
        for item in items:
            _delete_one(api, item, options, states, report)


def _delete_one(api: k8s.ApiClient, item: Item, options: CleanupOptions, states: RunStates,
                report: CleanupReport) -> None:
    res: Resource = item.key["res"]
    ns = item.namespace or None
    try:
        live = request(api, "GET", res.path(ns, item.name), accept=METADATA_ACCEPT)
    except KubeNotFound:
        item.reason = "already gone"
        report.removed.append(item)
        return
    except KubeError as exc:
        item.reason = f"not deleted: could not re-read it ({_clean(exc)})"
        report.failed.append(item)
        return
    meta = live.get("metadata") or {}
    if meta.get("uid") != item.key.get("uid"):
        why = "replaced by another object of the same name since the plan"
    elif item.key["rule"] == "run":
        why = judge_run_object(meta, res.kind, states, options)
        if why is None and str((meta.get("labels") or {}).get(RUN_LABEL)) != item.key["run"]:
            why = "its run label changed since the plan"
    else:
        why = judge_expired(meta, datetime.now(timezone.utc))
    if why is not None:
        item.reason = f"kept: {why}"
        report.kept.append(item)
        return
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
            "preconditions": {"uid": meta.get("uid"),
                              "resourceVersion": meta.get("resourceVersion")}}
    try:
        request(api, "DELETE", res.path(ns, item.name), body=body)
    except KubeNotFound:
        item.reason = "already gone"
    except KubeConflict:
        item.reason = "kept: it changed just before the delete"
        report.kept.append(item)
        return
    except KubeError as exc:
        item.reason = f"delete failed ({_clean(exc)}); tried again next time"
        report.failed.append(item)
        return
    report.removed.append(item)
