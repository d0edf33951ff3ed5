"""The pipeline run's workspace: made before the first step, ended after the last.

Where a new workspace's files come from is decided in :func:`filler_for`: today the
pipeline's folder, copied (ansflow.workspace_copy). A pipeline source (a git checkout)
plugs in there: a filler returns facts (``{"git": {...}}``) that are kept with the workspace,
so a retry reusing it still has them.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from ansflow.errors import AnsflowError
from ansflow.plan import Plan
from ansflow.workspace_copy import CopyError, fill_from_folder
from ansflow.workspaces import (
    Filler,
    RunWorkspace,
    WorkspaceError,
    check_root_outside,
    finish_workspace,
    in_place,
    keep_seconds,
    open_workspace,
    workspace_mode,
    workspaces_root,
)

_RunLogger = logging.Logger | logging.LoggerAdapter
# Past these, the run's log suggests a .ansflowignore.
LARGE_FILES = 50_000
LARGE_BYTES = 1 << 30


def folder_filler(folder: str, logger: _RunLogger) -> Filler:
    """Copy the pipeline's folder (see ansflow.workspace_copy for what is copied)."""

    def fill(dest: Path) -> dict[str, Any]:
        try:
            report = fill_from_folder(folder, str(dest))
        except CopyError as exc:
            raise WorkspaceError(str(exc)) from None
        logger.info(f"workspace filled from {folder}: {report.summary()}")
        if report.files > LARGE_FILES or report.bytes > LARGE_BYTES:
            logger.warning(f"every run copies {report.files} files ({report.bytes >> 20} MiB) "
                           f"from {folder}; list what the steps do not need (.git/, build "
                           "output, caches) in a .ansflowignore there (docs/workspaces.md)")
        return {"copied_from": folder, "copy": report.as_dict()}

    return fill


def filler_for(plan: Plan, logger: _RunLogger) -> Filler | None:
    """How a new workspace of this run is filled; None: the run works in place (the
    pipeline's folder itself, ANSFLOW_WORKSPACE_MODE=in-place)."""
    if plan.git_source is not None:  # a checkout, whatever the mode
        from ansflow.flows.git_source import git_filler  # noqa: PLC0415

        return git_filler(plan, logger)
    if workspace_mode() == "in-place":
        return None
    return folder_filler(plan.workspace, logger)


def open_run_workspace(plan: Plan, run_id: str, logger: _RunLogger) -> RunWorkspace:
    """The run's workspace, reused when a kept one of an earlier attempt is here.

    Raises:
        AnsflowError: it cannot be made (the run fails before any step).
    """
    fill = filler_for(plan, logger)
    keep_seconds()  # a bad ANSFLOW_WORKSPACE_KEEP fails the run now, not after its steps
    if fill is None:
        return in_place(run_id, plan.workspace)
    root = workspaces_root()
    check_root_outside(root, plan.workspace)
    ws = open_workspace(run_id, plan.name, fill, root=root)
    if ws.reused:
        logger.info(f"workspace {ws.path}: the kept workspace of this run's earlier attempt, "
                    "reused as it was left")
    return ws


def with_workspace(plan: Plan, ws: RunWorkspace) -> Plan:
    """The plan as the run's steps see it: working in ``ws``."""
    return plan if ws.in_place else replace(plan, workspace=str(ws.path))


def close_run_workspace(ws: RunWorkspace, state: str, logger: _RunLogger) -> None:
    """Remove the workspace after a success, keep it after anything else (logged)."""
    try:
        logger.info(finish_workspace(ws, state))
    except AnsflowError as exc:
        logger.warning(f"{exc}; the cleanup removes what is left")
