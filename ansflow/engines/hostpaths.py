"""Host paths an engine may touch for a step: inside its workspace, or under a root the
worker allows.

Paths (a build context, a volume's host side, a script file, a working directory, a manifest
or chart) are resolved against the workspace with every symlink followed; the result must lie
inside the workspace, or inside one of the host paths the worker's operator lists in
``ANSFLOW_ALLOWED_HOST_PATHS`` (separated by ``:`` or ``,``). Errors name the path, never a
file's content. ``ansflow.paths`` gives the step runtime the same check with step errors.
"""

from __future__ import annotations

import errno
import os
import re

from ansflow.engines.errors import EngineError


class PathRefused(EngineError):
    """A path outside the workspace and every allowed root, or one that cannot be used."""


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
        raise PathRefused(f"{what} {_shown(path)} cannot be used: the path is too long "
                         f"({len(path)} characters; at most {path_max} bytes in all and "
                         f"{name_max} per name)")


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def lexically_outside(path: str, workspace: str | None = None) -> bool:
    """True when ``path`` (relative to ``workspace``) names something outside it on its
    face: climbing out with ``..``, or absolute and not under the workspace (any absolute
    path when the workspace is not known). Used for static checks at validation time; links
    are followed at run time (``confine``)."""
    if os.path.isabs(path):
        if workspace is None:
            return True
        return not inside(os.path.normpath(path), os.path.normpath(workspace))
    return os.path.normpath(path).split(os.sep)[0] == ".."


def confine(path: str, workspace: str, what: str) -> str:
    """``path`` resolved against ``workspace`` (symlinks followed), refused when it lies
    outside the workspace and outside every allowed host path.

    Returns:
        The resolved absolute path.

    Raises:
        PathRefused: the path is outside (the message names the path and how to allow it).
    """
    if "\0" in path:
        raise PathRefused(f"{what} {_shown(path)} contains a NUL byte")
    root = os.path.realpath(workspace)
    try:
        resolved = os.path.realpath(os.path.join(root, path))
    except OSError as exc:  # resolving stats each part: ENAMETOOLONG, ELOOP, EACCES, ...
        if exc.errno == errno.ENAMETOOLONG:
            raise PathRefused(f"{what} {_shown(path)} cannot be used: the path is too long "
                             f"({len(path)} characters)") from None
        raise PathRefused(f"{what} {_shown(path)} cannot be resolved: "
                         f"{exc.strerror or exc}") from None
    _check_length(path, resolved, what)
    if inside(resolved, root):
        return resolved
    if any(inside(resolved, allowed) for allowed in allowed_host_paths()):
        return resolved
    shown = _shown(path) if path == resolved else \
        f"{_shown(path)} (resolved: {resolved})"  # at most PATH_MAX: checked above
    raise PathRefused(
        f"{what} {shown} is outside the workspace; steps reach only files under "
        f"{root} unless the worker's operator allows a host path in "
        f"{ALLOWED_HOST_PATHS_ENV}")
