"""The environment a step's process gets: a clean base, never the worker's whole environment.

A worker's environment holds its credentials (PREFECT_API_KEY, database URLs, DOCKER_HOST,
cloud keys...). Like CI runners, ansflow gives a step only

* the base variables below, taken from the worker when set (a command still finds its
  tools and its home directory),
* the variables ansflow sets itself (ANSFLOW_OUTPUT, ANSFLOW_PIPELINE, ..., CI),
* the worker variables named in the pipeline's ``env_passthrough`` or in the worker's
  ``ANSFLOW_ENV_PASSTHROUGH`` (names or globs such as ``LC_*``, comma or space separated),
* what the pipeline declares in ``env:`` (pipeline, stage and step level; later wins).

Containers (docker_run, ``runs_on: docker``) and k8s_exec get only the declared variables
and ansflow's own, never the worker's. ``{{ env.X }}`` in a template sees the same mapping
as a local step's process.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping

# Taken from the worker when set. LC_* are matched as a glob.
BASE_NAMES = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_*", "TZ", "TMPDIR", "USER", "LOGNAME",
              "SHELL", "TERM")
# Set by ansflow for every command / script step (ANSFLOW_OUTPUT is per step).
ANSFLOW_NAMES = ("ANSFLOW_OUTPUT", "ANSFLOW_PIPELINE", "ANSFLOW_BUILD_NUMBER", "ANSFLOW_RUN_ID",
                 "ANSFLOW_STEP_ID", "ANSFLOW_WORKSPACE", "CI")
WORKER_PASSTHROUGH_ENV = "ANSFLOW_ENV_PASSTHROUGH"
_PATTERN = re.compile(r"^[A-Za-z_*][A-Za-z0-9_*]*$")
# What reaches the Prefect API as the worker: never a step's, whatever a pass-through names
# (a glob such as PREFECT_* included). With it a step could answer its own run's approval
# (docs/approval.md).
NEVER_INHERITED = ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING",
                   "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_PROFILES_PATH", "PREFECT_HOME",
                   "PREFECT_PROFILE", "PREFECT_API_DATABASE_CONNECTION_URL",
                   "PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_SSL_CERT_FILE")


def ansflow_env(*, pipeline: str, build_number: int, run_id: str, step_id: str,
                workspace: str | None = None, output: str | None = None) -> dict[str, str]:
    """The variables ansflow sets for a step's process (:data:`ANSFLOW_NAMES`).

    ``workspace`` and ``output`` are where the step's process sees the run's workspace and
    its outputs file (a path in a container or pod is not the worker's); left out when None
    (a remote script sets them from the host's own home).
    """
    env = {"ANSFLOW_OUTPUT": output, "ANSFLOW_PIPELINE": pipeline,
           "ANSFLOW_BUILD_NUMBER": str(build_number), "ANSFLOW_RUN_ID": run_id,
           "ANSFLOW_STEP_ID": step_id, "ANSFLOW_WORKSPACE": workspace, "CI": "true"}
    return {k: v for k, v in env.items() if v is not None}


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid pass-through entry, or None."""
    if not isinstance(pattern, str) or not _PATTERN.match(pattern):
        return (f"{pattern!r} is not a variable name or glob (letters, digits, _ and *, "
                "e.g. HTTP_PROXY or LC_*)")
    if not pattern.strip("*"):
        return (f"{pattern!r} would pass the worker's whole environment (with its "
                "credentials) to every step; name the variables")
    if pattern in NEVER_INHERITED:
        return (f"{pattern!r} is how the worker reaches the Prefect API: never given to a step "
                "(a step could answer its own run's approval)")
    return None


def worker_passthrough(environ: Mapping[str, str] | None = None) -> list[str]:
    """The worker operator's pass-through list (``ANSFLOW_ENV_PASSTHROUGH``); bad entries
    are ignored."""
    raw = (os.environ if environ is None else environ).get(WORKER_PASSTHROUGH_ENV, "")
    return [p for p in re.split(r"[\s,]+", raw) if p and check_pattern(p) is None]


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` matches one of the names or globs (case-sensitive)."""
    return _matcher(tuple(patterns))(name) is not None


@functools.lru_cache(maxsize=64)
def _matcher(patterns: tuple[str, ...]) -> Callable[[str], re.Match | None]:
    # One regex for all the globs (fnmatchcase per pattern and variable cost ~2 ms a step).
    if not patterns:
        return lambda _name: None
    return re.compile("|".join(fnmatch.translate(p) for p in patterns)).match


def allowed_names(passthrough: Iterable[str] = ()) -> list[str]:
    """Every name or glob a step may inherit from the worker (base + pass-through)."""
    return [*BASE_NAMES, *passthrough, *worker_passthrough()]


def inherited_env(passthrough: Iterable[str] = (),
                  environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker variables a local step inherits: the base list plus the pass-through."""
    source = os.environ if environ is None else environ
    match = _matcher((*BASE_NAMES, *passthrough, *worker_passthrough(source)))
    return {k: v for k, v in source.items()
            if match(k) is not None and k not in NEVER_INHERITED}


def reachable(name: str, passthrough: Iterable[str], declared: Iterable[str]) -> bool:
    """Can ``{{ env.<name> }}`` ever resolve for a step with these declarations?"""
    return (name in set(declared) or name in ANSFLOW_NAMES
            or (name not in NEVER_INHERITED and matches(name, allowed_names(passthrough))))
