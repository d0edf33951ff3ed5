"""Values an ansible step hands Ansible arrive as data, never as Jinja that Ansible runs.

ansible-core templates a variable's value again whenever a playbook uses it, and a
template can run code on the worker (`{{ lookup('pipe', 'id') }}`). So:
- every string ansflow writes into the extra vars file and the generated inventory (values
  and keys, nested in lists and mappings) is tagged `!unsafe`, Ansible's own marking for
  text it must never template;
- no value on ansible-playbook's command line may hold Jinja: `--limit`, `--tags` and
  `--skip-tags` reach playbooks as the magic variables `ansible_limit`, `ansible_run_tags`
  and `ansible_skip_tags`, templated when used, and the playbook's and inventory's paths as
  `playbook_dir` and `inventory_dir`; a `@file` limit (a file of host names) is refused;
- `ANSIBLE_*` variables in the step's `env` are refused: they override ansible.cfg, where
  only the settings of ansflow.spec.ansible_cfg may be changed.
This is the rule for every string whatever its origin (a run-form value, a step output, the
author's literal text): Jinja meant for Ansible belongs in the playbook, the author's code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ansflow.errors import StepFailed
from ansflow.spec.ansible_cfg import ENV_REFUSED, ansible_env_names

JINJA = ("{{", "{%", "{#")


class _Unsafe(str):
    """A string Ansible must treat as data."""


class _DataDumper(yaml.SafeDumper):
    pass


def _unsafe_scalar(dumper: yaml.SafeDumper, value: _Unsafe) -> yaml.Node:
    # Double quotes: every character (newline, quote, control, `{`) arrives as written.
    return dumper.represent_scalar("!unsafe", str(value), style='"')


_DataDumper.add_representer(_Unsafe, _unsafe_scalar)


def as_data(value: Any, where: str) -> Any:
    """``value`` with every string (mapping keys too) marked unsafe.

    Raises:
        StepFailed: text that is not valid UTF-8 (a lone surrogate), or a value YAML cannot
            hold (an object that is not a string, number, boolean, null, list or mapping).
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise StepFailed(f"{where}: not valid UTF-8 text") from None
        return _Unsafe(value)
    if isinstance(value, Mapping):
        return {as_data(k, where): as_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float):
        return value
    raise StepFailed(f"{where}: a {type(value).__name__} cannot be passed to Ansible")


def data_yaml(value: Any, where: str) -> str:
    """YAML text of ``value`` for Ansible's loader, every string tagged `!unsafe`."""
    return yaml.dump(as_data(value, where), Dumper=_DataDumper, allow_unicode=True,
                     sort_keys=False, width=1 << 30)


def refuse_jinja(field: str, value: str | None) -> None:
    """Refuse a value Ansible would template (it cannot be marked on a command line).

    Raises:
        StepFailed: ``value`` holds `{{`, `{%` or `{#`.
    """
    if value is not None and any(mark in value for mark in JINJA):
        raise StepFailed(f"{field} {value[:200]!r}: `{{{{`, `{{%` and `{{#` are refused here "
                         "(Ansible would run them as a template); Jinja for Ansible belongs "
                         "in the playbook")


def check_handoff(config: Any, playbook: str, inventory: str | None,
                  env: Mapping[str, str]) -> None:
    """Everything of a rendered ansible step that reaches Ansible outside the `!unsafe`
    files: its command-line values, the paths Ansible exposes to playbooks, the env.

    Raises:
        StepFailed: Jinja in any of them, a `@file` limit, a group member not in `hosts`,
            an `ANSIBLE_*` env variable.
    """
    tags = [config.tags] if isinstance(config.tags, str) else (config.tags or [])
    skip = [config.skip_tags] if isinstance(config.skip_tags, str) else (config.skip_tags or [])
    refuse_jinja("limit", config.limit)
    if config.limit is not None and "@" in config.limit:
        raise StepFailed(f"limit {config.limit[:200]!r}: host patterns only (a `@file` "
                         "limit is not supported: list the hosts or groups)")
    for tag in tags:
        refuse_jinja("tags", tag)
    for tag in skip:
        refuse_jinja("skip_tags", tag)
    # Validation leaves templated members to now: one not in `hosts` would be a host of
    # the inventory no SshHost block describes.
    unknown = sorted({m for members in config.groups.values() for m in members}
                     - set(config.hosts))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise StepFailed(f"groups name hosts not in 'hosts': {names[:500]}")
    refuse_jinja("playbook", playbook)
    if inventory is not None:
        refuse_jinja("inventory", inventory)
    named = ansible_env_names(env)
    if named:
        raise StepFailed(f"env {', '.join(named)}: {ENV_REFUSED}")


def write_data(path: Path, value: Any, where: str) -> str:
    """``value`` as a 0600 YAML file of unsafe strings (created, never overwritten)."""
    text = data_yaml(value, where)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)
