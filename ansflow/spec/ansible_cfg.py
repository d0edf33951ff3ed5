"""What an ansible step's `ansible_cfg` may change: an allowlist of settings that neither load
code, read or write files outside the step, nor weaken how hosts are checked.

Everything else in ansible.cfg is ansflow's: host key checking (strict, from the SshHost
blocks), the ssh command line (`ssh_args`, `ssh_common_args`: `StrictHostKeyChecking=no`
or `UserKnownHostsFile` would undo the strict known_hosts file), plugin, role, collection
and module paths (code loaded from wherever a value points), callbacks, the vault password
file, fact caches and logs (files written outside the step), the connection plugin. A
denylist would miss whatever setting a later ansible-core adds; an allowlist cannot.

Keys are never templated (only values are rendered), so a refused key is found when the
pipeline is validated; a templated value is checked once rendered, when the step runs.
"""

from __future__ import annotations

import math
import re
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/+-]{1,255}$")
_BOOLS = {"true": "True", "yes": "True", "on": "True", "1": "True",
          "false": "False", "no": "False", "off": "False", "0": "False"}

BOOL, INT, SECONDS, NAME, INTERPRETER = "bool", "int", "seconds", "name", "interpreter"

# {section: {key: kind}}; a kind is one of the names above or a tuple of allowed words.
ALLOWED: dict[str, dict[str, Any]] = {
    "defaults": {
        "interpreter_python": INTERPRETER,
        "forks": INT,
        "timeout": INT,
        "gather_timeout": INT,
        "task_timeout": INT,
        "poll_interval": INT,
        "internal_poll_interval": SECONDS,
        "gathering": ("implicit", "explicit", "smart"),
        "any_errors_fatal": BOOL,
        "force_handlers": BOOL,
        "error_on_undefined_vars": BOOL,
        "duplicate_dict_key": ("warn", "error", "ignore"),
        "invalid_task_attribute_failed": BOOL,
        "private_role_vars": BOOL,
        "deprecation_warnings": BOOL,
        "system_warnings": BOOL,
        "localhost_warning": BOOL,
        "max_diff_size": INT,
        "no_log": BOOL,
        "no_target_syslog": BOOL,
        "remote_user": NAME,
        "remote_port": INT,
    },
    "ssh_connection": {
        "pipelining": BOOL,
        "retries": INT,
        "reconnection_retries": INT,
        "usetty": BOOL,
        "transfer_method": ("smart", "sftp", "scp", "piped"),
    },
    "persistent_connection": {
        "connect_timeout": INT,
        "command_timeout": INT,
    },
}

# Why the best-known refused settings are ansflow's (the others get the generic reason).
_WHY = {
    "host_key_checking": "ansflow checks host keys strictly, against the SshHost blocks' keys",
    "ssh_args": "the ssh options carry ansflow's strict host key checking",
    "ssh_common_args": "the ssh options carry ansflow's strict host key checking",
    "ssh_extra_args": "the ssh options carry ansflow's strict host key checking",
    "control_path_dir": "ansflow ends the step's ssh connections by their control path",
    "stdout_callback": "ansflow's callback gives the step's lines and recap",
    "vault_password_file": "give `vault_password` (a Secret block) instead",
}


def allowed_keys() -> str:
    return ", ".join(f"{s}.{k}" for s, keys in ALLOWED.items() for k in keys)


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def setting_value(section: str, key: str, value: Any) -> str:
    """``value`` as ansible.cfg text for an allowed setting.

    Raises:
        ValueError: the setting is not one a step may change, or the value is not of its
            kind (a plain name, a number, a boolean, one of a few words, an absolute path).
    """
    kind = ALLOWED.get(section, {}).get(key)
    if kind is None:
        why = _WHY.get(key, "it can load code, touch files outside the step or weaken host "
                            "checking")
        raise ValueError(f"ansible_cfg {section}.{key} cannot be set ({why}); a step may set "
                         f"only: {allowed_keys()}")
    what = f"ansible_cfg {section}.{key}"
    if kind == BOOL:
        text = _BOOLS.get(str(value).strip().lower()) if not isinstance(value, float) else None
        if text is None:
            raise ValueError(f"{what}: {value!r} is not a boolean")
        return text
    if kind in (INT, SECONDS):
        try:
            number = float(value) if kind == SECONDS else int(str(value).strip())
        except ValueError:
            number = None
        if (isinstance(value, bool) or number is None or not math.isfinite(number)
                or not 0 <= number <= 10**6):
            raise ValueError(f"{what}: {value!r} is not a number from 0 to 1000000")
        return str(number)
    text = str(value)
    if isinstance(kind, tuple):
        if text not in kind:
            raise ValueError(f"{what}: {text!r} is not one of {', '.join(kind)}")
        return text
    if kind == NAME and not _NAME.match(text):
        raise ValueError(f"{what}: {text!r} is not a plain name")
    if kind == INTERPRETER and not (
            text in ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")
            or (_PATH.match(text) and ".." not in text.split("/"))):
        raise ValueError(f"{what}: {text!r} is neither auto* nor an absolute path")
    return text


def check_settings(settings: dict[str, dict[str, Any]], *, rendered: bool) -> dict[str, dict[
        str, str]]:
    """The settings as ansible.cfg text; ``rendered=False`` (validation): templated values are
    left for the step to check once rendered.

    Raises:
        ValueError: the first setting a step may not change or whose value is not of its kind.
    """
    out: dict[str, dict[str, str]] = {}
    for section, values in settings.items():
        for key, value in values.items():
            if not rendered and _templated(value):
                if str(key) not in ALLOWED.get(str(section), {}):
                    setting_value(str(section), str(key), value)  # refuses the key
                continue
            out.setdefault(section, {})[key] = setting_value(str(section), str(key), value)
    return out


def static_settings(settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The model's check of `ansible_cfg` (validation, and again once rendered: the step's
    own check of the rendered values is ``check_settings(rendered=True)``)."""
    check_settings(settings, rendered=False)
    return settings


def host_pattern(value: str | None) -> str | None:
    """The model's check of `limit`: ansible-playbook reads a pattern starting with `@` as
    the name of a file of host names, a file ansflow did not choose."""
    if value is not None and not _templated(value) and "@" in value:
        raise ValueError("limit: host patterns only (a `@file` limit is not supported: list "
                         "the hosts or groups)")
    return value


ENV_REFUSED = ("an ansible step's ANSIBLE_* variables are ansflow's (they override "
               "ansible.cfg); set the settings a step may change with ansible_cfg")


def ansible_env_names(env: Any) -> list[str]:
    """The names in ``env`` that would reconfigure Ansible (refused in an ansible step)."""
    return sorted(k for k in env if str(k).upper().startswith("ANSIBLE_"))
