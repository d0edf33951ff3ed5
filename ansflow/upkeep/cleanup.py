"""Cleanup of what pipeline runs leave behind: plan first, then delete what the plan names.

Only what carries ansflow's run labels (``ansflow.dev/run-id``, ``ansflow.dev/pipeline``,
put by every step on its containers and objects, see ``ansflow.runtime.base``) is ever a
candidate:

- Kubernetes step pods (and their Secrets) of runs that have finished (the Prefect server
  reports the flow run in a final state, or, when the server does not know it, ansflow's
  store recorded its end); never those of a run still going or unknown to both. Only what
  ansflow made for a step (``ansflow.dev/step-pod=true``): what k8s_deploy applied carries
  the run labels too and goes only by its ``expire_after``.
- Objects of any kind that k8s_deploy applied with ``expire_after:``, once expired (the
  ``ansflow.dev/expires`` label, seconds since the epoch; re-applying resets it).
- Docker containers of finished runs, and local images of a pipeline beyond its newest
  ``keep_builds`` builds (an image a container uses is kept).
- Run records of ansflow's store, and removed-object records of the inventory (when that
  module is installed), older than a retention.
- Run workspaces on this machine (``ansflow.upkeep.cleanup_workspaces``): kept after a
  failure past their keep time, or left by a run whose process died.

Never: anything in kube-system, kube-public or kube-node-lease; an object annotated
``ansflow.dev/keep: "true"`` (an image or container labelled so). Labels are re-read just
before each delete and the delete carries the object's uid and resourceVersion as
preconditions, so an object changed since it was planned is kept. Deletes use background
propagation. A failed delete is reported; the next run plans it again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ansflow.engines.untrusted import clean_text
from ansflow.errors import AnsflowError
from ansflow.runtime.k8s_manifests import EXPIRES_ANNOTATION, EXPIRES_LABEL

__all__ = ["EXPIRES_ANNOTATION", "EXPIRES_LABEL"]  # re-exported: cleanup selects by them

RUN_LABEL = "ansflow.dev/run-id"
PIPELINE_LABEL = "ansflow.dev/pipeline"
BUILD_LABEL = "ansflow.dev/build"
KEEP_ANNOTATION = "ansflow.dev/keep"
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
DEFAULT_KEEP_BUILDS = 5
DEFAULT_RUN_RETENTION_DAYS = 30.0
_BATCH = 200


@dataclass
class Item:
    """One thing the plan looked at: what it is, where, and why it goes or stays."""

    where: str  # "cluster NAME", "docker", "store"
    kind: str
    name: str
    namespace: str = ""
    reason: str = ""
    key: dict[str, Any] = field(default_factory=dict)  # what the delete needs (not shown)

    def ref(self) -> str:
        ns = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{self.where}: {self.kind.lower()}/{self.name}{ns}"


@dataclass
class CleanupOptions:
    """What one cleanup looks at (see :func:`ansflow.flows.cleanup.cleanup_flow`)."""

    clusters: list[str] = field(default_factory=list)
    # KubernetesCluster blocks given as objects (name -> block), else loaded by name.
    blocks: dict[str, Any] = field(default_factory=dict)
    docker: bool = False
    docker_host: str | None = None
    workspaces: bool = False  # this machine's run workspaces (ansflow.workspaces)
    keep_builds: int = DEFAULT_KEEP_BUILDS
    run_retention_days: float | None = DEFAULT_RUN_RETENTION_DAYS
    pipelines: list[str] = field(default_factory=list)  # empty: every pipeline
    run_id: str | None = None  # only this run's, whatever its state
    dry_run: bool = False
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass
class CleanupReport:
    """The plan and, after :func:`execute`, what was done."""

    dry_run: bool
    remove: list[Item] = field(default_factory=list)
    kept: list[Item] = field(default_factory=list)
    removed: list[Item] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # sources that could not be read
    states: Any = field(default=None, repr=False)  # the plan's RunStates, for the re-checks

    def counts(self) -> dict[str, int]:
        return {"planned": len(self.remove), "kept": len(self.kept),
                "removed": len(self.removed), "failed": len(self.failed),
                "problems": len(self.problems)}

    def rows(self, limit: int = 1000) -> list[dict[str, str]]:
        """Table rows (action, where, kind, namespace, name, reason), removals first."""
        if self.dry_run or not (self.removed or self.failed):
            groups = [("remove", self.remove), ("keep", self.kept)]
        else:
            groups = [("removed", self.removed), ("failed", self.failed), ("keep", self.kept)]
        rows = [{"action": action, "where": i.where, "kind": i.kind, "namespace": i.namespace,
                 "name": i.name, "reason": i.reason} for action, items in groups for i in items]
        rows += [{"action": "error", "where": p.split(":", 1)[0], "kind": "", "namespace": "",
                  "name": "", "reason": p} for p in self.problems]
        return rows[:limit]

    def summary(self) -> str:
        c = self.counts()
        if self.dry_run:
            text = f"dry run: would remove {c['planned']}, keep {c['kept']}"
        else:
            text = f"removed {c['removed']}, kept {c['kept']}, failed {c['failed']}"
        return text + (f"; {c['problems']} source(s) not read" if c["problems"] else "")


@dataclass(frozen=True)
class RunState:
    final: bool | None  # None: unknown to the Prefect server and the store
    state: str


class RunStates:
    """Whether pipeline runs have finished: the Prefect server first, then the store.

    Looked up in batches and cached for one cleanup; the server not answering means the
    store alone decides (a run it does not know is then kept)."""

    def __init__(self) -> None:
        self.cache: dict[str, RunState] = {}
        self.notes: list[str] = []
        self._prefect_ok = True

    def lookup(self, run_ids: Iterable[str]) -> dict[str, RunState]:
        wanted = sorted({r for r in run_ids if r} - set(self.cache))
        for start in range(0, len(wanted), _BATCH):
            batch = wanted[start:start + _BATCH]
            found = self._from_prefect(batch)
            missing = [r for r in batch if r not in found]
            found.update(_from_store(missing))
            for rid in batch:
                self.cache[rid] = found.get(rid) or RunState(
                    None, "not known to this Prefect server or the ansflow store "
                          "(--run-id removes it anyway)")
        return self.cache

    def get(self, run_id: str) -> RunState:
        return self.lookup([run_id])[run_id]

    def why_kept(self, run_id: str, options: CleanupOptions) -> str | None:
        """None when what run ``run_id`` left behind may go (its run is over, or it is the
        run ``options.run_id`` names), else why it stays."""
        if options.run_id:
            return None if run_id == options.run_id else f"not of run {options.run_id}"
        state = self.get(run_id)
        if state.final is None:
            return f"run {clean_text(run_id, 64)} is {state.state}"
        if not state.final:
            return (f"run {clean_text(run_id, 64)} is still running "
                    f"({clean_text(state.state, 40)})")
        return None

    def _from_prefect(self, run_ids: list[str]) -> dict[str, RunState]:
        ids = []
        for rid in run_ids:
            try:
                ids.append(uuid.UUID(rid))
            except ValueError:
                continue
        if not ids or not self._prefect_ok:
            return {}
        from prefect.client.orchestration import get_client  # noqa: PLC0415
        from prefect.client.schemas.filters import (  # noqa: PLC0415
            FlowRunFilter,
            FlowRunFilterId,
        )

        try:
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=len(ids))
        except Exception as exc:  # noqa: BLE001 - httpx / server errors: the store decides
            self._prefect_ok = False
            self.notes.append(f"the Prefect server did not answer ({str(exc)[:200]}); run "
                              "states come from the ansflow store only")
            return {}
        out = {}
        for run in runs:
            state = run.state
            name = state.name if state is not None else "no state"
            out[str(run.id)] = RunState(bool(state is not None and state.is_final()), name)
        return out


def _from_store(run_ids: list[str]) -> dict[str, RunState]:
    if not run_ids:
        return {}
    from ansflow.store import Store  # noqa: PLC0415

    store = Store()
    try:
        return {rid: RunState(finished is not None and state != "running", f"{state} (store)")
                for rid, state, finished in store.run_states(run_ids)}
    finally:
        store.close()


def plan(options: CleanupOptions) -> CleanupReport:
    """What a cleanup would remove and what it keeps (and why); deletes nothing.

    A cluster or engine that cannot be read is a problem of the report, never an error:
    the other sources are planned all the same."""
    if options.keep_builds < 0:
        raise AnsflowError(f"keep_builds must be 0 or more, got {options.keep_builds}")
    report = CleanupReport(dry_run=options.dry_run)
    states = RunStates()
    if options.clusters:
        from ansflow.upkeep.cleanup_kube import plan_cluster  # noqa: PLC0415

        for name in options.clusters:
            plan_cluster(name, options, states, report)
    if options.docker:
        from ansflow.upkeep.cleanup_docker import plan_docker  # noqa: PLC0415

        plan_docker(options, states, report)
    if options.workspaces:
        from ansflow.upkeep.cleanup_workspaces import plan_workspaces  # noqa: PLC0415

        plan_workspaces(options, report)
    if options.run_retention_days is not None and not options.run_id:
        _plan_records(options, report)
    report.problems.extend(states.notes)
    report.states = states
    return report


def execute(report: CleanupReport, options: CleanupOptions) -> CleanupReport:
    """Delete what ``report`` plans (each re-checked just before); a dry run does nothing."""
    if report.dry_run:
        return report
    by_where: dict[str, list[Item]] = {}
    for item in report.remove:
        by_where.setdefault(item.where, []).append(item)
    for where, items in by_where.items():
        if where.startswith("cluster "):
            from ansflow.upkeep.cleanup_kube import delete_items  # noqa: PLC0415

            delete_items(where[len("cluster "):], items, options, report, report.states)
        elif where == "docker":
            from ansflow.upkeep.cleanup_docker import delete_items as docker_delete  # noqa

            docker_delete(items, options, report, report.states)
        elif where == "store":
            _delete_records(items, report)
        elif where == "workspaces":
            from ansflow.upkeep.cleanup_workspaces import delete_workspaces  # noqa: PLC0415

            delete_workspaces(items, options, report)
    return report


def cleanup(options: CleanupOptions) -> CleanupReport:
    """Plan, then (unless a dry run) delete: the whole cleanup."""
    return execute(plan(options), options)


def retention_cutoff(options: CleanupOptions) -> datetime | None:
    if options.run_retention_days is None:
        return None
    if options.run_retention_days < 0:
        raise AnsflowError("run_retention_days must be 0 or more, got "
                           f"{options.run_retention_days}")
    return options.now - timedelta(days=options.run_retention_days)


def _plan_records(options: CleanupOptions, report: CleanupReport) -> None:
    from ansflow.store import Store, StoreError  # noqa: PLC0415

    cutoff = retention_cutoff(options)
    assert cutoff is not None
    try:
        store = Store()
        try:
            count = store.count_runs_before(cutoff)
        finally:
            store.close()
    except StoreError as exc:
        report.problems.append(f"store: {exc}")
        return
    when = cutoff.strftime("%Y-%m-%d %H:%M UTC")
    if count:
        report.remove.append(Item("store", "RunRecords", f"{count} run record(s)",
                                  reason=f"finished before {when}",
                                  key={"cutoff": cutoff.isoformat(), "count": count}))
    if inventory_hook() is not None:
        report.remove.append(Item("store", "InventoryRecords", "removed-object records",
                                  reason=f"removed from their cluster before {when}",
                                  key={"cutoff": cutoff.isoformat(), "inventory": True}))


def inventory_hook() -> Any:
    """``ansflow.upkeep.inventory.purge_removed`` when that module is installed, else None."""
    try:
        from ansflow.upkeep import inventory  # type: ignore[attr-defined]  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(inventory, "purge_removed", None)


def purge_removed_inventory(older_than: datetime) -> int | None:
    """The hook for the inventory's removed-object records: calls
    ``ansflow.upkeep.inventory.purge_removed(older_than)`` when that module is installed;
    None when it is not (nothing to purge)."""
    purge = inventory_hook()
    return None if purge is None else purge(older_than)


def _delete_records(items: list[Item], report: CleanupReport) -> None:
    from ansflow.store import Store, StoreError  # noqa: PLC0415

    for item in items:
        cutoff = datetime.fromisoformat(item.key["cutoff"])
        try:
            if item.key.get("inventory"):
                purged = purge_removed_inventory(cutoff)
                if purged is None:
                    continue  # no inventory module: nothing was there to remove
                item.name = f"{purged} removed-object record(s)"
            else:
                store = Store()
                try:
                    item.name = f"{store.purge_runs_before(cutoff)} run record(s)"
                finally:
                    store.close()
        except (StoreError, AnsflowError) as exc:
            item.reason = str(exc)
            report.failed.append(item)
            continue
        report.removed.append(item)
