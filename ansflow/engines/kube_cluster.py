"""The Kubernetes adapter's calls about the cluster itself: its version, what an identity may
do, its nodes, a service account's presence, a cluster role binding, a container's log.

The typed client classes (``CoreV1Api``, ``VersionApi``...) are built here and in the other
``ansflow.engines.kube*`` modules only; callers hand an ApiClient in. A refusal or no answer
raises the adapter's :class:`~ansflow.engines.kube_errors.KubeError` (the client's exception
chained), as the object calls of ``ansflow.engines.kube_objects`` do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import urllib3
from kubernetes import client as k8s

from ansflow.engines.kube import ClusterSource
from ansflow.engines.kube_names import check_container, check_name, check_namespace
from ansflow.engines.kube_objects import KubeConflict, classify


@contextmanager
def _calling() -> Iterator[None]:
    try:
        yield
    except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise classify(exc) from exc


def one_attempt_client(source: ClusterSource) -> k8s.ApiClient:
    """An ApiClient of ``source`` that sends each request once (no urllib3 retries): for a
    check, whose report is that answer or that error. Close it when done.

    Raises:
        What ``source.get_client()`` raises when the credentials do not load.
    """
    with source.get_client() as built:
        configuration = built.configuration
    configuration.retries = 0
    return k8s.ApiClient(configuration)


def server_version(api: k8s.ApiClient, timeout: float = 10) -> str:
    """The API server's ``gitVersion`` (``/version``)."""
    with _calling():
        return str(k8s.VersionApi(api).get_code(_request_timeout=timeout).git_version)


def rules_review(api: k8s.ApiClient, namespace: str, timeout: float = 10) -> Any:
    """What the client's identity may do in ``namespace`` (a SelfSubjectRulesReview's
    status: ``resource_rules``, ``incomplete``, ``evaluation_error``)."""
    check_namespace(namespace)
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    with _calling():
        return k8s.AuthorizationV1Api(api).create_self_subject_rules_review(
            review, _request_timeout=timeout).status


def _ready(conditions: list | None) -> Any:
    """The node's Ready condition when it is True, else None."""
    return next((c for c in conditions or [] if c.type == "Ready" and c.status == "True"),
                None)


def ready_nodes(api: k8s.ApiClient, timeout: float = 5) -> int:
    """How many nodes report Ready."""
    with _calling():
        nodes = k8s.CoreV1Api(api).list_node(_request_timeout=timeout).items
    return sum(_ready(n.status.conditions if n.status else None) is not None for n in nodes)


def node_ready_since(api: k8s.ApiClient, name: str, since: float, timeout: float = 5) -> bool:
    """Whether node ``name`` is Ready with a heartbeat at or after ``since`` (epoch seconds,
    one second of slack)."""
    check_name(name, "Node")
    with _calling():
        node = k8s.CoreV1Api(api).read_node(name, _request_timeout=timeout)
    ready = _ready(node.status.conditions if node.status else None)
    beat: datetime | None = ready.last_heartbeat_time if ready is not None else None
    return beat is not None and beat.timestamp() >= since - 1


def ensure_nodes(api: k8s.ApiClient, manifests: list[dict]) -> list[str]:
    """Create each Node manifest whose name the cluster does not have; the names created."""
    core = k8s.CoreV1Api(api)
    with _calling():
        existing = {n.metadata.name for n in core.list_node(_request_timeout=5).items}
        created = []
        for body in manifests:
            if body["metadata"]["name"] not in existing:
                core.create_node(body, _request_timeout=10)
                created.append(body["metadata"]["name"])
    return created


def service_account_exists(api: k8s.ApiClient, namespace: str, name: str,
                           timeout: float = 5) -> bool:
    """Whether the service account exists (False when not, or when the API cannot say).

    The control plane creates each namespace's ``default`` account shortly after start:
    pods cannot be admitted before it exists."""
    check_namespace(namespace)
    check_name(name, "ServiceAccount")
    try:
        with _calling():
            k8s.CoreV1Api(api).read_namespaced_service_account(name, namespace,
                                                               _request_timeout=timeout)
    except Exception:  # noqa: BLE001 - not there yet, or the API busy: not there for us
        return False
    return True


def ensure_cluster_role_binding(api: k8s.ApiClient, body: dict) -> bool:
    """Create the ClusterRoleBinding; False when one of its name exists already (409).

    Raises:
        KubeError: any other refusal, or no answer.
    """
    try:
        with _calling():
            k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(body,
                                                                        _request_timeout=10)
    except KubeConflict:
        return False
    return True


def container_log(api: k8s.ApiClient, namespace: str, pod: str, container: str, *,
                  previous: bool = False, tail_lines: int | None = None,
                  limit_bytes: int | None = None, timeout: float = 10) -> str:
    """A container's log as text (``previous``: the container that ran before this one);
    the names are checked by the API server's rules first."""
    check_namespace(namespace)
    check_name(pod, "Pod", "pod")
    check_container(container)
    kwargs: dict[str, Any] = {"container": container, "previous": previous,
                              "_request_timeout": timeout}
    if tail_lines is not None:
        kwargs["tail_lines"] = tail_lines
    if limit_bytes is not None:
        kwargs["limit_bytes"] = limit_bytes
    with _calling():
        return str(k8s.CoreV1Api(api).read_namespaced_pod_log(pod, namespace, **kwargs) or "")
