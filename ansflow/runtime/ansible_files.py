"""The files an ansible step hands ansible-playbook, in a private (0700) directory outside the
workspace: ansible.cfg, the inventory generated from SshHost blocks (with their keys and a
known_hosts file: strict host key checking), the extra vars file and the vault password
file. Nothing secret is ever on the ansible-playbook command line."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from ansflow.errors import StepFailed
from ansflow.runtime.ansible_data import data_yaml, write_data
from ansflow.spec.ansible_cfg import check_settings

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def plugin_dir() -> str:
    """Where ansflow's stdout callback lives (the installed package's directory)."""
    import ansflow  # noqa: PLC0415

    return str(Path(ansflow.__file__).resolve().parent / "ansible_plugins")


def _write(path: Path, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return str(path)


def write_cfg(scratch: Path, settings: dict[str, dict[str, Any]],
              control_dir: Path | None = None) -> str:
    """ansible.cfg: ansflow's defaults (ssh control sockets in ``control_dir``, default
    ``scratch/cp``), then the step's ``ansible_cfg`` settings.

    Raises:
        StepFailed: a setting a step may not change (ansflow.spec.ansible_cfg), a value
            not of its setting's kind.
    """
    sections: dict[str, dict[str, str]] = {
        "defaults": {"host_key_checking": "True", "retry_files_enabled": "False",
                     "interpreter_python": "auto_silent", "nocows": "True",
                     "local_tmp": str(scratch / "tmp")},
        "ssh_connection": {"control_path_dir": str(control_dir or scratch / "cp"),
                           "pipelining": "True"},
    }
    try:
        allowed = check_settings(settings, rendered=True)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    for section, values in allowed.items():
        sections.setdefault(section, {}).update(values)
    body = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())
    return _write(scratch / "ansible.cfg", body)


def _ssh_options(known_file: str) -> list[str]:
    return ["-o", f"UserKnownHostsFile={known_file}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-F", "/dev/null"]


class _Files:
    """The key files and known_hosts lines of an inventory's hosts and their jump hosts."""

    def __init__(self, scratch: Path) -> None:
        self.keys_dir = scratch / "keys"
        self.keys_dir.mkdir(mode=0o700)
        self.known: list[str] = []
        self.key_files: dict[str, str] = {}

    def add(self, target: Any, role: str = "") -> str:
        """Record ``target``'s host keys; its private key file (written once)."""
        from ansflow.engines.ssh_keys import host_keys, load_client_key  # noqa: PLC0415

        what = f"{role}host {target.name!r}"
        if not _NAME.match(target.name):
            raise StepFailed(f"{what}: not usable as an inventory name")
        if not target.private_key:
            raise StepFailed(f"{what}: ansible steps need key authentication (a password-only "
                             "host is not supported: ansible-playbook would need sshpass)")
        if target.name in self.key_files:
            return self.key_files[target.name]
        key = load_client_key(target.private_key, target.passphrase)
        key_file = _write(self.keys_dir / target.name, key.export_private_key().decode())
        self.key_files[target.name] = key_file
        # Under the block's name (HostKeyAlias), not the address: two blocks for one address
        # (a host and a jump host in front of it, say) keep their own keys.
        # Only the keys trusted for this block's host and port (never another host's line of
        # a whole known_hosts file), and its revoked keys marked as OpenSSH refuses them.
        try:
            keys = host_keys(list(target.known_host_keys), target.hostname, target.port)
        except ValueError as exc:
            raise StepFailed(f"{what}: known_host_keys: {exc}") from None
        for public in keys.trusted:
            self.known.append(f"{target.name} {public.export_public_key().decode().strip()}")
        for public in keys.revoked:
            self.known.append(f"@revoked {target.name} "
                              f"{public.export_public_key().decode().strip()}")
        return key_file


def _proxy_command(jump: Any, files: _Files, known_file: str) -> str:
    """An OpenSSH ProxyCommand reaching the next hop through ``jump`` (and its own jump
    hosts, nested): the jump's own key and the same strict known_hosts file. ProxyJump
    would not do: a jump host gets only the config file's options, not the command line's."""
    argv = ["ssh", *_ssh_options(known_file), "-o", f"HostKeyAlias={jump.name}",
            "-i", files.add(jump, "jump "), "-p", str(jump.port), "-l", jump.username]
    if jump.jump is not None:
        argv += ["-o", f"ProxyCommand={_proxy_command(jump.jump, files, known_file)}"]
    argv += ["-W", "%h:%p", jump.hostname]
    return " ".join(shlex.quote(a) for a in argv)


def write_inventory(scratch: Path, targets: list[Any], groups: dict[str, list[str]]) -> str:
    """An inventory of SshHost targets: address, port, user, the key file (0600), and a
    known_hosts file holding only their keys, each under its block's name (HostKeyAlias,
    StrictHostKeyChecking=yes); a host behind jump hosts is reached through a ProxyCommand
    with the jump hosts' own keys.

    Raises:
        StepFailed: a password-only host (ansible-playbook is given keys only), or a host or
            group name that is not a plain name.
    """
    files = _Files(scratch)
    known_file = str(scratch / "known_hosts")
    hosts: dict[str, dict[str, Any]] = {}
    for target in targets:
        key_file = files.add(target)
        hosts[target.name] = {"ansible_host": target.hostname, "ansible_port": target.port,
                              "ansible_user": target.username,
                              "ansible_ssh_private_key_file": key_file}
        args = [*_ssh_options(known_file), "-o", f"HostKeyAlias={target.name}"]
        if target.jump is not None:
            args += ["-o", f"ProxyCommand={_proxy_command(target.jump, files, known_file)}"]
        hosts[target.name]["ansible_ssh_common_args"] = " ".join(shlex.quote(o) for o in args)
    _write(Path(known_file), "\n".join(files.known) + "\n")
    common = " ".join(shlex.quote(o) for o in _ssh_options(known_file))
    children = {}
    for group, members in groups.items():
        if not _NAME.match(group):
            raise StepFailed(f"group {group!r}: not usable as an inventory group name")
        children[group] = {"hosts": {m: None for m in members}}
    inventory = {"all": {"hosts": hosts, "vars": {"ansible_ssh_common_args": common},
                         **({"children": children} if children else {})}}
    # Every string `!unsafe`: a block's address or user is data, never a template.
    return _write(scratch / "inventory.yml", data_yaml(inventory, "inventory"))


def write_extra_vars(scratch: Path, extra_vars: dict[str, Any]) -> str:
    """The extra vars as a YAML file (``-e @file``), every string `!unsafe`: quotes,
    newlines and `{{ }}` arrive as written, never templated by Ansible."""
    return write_data(scratch / "extra_vars.yml", extra_vars, "extra_vars")


def write_vault_password(scratch: Path, password: str) -> str:
    return _write(scratch / "vault_password", password + "\n")
