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


# ---- running a plugin ---------------------------------------------------------------------
# kubernetes' own ExecProvider waits on the plugin forever, keeps any amount of its output,
# and its loader only logs a failure (the requests then go out without credentials, and the
# API server's 401 says nothing of why). ansflow runs the plugin itself: bounded in time and
# output, and a failure is an error naming the user and the cause.

EXEC_TIMEOUT_ENV = "ANSFLOW_KUBECONFIG_EXEC_TIMEOUT"
DEFAULT_EXEC_TIMEOUT = 60.0
MAX_PLUGIN_OUTPUT = 1024 * 1024
_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


def _timeout() -> float:
    try:
        value = float(os.environ.get(EXEC_TIMEOUT_ENV, "") or DEFAULT_EXEC_TIMEOUT)
    except ValueError:
        return DEFAULT_EXEC_TIMEOUT
    return min(max(value, 0.1), 3600.0) if value == value else DEFAULT_EXEC_TIMEOUT


def _failed(user: str, why: str) -> EngineError:
    return EngineError(f"kubeconfig user {user!r}: exec credential plugin {why}",
                       hint="run the plugin by hand on this worker to see why (its login "
                            "may have expired, or its cloud CLI is missing)")


def run_exec_plugin(user: str, plugin: dict, cluster: dict | None = None) -> dict:
    """Run an ``exec:`` plugin (its command already resolved by :func:`check_exec_plugins`)
    as kubectl does, never interactively: the ``status`` of the ExecCredential it prints.

    Args:
        user: the kubeconfig user's name (for the messages).
        plugin: the user's ``exec`` mapping (command, args, env, apiVersion...).
        cluster: the cluster, passed in KUBERNETES_EXEC_INFO when ``provideClusterInfo``.

    Raises:
        EngineError: the plugin needs a terminal, failed, ran past its time, or printed no
            ExecCredential with a token or a client certificate and key.
    """
    import json  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    api_version = plugin.get("apiVersion")
    if api_version not in _API_VERSIONS:
        raise _failed(user, f"has apiVersion {str(api_version)[:80]!r}: use one of "
                            f"{', '.join(_API_VERSIONS)}")
    if plugin.get("interactiveMode") == "Always":
        raise _failed(user, "needs a terminal (interactiveMode: Always), which a worker "
                            "never has")
    _check_env(user, plugin.get("env"))
    command = plugin.get("command")
    args = plugin.get("args") or []
    if not isinstance(command, str) or not os.path.isabs(command):
        raise _failed(user, "command was not resolved on this worker")
    if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
        raise _failed(user, "args is not a list of strings")
    env = dict(os.environ)
    for item in plugin.get("env") or []:
        if not isinstance(item, dict) or "name" not in item:
            raise _failed(user, "env is not a list of name/value pairs")
        env[str(item["name"])] = str(item.get("value", ""))
    info: dict = {"apiVersion": api_version, "kind": "ExecCredential",
                  "spec": {"interactive": False}}
    if plugin.get("provideClusterInfo") and isinstance(cluster, dict):
        info["spec"]["cluster"] = cluster
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    limit = _timeout()
    try:
        proc = subprocess.run([command, *map(str, args)], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        raise _failed(user, f"{command} ran past {limit:g} s ({EXEC_TIMEOUT_ENV})") from None
    except OSError as exc:
        raise _failed(user, f"{command} could not start: {exc.strerror}") from None
    if proc.returncode != 0:
        last = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise _failed(user, f"{command} exited with {proc.returncode}"
                            + (f": {last[0][:300]}" if last[0] else ""))
    if len(proc.stdout) > MAX_PLUGIN_OUTPUT:
        raise _failed(user, f"{command} printed more than {MAX_PLUGIN_OUTPUT // 1024} KiB")
    return _credential_status(user, command, proc.stdout, api_version)


def _credential_status(user: str, command: str, out: bytes, api_version: str) -> dict:
    import json  # noqa: PLC0415

    from kubernetes.config.dateutil import parse_rfc3339  # noqa: PLC0415

    try:
        data = json.loads(out)
    except ValueError:
        raise _failed(user, f"{command} printed no JSON ExecCredential") from None
    if not isinstance(data, dict) or data.get("kind") != "ExecCredential":
        raise _failed(user, f"{command} printed no ExecCredential")
    if data.get("apiVersion") != api_version:
        raise _failed(user, f"{command} answered apiVersion "
                            f"{str(data.get('apiVersion'))[:80]!r}, not {api_version}")
    status = data.get("status")
    if not isinstance(status, dict):
        raise _failed(user, f"{command} printed an ExecCredential without status")
    token = status.get("token")
    has_cert = all(isinstance(status.get(k), str) and status.get(k)
                   for k in ("clientCertificateData", "clientKeyData"))
    if not (isinstance(token, str) and token.strip()) and not has_cert:
        raise _failed(user, f"{command} gave neither a token nor a client certificate and key")
    if isinstance(token, str) and any(c in token for c in "\r\n\x00"):
        raise _failed(user, f"{command} gave a token with a line break or NUL")
    expiry = status.get("expirationTimestamp")
    if expiry is not None:
        try:
            parse_rfc3339(expiry)
        except (TypeError, ValueError, AttributeError):
            raise _failed(user, f"{command} gave an expirationTimestamp that is no RFC 3339 "
                                "time") from None
    return status


def exec_loader_class():
    """kubernetes' KubeConfigLoader, with ``exec:`` plugins run by :func:`run_exec_plugin`
    (on loading, and again by the client's refresh hook once the token's
    expirationTimestamp is less than kubernetes' 5 minutes away)."""
    from kubernetes.config.dateutil import parse_rfc3339  # noqa: PLC0415
    from kubernetes.config.kube_config import FileOrData, KubeConfigLoader  # noqa: PLC0415

    class ExecLoader(KubeConfigLoader):
        def _load_from_exec_plugin(self):  # noqa: ANN202 - kubernetes' hook
            if "exec" not in self._user:
                return None
            plugin = self._user["exec"].value
            name = str(self._current_context["context"].safe_get("user"))
            status = run_exec_plugin(name, plugin, self._cluster.value)
            self.__dict__.pop("expiry", None)
            if isinstance(status.get("token"), str) and status["token"].strip():
                self.token = f"Bearer {status['token'].strip()}"
            else:
                for attr, key in (("cert_file", "clientCertificateData"),
                                  ("key_file", "clientKeyData")):
                    setattr(self, attr, FileOrData(
                        status, None, data_key_name=key, base64_file_content=False,
                        temp_file_path=self._temp_file_path).as_file())
            if status.get("expirationTimestamp"):
                self.expiry = parse_rfc3339(status["expirationTimestamp"])
            return True

    return ExecLoader
