"""Host paths a step may touch: inside its workspace, or under a root the worker allows.

A pipeline's file paths (docker_build ``context`` / ``dockerfile``, docker_run ``volumes``,
script ``file``, ``working_dir``, k8s_deploy ``manifest_path``, helm chart paths and values
files) are resolved against the workspace with every symlink followed; the result must lie
inside the workspace, or inside one of the host paths the worker's operator lists in
``ANSFLOW_ALLOWED_HOST_PATHS`` (separated by ``:`` or ``,``). A run form, a step's output or
the pipeline file cannot widen that list. Errors name the path, never a file's content.
"""

from __future__ import annotations

import os

from ansflow.engines import hostpaths
from ansflow.engines.hostpaths import (  # noqa: F401 - the static checks use them from here
    ALLOWED_HOST_PATHS_ENV,
    PathRefused,
    allowed_host_paths,
    inside,
    lexically_outside,
)
from ansflow.errors import step_error


def confine(path: str, workspace: str, what: str) -> str:
    """``path`` resolved against ``workspace`` (symlinks followed), refused when it lies
    outside the workspace and outside every allowed host path
    (:func:`ansflow.engines.hostpaths.confine`).

    Returns:
        The resolved absolute path.

    Raises:
        StepFailed: the path is outside (the message names the path and how to allow it),
            has a NUL byte, is too long or cannot be resolved.
    """
    try:
        return hostpaths.confine(path, workspace, what)
    except PathRefused as exc:
        raise step_error(exc) from None


def check_state_outside(workspace: str) -> None:
    """Refuse a workspace that holds ansflow's own state (ANSFLOW_HOME: the served map, the
    state key, the SQLite store, the dev clusters): a step, or a container given the
    workspace, could rewrite it.

    Raises:
        UsageError: ANSFLOW_HOME lies inside ``workspace``.
    """
    from ansflow.errors import UsageError  # noqa: PLC0415
    from ansflow.store import ansflow_home  # noqa: PLC0415

    home = os.path.realpath(ansflow_home())
    root = os.path.realpath(workspace)
    if inside(home, root):
        raise UsageError(f"ansflow's state directory (ANSFLOW_HOME, {home}) is inside the "
                         f"pipeline's workspace {root}, where steps could rewrite it; set "
                         "ANSFLOW_HOME to a directory outside every workspace")


PIPELINES_ROOT_ENV = "ANSFLOW_PIPELINES_ROOT"


def confine_pipeline_file(pipeline_file: str) -> str:
    """A deployment run's ``pipeline_file`` (a run-form value), resolved under the pipelines
    root: ``ANSFLOW_PIPELINES_ROOT`` (set at deploy time in the work pool's job variables,
    or on the worker), else the current directory (where the deployment's pull step moved).

    Raises:
        UsageError: the path leaves the root (absolute elsewhere, ``..``, a link out), or is
            not a pipeline file (*.yaml / *.yml).
    """
    from ansflow.errors import UsageError  # noqa: PLC0415

    root = os.path.realpath(os.environ.get(PIPELINES_ROOT_ENV) or os.getcwd())
    shown = str(pipeline_file)[:200]
    if not isinstance(pipeline_file, str) or not pipeline_file.strip() or "\0" in pipeline_file:
        raise UsageError(f"pipeline_file {shown!r} is not a file name")
    resolved = os.path.realpath(os.path.join(root, pipeline_file))
    if not inside(resolved, root) or resolved == root:
        raise UsageError(f"pipeline_file {shown!r} is outside the pipelines root {root} this "
                         "deployment was made with; refused (name a file under it, relative "
                         "to it)")
    if not resolved.endswith((".yaml", ".yml")):
        raise UsageError(f"pipeline_file {shown!r} is not a pipeline file (*.yaml, *.yml); "
                         "refused")
    return resolved
