"""Kubeconfig `exec:` credential plugins: a program a saved cluster block names, run wherever
the block is loaded (a pipeline step, the upkeep worker's health check and sync, `ansflow
cluster add`). Whoever can save or change a cluster block on the Prefect server would run
code on every worker that loads it, so ansflow runs a plugin only when the operator of that
worker allows its command: ``ANSFLOW_ALLOW_KUBECONFIG_EXEC``, a comma-separated list of
commands (bare names, found on the worker's own PATH, or absolute paths); ``*`` allows any
command. Unset or empty: a kubeconfig with an ``exec:`` user is refused before anything runs.

An allowed plugin's ``args`` and ``env`` still come from the block: ``env`` may not set the
variables that choose which program or library runs (PATH, LD_*, ...), and the command is
resolved here, on the worker's PATH, to the absolute path that runs.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from ansflow.engines.errors import EngineError

EXEC_ENV = "ANSFLOW_ALLOW_KUBECONFIG_EXEC"
# Variables that pick the program, its libraries or its interpreter's start-up code.
_REFUSED_ENV = ("PATH", "IFS", "BASH_ENV", "ENV", "SHELLOPTS", "PYTHONPATH", "PYTHONSTARTUP",
                "PYTHONHOME", "PYTHONUSERBASE", "NODE_OPTIONS", "NODE_PATH", "PERL5LIB",
                "PERL5OPT", "RUBYOPT", "RUBYLIB", "GCONV_PATH", "JAVA_TOOL_OPTIONS",
                "_JAVA_OPTIONS", "GIT_SSH_COMMAND", "HOME")
_REFUSED_PREFIXES = ("LD_", "DYLD_")


def allowed_commands() -> list[str]:
    """The commands of ``ANSFLOW_ALLOW_KUBECONFIG_EXEC`` (empty: no plugin may run)."""
    raw = os.environ.get(EXEC_ENV, "")
    return [c.strip() for c in raw.split(",") if c.strip()]


def _refused(user: str, why: str) -> EngineError:
    return EngineError(f"kubeconfig user {user!r}: exec credential plugin refused: {why}",
                      hint=f"the worker's operator allows plugin commands in {EXEC_ENV} "
                           "(comma-separated names or absolute paths; `*` for any), or save "
                           "the cluster with a token or client certificate instead")


def _resolve(user: str, command: Any, allowed: list[str]) -> str:
    if not isinstance(command, str) or not command.strip():
        raise _refused(user, "no command")
    if not allowed:
        raise _refused(user, f"it would run {command!r} and {EXEC_ENV} is not set")
    if "/" in command and not os.path.isabs(command):
        raise _refused(user, f"the command {command!r} is a relative path")
    if "*" not in allowed and command not in allowed:
        raise _refused(user, f"{command!r} is not one of the allowed commands "
                             f"({', '.join(allowed)})")
    found = command if os.path.isabs(command) else shutil.which(command)
    if not found or not os.access(found, os.X_OK):
        raise _refused(user, f"the command {command!r} is not found on this worker")
    return os.path.abspath(found)


def _check_env(user: str, env: Any) -> None:
    if env is None:
        return
    if not isinstance(env, list):
        raise _refused(user, "its env is not a list")
    for item in env:
        name = str(item.get("name", "")) if isinstance(item, dict) else ""
        if name in _REFUSED_ENV or name.startswith(_REFUSED_PREFIXES):
            raise _refused(user, f"its env sets {name}, which chooses what program runs")


def check_exec_plugins(doc: dict) -> dict:
    """``doc`` (a parsed kubeconfig) with every ``exec:`` user's command resolved to the
    absolute path the worker runs, when the operator allows it.

    Raises:
        EngineError: a user with an ``exec:`` plugin this worker does not allow (nothing ran).
    """
    users = doc.get("users")
    allowed = allowed_commands()
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict) or user.get("exec") is None:
            continue
        name = str(entry.get("name"))
        plugin = user["exec"]
        if not isinstance(plugin, dict):
            raise _refused(name, "its exec is not a mapping")
        _check_env(name, plugin.get("env"))
        plugin["command"] = _resolve(name, plugin.get("command"), allowed)
    return doc
