"""The workspaces side of cleanup: run workspaces this machine kept or a dead run left.

Each run's workspace lives under the workspaces root of the machine that ran it
(ansflow.workspaces). Removed:

- a workspace kept after a failed or cancelled run, once its keep time (kept_until, set from
  ANSFLOW_WORKSPACE_KEEP when the run ended) has passed;
- a workspace whose run's process died (a crashed worker, a SIGKILL): meta.json says it is
  running but no process holds its lock; likewise a half-filled one without meta.json;
- with ``run_id``: that run's workspace, whatever its keep time.

Never a workspace whose lock a live process holds (its run is going on, or a retry took it
since the plan); each removal takes that lock itself and re-reads meta.json first. Nothing
outside the root is touched: a link in the root is unlinked, never followed.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from ansflow.errors import AnsflowError
from ansflow.upkeep.cleanup import CleanupOptions, CleanupReport, Item
from ansflow.workspaces import (
    WorkspaceEntry,
    WorkspaceError,
    held_for_removal,
    list_workspaces,
    remove_run_home,
    workspaces_root,
)

WHERE = "workspaces"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def judge(entry: WorkspaceEntry, options: CleanupOptions, now: float) -> tuple[bool, str]:
    """(remove, why) for one entry of the root (pure, given what was read)."""
    if entry.is_link:
        return True, "a link in the workspaces root, not a workspace: unlinked, not followed"
    meta = entry.meta or {}
    if entry.held:
        return False, f"in use: its run is going on here (pid {meta.get('pid', '?')})"
    if options.run_id:
        if entry.run_id != options.run_id:
            return False, f"not of run {options.run_id}"
        return True, "the run asked for"
    if options.pipelines and meta.get("pipeline") not in options.pipelines:
        return False, "another pipeline's"
    if entry.meta is None:
        return True, "left half-made by a run whose process ended"
    if meta.get("state") == "kept":
        until = meta.get("kept_until")
        if not isinstance(until, (int, float)):
            return True, "kept without a keep time"
        if until > now:
            return False, f"kept after a {meta.get('ended_state', 'failed')} run until " \
                          f"{_when(until)} (for debugging and ansflow retry)"
        return True, f"kept after a {meta.get('ended_state', 'failed')} run until " \
                     f"{_when(until)}: expired"
    return True, (f"its run's process ({meta.get('host', '?')} pid {meta.get('pid', '?')}) "
                  "ended without finishing the run (a crashed worker)")


def plan_workspaces(options: CleanupOptions, report: CleanupReport) -> None:
    """Add this machine's run workspaces to the plan; a root that cannot be read is a
    problem of the report."""
    now = options.now.timestamp()
    try:
        root = workspaces_root()
        entries = list(list_workspaces(root))
    except WorkspaceError as exc:
        report.problems.append(f"{WHERE}: {exc}")
        return
    for entry in entries:
        remove, why = judge(entry, options, now)
        item = Item(WHERE, "Workspace", entry.run_id, reason=why,
                    key={"home": str(entry.home), "link": entry.is_link,
                         "state": (entry.meta or {}).get("state"),
                         "kept_until": (entry.meta or {}).get("kept_until")})
        (report.remove if remove else report.kept).append(item)


def delete_workspaces(items: list[Item], options: CleanupOptions,
                      report: CleanupReport) -> None:
    """Remove what the plan names, each re-checked under its lock just before."""
    from pathlib import Path  # noqa: PLC0415

    for item in items:
        home = Path(item.key["home"])
        try:
            if item.key.get("link"):
                remove_run_home(home)  # unlinks the link itself
            else:
                with held_for_removal(home) as meta:
                    why = _changed(item, meta, options)
                    if why:
                        item.reason = why
                        report.kept.append(item)
                        continue
                    remove_run_home(home)
        except FileNotFoundError:
            pass  # already gone: what the plan wanted
        except WorkspaceError as exc:
            if "in use" in str(exc):
                item.reason = "in use: a run took it since the plan"
                report.kept.append(item)
                continue
            if "is gone" in str(exc):
                report.removed.append(item)  # removed meanwhile: what the plan wanted
                continue
            item.reason = str(exc)
            report.failed.append(item)
            continue
        except (OSError, AnsflowError) as exc:
            item.reason = str(exc)
            report.failed.append(item)
            continue
        report.removed.append(item)


def _changed(item: Item, meta: dict[str, Any] | None, options: CleanupOptions) -> str | None:
    """Why the workspace must stay after all (it changed since the plan), or None."""
    if options.run_id:
        return None
    planned = item.key.get("state")
    state = (meta or {}).get("state")
    if state != planned:
        return f"changed since the plan (now {state or 'without meta.json'})"
    until = (meta or {}).get("kept_until")
    if state == "kept" and isinstance(until, (int, float)) and until > time.time():
        return f"kept until {_when(until)} (its keep time changed since the plan)"
    return None
