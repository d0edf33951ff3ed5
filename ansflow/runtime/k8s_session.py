"""What every Kubernetes step does first: find its cluster (a block name, or a block object
handed to the task), open an isolated API client, and turn every adapter or client failure
into a step error that names the cluster, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import urllib3
from kubernetes import client as k8s

from ansflow.engines.kube import api_client_for, translate_error
from ansflow.engines.kube_objects import KubeApplyConflict, KubeError
from ansflow.errors import StepFailed, StepTransient, step_error
from ansflow.runtime.base import engine_errors, mask_secrets


@dataclass(frozen=True)
class ClusterSession:
    """An open connection to a step's cluster."""

    name: str  # for messages
    block: Any  # the KubernetesCluster block
    api: k8s.ApiClient
    namespace: str | None  # the step's namespace, else the block's


@contextmanager
def cluster_session(ctx: Any, cluster: str | None, namespace: str | None
                    ) -> Iterator[ClusterSession]:
    """Load the step's cluster and open a fresh ApiClient for the block (closed after).

    An open session handed over in ``ctx.blocks["cluster"]`` (a management operation running
    a step executor) is worked in as it is: its client, its block already masked."""
    given = getattr(ctx, "blocks", {}).get("cluster") if ctx is not None else None
    if isinstance(given, ClusterSession):
        yield replace(given, namespace=namespace or given.block.namespace)
        return
    block = load_cluster(cluster, ctx)
    with api_client_for(block) as api:
        yield ClusterSession(cluster or "?", block, api, namespace or block.namespace)


def load_cluster(name: str | None, ctx: Any = None):
    """The saved KubernetesCluster block `name`, or a StepFailed saying how to save one;
    its secrets are added to the run's masker (short ones refused).

    A block object handed to a task directly (``ctx.blocks["cluster"]``) is used as is."""
    from ansflow.blocks.kubernetes import load_saved_cluster

    given = getattr(ctx, "blocks", {}).get("cluster") if ctx is not None else None
    if given is not None:
        return _masked(given, name or "given", ctx)
    if not name:
        raise StepFailed("no cluster given (set `cluster:` or `defaults.k8s.cluster`)")
    return _masked(load_saved_cluster(name), name, ctx)


def _masked(block: Any, name: str, ctx: Any):
    """``block``, its secrets added to the run's masker (short ones refused)."""
    values = block.secret_values() if hasattr(block, "secret_values") else []
    mask_secrets(ctx, f"cluster {name!r}", values)
    return block


@contextmanager
def api_errors(cluster: str, action: str) -> Iterator[None]:
    """Turn client/network exceptions raised inside into ansflow errors, and make every step
    failure raised inside name the cluster."""
    try:
        with engine_errors():
            yield
    except StepFailed as exc:
        if f"cluster {cluster!r}" in str(exc):
            raise
        message = str(exc)
        if exc.hint:
            message = message[: -len(f"\n  hint: {exc.hint}")]
        raise type(exc)(f"cluster {cluster!r}: {message}", exit_code=exc.exit_code,
                        hint=exc.hint) from exc
    except KubeError as exc:
        cause = exc.__cause__
        if isinstance(exc, KubeApplyConflict):
            raise StepFailed(f"cluster {cluster!r}: {action}: {exc}",
                             hint="set force_conflicts: true to take these fields over, or "
                                  "leave them out of what is applied") from exc
        if cause is None:  # the adapter's own finding (an unknown kind...)
            raise StepFailed(f"cluster {cluster!r}: {exc}") from exc
        raise step_error(translate_error(cause, cluster=cluster, action=action)) from exc
    except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise step_error(translate_error(exc, cluster=cluster, action=action)) from exc


WRONG_TYPE_HINT = ("a field has the wrong type: quote it if it must be text (e.g. '8080'), or "
                   "see the field's API reference")


@contextmanager
def wrong_types(hint: str = WRONG_TYPE_HINT) -> Iterator[None]:
    """The API server answers a field of the wrong type in an apply (a number where text is
    expected) with a 500 "failed to create typed patch object": a mistake in the manifest,
    not a failing server, so not worth a retry."""
    try:
        yield
    except StepTransient as exc:
        if "failed to create typed patch object" not in str(exc):
            raise
        raise StepFailed(str(exc), hint=hint) from exc
