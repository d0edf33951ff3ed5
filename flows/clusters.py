"""The saved clusters the upkeep flows work on (chosen by name, checked against the saved
blocks of ``ansflow.blocks.kubernetes``), and their Prefect concurrency limits."""

from __future__ import annotations

import logging
import re

from ansflow.blocks.kubernetes import ClusterNotFound, saved_cluster_names

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,62}[a-z0-9])?$")
log = logging.getLogger("ansflow.flows")


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
