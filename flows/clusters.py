"""The saved clusters the upkeep flows work on, and their Prefect concurrency limits."""

from __future__ import annotations

import logging
import re

from ansflow.errors import AnsflowError

CLUSTER_BLOCK_SLUG = "ansflow-kubernetes-cluster"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$")
log = logging.getLogger("ansflow.flows")


class ClusterNotFound(AnsflowError):
    """No saved KubernetesCluster block of that name (or its block cannot be loaded)."""


def saved_cluster_names() -> list[str]:
    """The names of every saved KubernetesCluster block, sorted.

    Raises:
        AnsflowError: the Prefect API cannot be reached.
    """
    from prefect.client.orchestration import get_client  # noqa: PLC0415

    try:
        with get_client(sync_client=True) as client:
            docs = client.read_block_documents_by_type(CLUSTER_BLOCK_SLUG)
    except Exception as exc:  # noqa: BLE001 - any API failure is one line to the user
        raise AnsflowError(f"cannot list the saved clusters: the Prefect API failed "
                           f"({type(exc).__name__})") from None
    return sorted(d.name for d in docs if d.name and not d.is_anonymous)


def choose_clusters(names: list[str] | None) -> list[str]:
    """``names`` checked (deduplicated, in order), or every saved cluster when empty.

    Raises:
        ClusterNotFound: a name that is not a saved cluster block.
    """
    if not names:
        return saved_cluster_names()
    chosen: list[str] = []
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ClusterNotFound(f"{str(name)[:80]!r} is not a cluster block name "
                                  "(lowercase letters, digits, dashes)")
        if name not in chosen:
            chosen.append(name)
    saved = set(saved_cluster_names())
    missing = [n for n in chosen if n not in saved]
    if missing:
        raise ClusterNotFound(f"no saved cluster named {', '.join(map(repr, missing))} "
                              "(see `ansflow cluster list`)")
    return chosen


def load_cluster(name: str):
    """The KubernetesCluster block ``name``.

    Raises:
        ClusterNotFound: no such block, or it cannot be loaded.
    """
    from ansflow.blocks.kubernetes import KubernetesCluster  # noqa: PLC0415

    try:
        return KubernetesCluster.load(name)
    except Exception as exc:  # noqa: BLE001 - ObjectNotFound, ValueError, API errors
        if "not found" in str(exc).lower() or type(exc).__name__ == "ObjectNotFound":
            raise ClusterNotFound(f"no saved cluster named {name!r} "
                                  "(see `ansflow cluster list`)") from None
        raise ClusterNotFound(f"cluster {name!r}: cannot load its block "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None


def ensure_concurrency_limit(name: str, limit: int) -> None:
    """Create the global concurrency limit ``name`` with ``limit`` slots unless it exists
    (a limit an operator set is left as it is)."""
    from prefect.client.orchestration import get_client  # noqa: PLC0415
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate  # noqa: PLC0415
    from prefect.exceptions import ObjectNotFound  # noqa: PLC0415

    try:
        with get_client(sync_client=True) as client:
            try:
                client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit))
    except Exception as exc:  # noqa: BLE001 - a racing creator, or no API: not fatal
        log.debug("concurrency limit %s: %s", name, exc)
