"""Host paths a step may touch: inside its workspace, or under a root the worker allows.

A pipeline's file paths (docker_build ``context`` / ``dockerfile``, docker_run ``volumes``,
script ``file``, ``working_dir``, k8s_deploy ``manifest_path``, helm chart paths and values
files) are resolved against the workspace with every symlink followed; the result must lie
inside the workspace, or inside one of the host paths the worker's operator lists in
``ANSFLOW_ALLOWED_HOST_PATHS`` (separated by ``:`` or ``,``). A run form, a step's output or
the pipeline file cannot widen that list. Errors name the path, never a file's content.
"""

from __future__ import annotations

import errno
import os
import re

from ansflow.errors import StepFailed

ALLOWED_HOST_PATHS_ENV = "ANSFLOW_ALLOWED_HOST_PATHS"


def allowed_host_paths() -> list[str]:
    """The worker's extra roots, resolved (relative entries are ignored)."""
    raw = os.environ.get(ALLOWED_HOST_PATHS_ENV, "")
    return [os.path.realpath(p) for p in re.split(r"[:,]", raw) if p.strip().startswith("/")]


def _shown(value: str, limit: int = 80) -> str:
    """``value`` as an error repeats it: quoted, cut to ``limit`` characters."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def _check_length(path: str, resolved: str, what: str) -> None:
    """Refuse a path the system cannot look up (longer than PATH_MAX, or a part longer than
    NAME_MAX): realpath lets it through, and every later stat or open would fail with
    ENAMETOOLONG, far from where the path was given."""
    try:
        path_max = os.pathconf("/", "PC_PATH_MAX")
        name_max = os.pathconf("/", "PC_NAME_MAX")
    except (OSError, ValueError):
        path_max, name_max = 4096, 255
    longest = max((len(os.fsencode(part)) for part in resolved.split("/")), default=0)
    if len(os.fsencode(resolved)) >= path_max or longest > name_max:
        raise StepFailed(f"{what} {_shown(path)} cannot be used: the path is too long "
                         f"({len(path)} characters; at most {path_max} bytes in all and "
                         f"{name_max} per name)")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def lexically_outside(path: str, workspace: str | None = None) -> bool:
    """True when ``path`` (relative to ``workspace``) names something outside it on its
    face: climbing out with ``..``, or absolute and not under the workspace (any absolute
    path when the workspace is not known). Used for static checks at validation time; links
    are followed at run time (``confine``)."""
    if os.path.isabs(path):
        if workspace is None:
            return True
        return not _inside(os.path.normpath(path), os.path.normpath(workspace))
    return os.path.normpath(path).split(os.sep)[0] == ".."


def confine(path: str, workspace: str, what: str) -> str:
    """``path`` resolved against ``workspace`` (symlinks followed), refused when it lies
    outside the workspace and outside every allowed host path.

    Returns:
        The resolved absolute path.

    Raises:
        StepFailed: the path is outside (the message names the path and how to allow it).
    """
    if "\0" in path:
        raise StepFailed(f"{what} {_shown(path)} contains a NUL byte")
    root = os.path.realpath(workspace)
    try:
        resolved = os.path.realpath(os.path.join(root, path))
    except OSError as exc:  # resolving stats each part: ENAMETOOLONG, ELOOP, EACCES, ...
        if exc.errno == errno.ENAMETOOLONG:
            raise StepFailed(f"{what} {_shown(path)} cannot be used: the path is too long "
                             f"({len(path)} characters)") from None
        raise StepFailed(f"{what} {_shown(path)} cannot be resolved: "
                         f"{exc.strerror or exc}") from None
    _check_length(path, resolved, what)
    if _inside(resolved, root):
        return resolved
    if any(_inside(resolved, allowed) for allowed in allowed_host_paths()):
        return resolved
    shown = _shown(path) if path == resolved else \
        f"{_shown(path)} (resolved: {resolved})"  # at most PATH_MAX: checked above
    raise StepFailed(
        f"{what} {shown} is outside the workspace; steps reach only files under "
        f"{root} unless the worker's operator allows a host path in "
        f"{ALLOWED_HOST_PATHS_ENV}")


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
    if _inside(home, root):
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
    if not _inside(resolved, root) or resolved == root:
        raise UsageError(f"pipeline_file {shown!r} is outside the pipelines root {root} this "
                         "deployment was made with; refused (name a file under it, relative "
                         "to it)")
    if not resolved.endswith((".yaml", ".yml")):
        raise UsageError(f"pipeline_file {shown!r} is not a pipeline file (*.yaml, *.yml); "
                         "refused")
    return resolved
