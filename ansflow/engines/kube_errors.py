"""The Kubernetes adapter's error tree (pure: no client import, so the spec layer and the
name rules of ``ansflow.engines.kube_names`` can use it without loading the client).

``ansflow.engines.kube_objects`` re-exports every class; the step tasks turn them into step
errors in one place (``ansflow.runtime.k8s_session.api_errors``).
"""

from __future__ import annotations


class KubeError(Exception):
    """A Kubernetes API call failed; the client's exception, if any, is the __cause__."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class KubeNotFound(KubeError):
    """404, or a kind / resource type the cluster does not serve."""


class KubeConflict(KubeError):
    """409: the object changed or exists already."""


class KubeApplyConflict(KubeConflict):
    """409 on a server-side apply: fields of the object are owned by other field managers.

    ``conflicts`` holds (field, manager) pairs, as the API's Status causes name them.
    """

    def __init__(self, message: str, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts
        super().__init__(message, status=409)


class KubeForbidden(KubeError):
    """401 or 403: the identity may not do this."""


class KubeInvalid(KubeError):
    """422: the API server refused the object as invalid."""


class KubeNameError(KubeInvalid):
    """A name, namespace or label selector breaks the API server's rules for its kind:
    refused by ansflow before any request (nothing chained, no status)."""


class KubeUnavailable(KubeError):
    """The API server is unreachable, overloaded (429) or failing (5xx): worth a retry."""
