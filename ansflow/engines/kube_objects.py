"""The Kubernetes adapter's object access: kind -> REST path, get, list, apply, watch.

Objects travel as plain dicts (what the API server sends), so any kind works the same way,
CRDs included. Kinds are resolved through the API server's discovery documents, never through
a cache on disk. Requests go through the isolated ApiClient of ``ansflow.engines.kube``.
Failures raise the adapter's small error tree (KubeNotFound, KubeConflict, KubeForbidden,
KubeInvalid, KubeUnavailable; ``ansflow.engines.kube_errors``, re-exported here), the
client's exception chained; the step tasks turn them into step errors in one place
(``ansflow.runtime.k8s_session.api_errors``). Names, namespaces and label selectors are checked
by the API server's rules (``ansflow.engines.kube_names``) before any request, and path
segments quoted: KubeNameError, nothing sent. Nothing here knows about pipelines or steps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from ansflow.engines.kube_errors import (  # noqa: F401 - re-exported: the adapter's errors
    KubeApplyConflict,
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNameError,
    KubeNotFound,
    KubeUnavailable,
)
from ansflow.engines.kube_kinds import KIND_ALIASES, Resource  # noqa: F401 - Resource re-exported
from ansflow.engines.kube_names import check_name, check_selector
from ansflow.engines.untrusted import clean_text as _clean

FIELD_MANAGER = "ansflow"
# A list answered with each object's metadata only (PartialObjectMetadataList).
METADATA_LIST_ACCEPT = ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,"
                        "application/json")
METADATA_ACCEPT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

_BY_STATUS = {404: KubeNotFound, 409: KubeConflict, 401: KubeForbidden, 403: KubeForbidden,
              422: KubeInvalid}


def classify(exc: BaseException) -> KubeError:
    """The adapter's error for what the client raised (raise it ``from exc``)."""
    if isinstance(exc, k8s.ApiException):
        status = exc.status or 0
        cls = _BY_STATUS.get(status) or (
            KubeUnavailable if status in (0, 429) or status >= 500 else KubeError)
        return cls(f"{status} {exc.reason}", status=status)
    return KubeUnavailable(f"the API server is unreachable ({type(exc).__name__})")


def _check_request(path: str, query: list | None) -> None:
    # The last line before the wire, for paths built without Resource.path: no segment
    # the HTTP client would collapse, no label selector the API server would not parse.
    segments = path.split("/")
    if any(seg in (".", "..") for seg in segments) or _CONTROL_RE.search(path):
        raise KubeNameError(f"request path {path[:200]!r} has a '.' or '..' segment or a "
                            "control character; refused before sending")
    for key, value in query or []:
        if key == "labelSelector":
            check_selector(value)


def _send(api: k8s.ApiClient, method: str, path: str, query: list | None, body: Any,
          content_type: str | None, timeout: Any, accept: str) -> Any:
    _check_request(path, query)
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = api.param_serialize(method, path, query_params=list(query or []),
                                     header_params=headers, body=body,
                                     auth_settings=["BearerToken"])
    return api.call_api(*serialized, _request_timeout=timeout)


def request(api: k8s.ApiClient, method: str, path: str, *, query: list | None = None,
            body: Any = None, content_type: str | None = None, timeout: Any = None,
            stream: bool = False, accept: str = "application/json") -> Any:
    """One REST call; the JSON answer as a dict (or the raw urllib3 response when streaming).

    ``accept`` asks for another representation, e.g. metadata only
    (:data:`METADATA_LIST_ACCEPT`).

    Raises:
        KubeError: a non-2xx answer or no answer (the subclass says which; the client's
            ApiException, with the server's Status body, is chained).
        ValueError: the answer is not JSON.
    """
    try:
        response = _send(api, method, path, query, body, content_type, timeout, accept)
        if not 200 <= response.status <= 299:
            response.read()
            raise k8s.ApiException.from_response(http_resp=response, body=None, data=None)
        if stream:
            return response.response
        data = response.read()
    except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise classify(exc) from exc
    return json.loads(data) if data else {}


def get_raw(api: k8s.ApiClient, path: str, *, query: list | None = None, timeout: Any = None,
            accept: str = "application/json") -> tuple[int, bytes]:
    """One GET answered whatever its HTTP status: (status, body). For the paths whose
    non-2xx answer is the news (``/readyz?verbose`` lists its failing checks in a 500).

    Raises:
        KubeError: no answer (KubeUnavailable), or a path refused before sending.
    """
    try:
        response = _send(api, "GET", path, query, None, None, timeout, accept)
        return response.status, response.read()
    except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise classify(exc) from exc


def list_pages(api: k8s.ApiClient, path: str, *, query: list | None = None,
               page_size: int = 500, timeout: Any = None,
               accept: str = "application/json") -> Iterator[dict]:
    """The pages of a list path (``limit`` / ``continue``), each the API server's answer
    as a dict (a non-dict answer counts as an empty page).

    Raises:
        KubeError: a page was refused or not answered.
        ValueError: a page is not JSON.
    """
    token = ""
    while True:
        page_query = list(query or []) + [("limit", str(page_size))]
        if token:
            page_query.append(("continue", token))
        page = request(api, "GET", path, query=page_query, timeout=timeout, accept=accept)
        page = page if isinstance(page, dict) else {}
        yield page
        token = str((page.get("metadata") or {}).get("continue") or "")
        if not token:
            return


def resolve_kind(api: k8s.ApiClient, api_version: str, kind: str) -> Resource:
    """The Resource of (apiVersion, kind), from the API server's discovery document."""
    path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    try:
        doc = request(api, "GET", path)
    except KubeNotFound:
        raise KubeNotFound(f"the cluster does not serve apiVersion {api_version!r} "
                           f"(kind {kind})") from None
    for res in doc.get("resources", []):
        if res.get("kind") == kind and "/" not in res.get("name", ""):
            return Resource(api_version, kind, res["name"], bool(res.get("namespaced")))
    raise KubeNotFound(f"the cluster has no kind {kind!r} in apiVersion {api_version!r}")


def served_scopes(api: k8s.ApiClient) -> dict[tuple[str, str], bool]:
    """(apiVersion, kind) -> namespaced, for every kind in every version the cluster serves.

    Raises:
        KubeError: discovery failed.
    """
    scopes: dict[tuple[str, str], bool] = {}
    versions = ["v1"] + [v["groupVersion"] for g in request(api, "GET", "/apis").get("groups", [])
                         for v in g.get("versions", [])]
    for gv in versions:
        doc = request(api, "GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
        for res in doc.get("resources", []):
            if "/" not in res.get("name", "") and res.get("kind"):
                scopes[(gv, res["kind"])] = bool(res.get("namespaced"))
    return scopes


def resolve_type(api: k8s.ApiClient, resource_type: str) -> Resource:
    """The Resource a user's `resource_type` means: `deployment`, `deploy`, `jobs.batch`,
    `Deployment`, a CRD's plural or short name..."""
    wanted = resource_type.strip().lower()
    if wanted in KIND_ALIASES:
        return resolve_kind(api, KIND_ALIASES[wanted].api_version, KIND_ALIASES[wanted].kind)
    name, _, group = wanted.partition(".")
    groups = request(api, "GET", "/apis").get("groups", [])
    versions = ["v1"] + [g["preferredVersion"]["groupVersion"] for g in groups
                         if not group or g.get("name") == group]
    for gv in versions if not group else versions[1:]:
        doc = request(api, "GET", "/api/v1" if gv == "v1" else f"/apis/{gv}")
        for res in doc.get("resources", []):
            if "/" in res.get("name", ""):
                continue
            names = {res["name"], res.get("singularName", ""), res.get("kind", "").lower(),
                     *res.get("shortNames", [])}
            if name in names:
                return Resource(gv, res["kind"], res["name"], bool(res.get("namespaced")))
    raise KubeNotFound(f"the cluster has no resource type {resource_type!r}")


def get_object(api: k8s.ApiClient, res: Resource, name: str, namespace: str | None) -> dict | None:
    """The object, or None when it does not exist."""
    try:
        obj = request(api, "GET", res.path(namespace, name))
    except KubeNotFound:
        return None
    obj.setdefault("kind", res.kind)
    return obj


def list_objects(api: k8s.ApiClient, res: Resource, namespace: str | None, *,
                 label_selector: str = "", field_selector: str = "") -> dict:
    query = [(k, v) for k, v in (("labelSelector", label_selector),
                                 ("fieldSelector", field_selector)) if v]
    return request(api, "GET", res.path(namespace), query=query)


# Kinds outside any namespace, for when discovery cannot tell (a kind the cluster does not
# serve yet, discovery refused or failing). Discovery decides whenever it answers.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "StorageClass", "PriorityClass", "ClusterRole",
    "ClusterRoleBinding", "CustomResourceDefinition", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "APIService", "CSIDriver", "CSINode",
    "VolumeAttachment", "VolumeAttributesClass", "RuntimeClass", "IngressClass",
    "CertificateSigningRequest", "FlowSchema", "PriorityLevelConfiguration", "IPAddress",
    "ServiceCIDR", "DeviceClass", "ResourceSlice", "ComponentStatus",
})
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_CONFLICT_MANAGER_RE = re.compile(r'conflict with "([^"]{0,200})"')
_MAX_CONFLICTS = 20


def apply_conflicts(exc: BaseException) -> list[tuple[str, str]]:
    """(field, manager) of each FieldManagerConflict cause of a 409 apply answer ([] when
    the answer is some other conflict)."""
    if not isinstance(exc, k8s.ApiException) or exc.status != 409:
        return []
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return []
    causes = ((body if isinstance(body, dict) else {}).get("details") or {}).get("causes")
    found = []
    for cause in causes if isinstance(causes, list) else []:
        if not isinstance(cause, dict) or cause.get("reason") != "FieldManagerConflict":
            continue
        match = _CONFLICT_MANAGER_RE.search(str(cause.get("message", "")))
        found.append((_clean(cause.get("field") or "?"),
                      _clean(match.group(1) if match else cause.get("message") or "?")))
    return found


def describe_conflicts(conflicts: list[tuple[str, str]]) -> str:
    """`field (owned by "manager"), ...` for a message (at most 20 named)."""
    parts = [f'{field} (owned by "{manager}")' for field, manager in conflicts[:_MAX_CONFLICTS]]
    if len(conflicts) > _MAX_CONFLICTS:
        parts.append(f"... and {len(conflicts) - _MAX_CONFLICTS} more")
    return ", ".join(parts)


def apply_object(api: k8s.ApiClient, res: Resource, obj: dict, *, dry_run: bool = False,
                 force: bool = False) -> dict:
    """Server-side apply under the field manager `ansflow`.

    Args:
        force: take over fields other field managers own (the apply's ``force=true``);
            without it, such fields fail the apply.

    Raises:
        KubeApplyConflict: without `force`, fields are owned by other managers (each field
            and its manager named).
        KubeError: any other refusal.
    """
    meta = obj["metadata"]
    query = [("fieldManager", FIELD_MANAGER)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    try:
        return request(api, "PATCH", res.path(meta.get("namespace"), meta["name"]),
                       query=query, body=obj, content_type=APPLY_CONTENT_TYPE)
    except KubeConflict as exc:
        conflicts = apply_conflicts(exc.__cause__) if exc.__cause__ else []
        if not conflicts:
            raise
        raise KubeApplyConflict(
            f"{res.ref(meta['name'], meta.get('namespace'))}: {len(conflicts)} field(s) "
            f"owned by other field managers: {describe_conflicts(conflicts)}",
            conflicts) from exc


def watch_events(api: k8s.ApiClient, res: Resource, namespace: str | None, name: str,
                 resource_version: str, seconds: int, on_open=None) -> Iterator[dict]:
    """Watch one object (by field selector) from `resource_version` for at most `seconds`.

    Yields the raw events ({"type", "object"}); ERROR events are yielded too (a 410 Gone
    arrives as one). `on_open(response)` is called with the open response, so a cancel can
    close it from another thread.
    """
    check_name(name, res.kind)
    query = [("watch", "true"), ("fieldSelector", f"metadata.name={name}"),
             ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
             ("timeoutSeconds", str(max(1, int(seconds))))]
    response = request(api, "GET", res.path(namespace), query=query, stream=True,
                       timeout=(10, seconds + 10))
    if on_open:
        on_open(response)
    try:
        for line in iter_resp_lines(response):
            if line.strip():
                yield json.loads(line)
    finally:
        response.close()  # never hand a half-read watch connection back to the pool
        response.release_conn()
