"""The `ansible` step: ansible-playbook (ansible-core from the lock) run by ansflow's process
runner, so its live lines, timeout and cancel are those of every local step: at the end,
timeout or cancel every process it started (ssh clients and ControlMaster daemons
included) is ended. ansflow's stdout callback prints one line per task result per host and
leaves the recap and failures in a JSON file the step reads back."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from ansflow.blocknames import check_block_name
from ansflow.engines.process import run_process
from ansflow.engines.reaper import private_dir
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.masking import mask_checked
from ansflow.paths import confine
from ansflow.runtime.ansible_data import check_handoff
from ansflow.runtime.ansible_files import (
    plugin_dir,
    write_cfg,
    write_extra_vars,
    write_inventory,
    write_vault_password,
)
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.runtime.ssh_session import host_target
from ansflow.spec.steps import AnsibleConfig
from ansflow.stepenv import inherited_env

TOTALS = ("ok", "changed", "failed", "unreachable", "skipped")


def ansible_playbook() -> str:
    """The ansible-playbook of this installation (next to the running Python), else PATH's."""
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    found = shutil.which("ansible-playbook")
    if not found:
        raise StepFailed("ansible-playbook is not installed (ansible-core is a dependency of "
                         "ansflow: reinstall it)")
    return found


def _list_arg(value: str | list[str] | None) -> str | None:
    if value is None:
        return None
    return ",".join(value) if isinstance(value, list) else value


def playbook_argv(config: AnsibleConfig, playbook: str, inventory: str, extra: str | None,
                  vault: str | None) -> list[str]:
    """The ansible-playbook command line (file names and flags only, never a value)."""
    argv = [ansible_playbook(), "-i", inventory]
    if extra:
        argv += ["-e", f"@{extra}"]
    if vault:
        argv += ["--vault-password-file", vault]
    for flag, value in (("--limit", config.limit), ("--tags", _list_arg(config.tags)),
                        ("--skip-tags", _list_arg(config.skip_tags)),
                        ("--forks", str(config.forks) if config.forks else None)):
        if value:
            argv += [flag, value]
    argv += [flag for flag, on in (("--check", config.check), ("--diff", config.diff),
                                   ("--become", config.become)) if on]
    return [*argv, "--", playbook]


def _vault_password(ctx: StepContext, name: str) -> str:
    from prefect.blocks.system import Secret  # noqa: PLC0415

    check_block_name(name, "vault_password")
    try:
        value = Secret.load(name, _sync=True).get()
    except ValueError:
        raise StepFailed(f"vault_password: no saved Secret block named {name!r}",
                         hint=f"create one: prefect block create secret (named {name!r})"
                         ) from None
    value = value if isinstance(value, str) else str(value)
    mask_checked(ctx.masker, [(f"vault_password {name!r}", value)])
    return value


@step_executor
def execute_ansible(ctx: StepContext, config: AnsibleConfig) -> StepResult:
    """Run the playbook; outputs: the recap per host (JSON) and the totals.

    Raises:
        StepFailed: a task failed or a host was unreachable (the message names the task,
            host and message), a file outside the workspace, a bad host block.
            StepTimedOut / StepCancelled: ansible and its ssh children were ended.
    """
    cwd = confine(config.working_dir, ctx.workspace, "working_dir") if config.working_dir \
        else ctx.workspace
    playbook = confine(config.playbook, cwd, "playbook")
    if not Path(playbook).is_file():
        raise StepFailed(f"playbook not found: {config.playbook}")
    # Keys are decrypted in here: inside the process's private directory, which the reaper
    # removes if the worker dies before the step's own cleanup runs.
    scratch = Path(tempfile.mkdtemp(prefix=f"ansflow-ansible-{ctx.step_id[:40]}-",
                                    dir=private_dir()))
    # The ssh control sockets apart, under a short path: a Unix socket's is at most 107 bytes.
    control = Path(tempfile.mkdtemp(prefix="cp-", dir=private_dir()))
    try:
        if config.hosts:
            targets = [host_target(name, ctx, ctx.blocks.get(f"host:{name}"))
                       for name in config.hosts]
            inventory = write_inventory(scratch, targets, config.groups)
        elif config.inventory:
            inventory = confine(config.inventory, cwd, "inventory")
            if not Path(inventory).exists():
                raise StepFailed(f"inventory not found: {config.inventory}")
        else:
            raise StepFailed("no inventory: give `inventory` (a file) or `hosts` (SshHost "
                             "blocks)")
        check_handoff(config, playbook, inventory, ctx.env)
        extra = write_extra_vars(scratch, config.extra_vars) if config.extra_vars else None
        vault = (write_vault_password(scratch, _vault_password(ctx, config.vault_password))
                 if config.vault_password else None)
        env = {**inherited_env(ctx.env_passthrough), **ctx.env,
               "ANSIBLE_CONFIG": write_cfg(scratch, config.ansible_cfg, control),
               "ANSIBLE_STDOUT_CALLBACK": "ansflow", "ANSIBLE_CALLBACK_PLUGINS": plugin_dir(),
               "ANSIBLE_HOME": str(scratch / "home"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCAL_TEMP": str(scratch / "tmp"),
               "ANSFLOW_ANSIBLE_EVENTS": str(scratch / "events.json"),
               "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1",
               **ctx.ansflow_env(workspace=ctx.workspace)}
        errors: collections.deque[str] = collections.deque(maxlen=5)

        def emit(line: str, stream: str) -> None:
            if stream == "stderr" and line.strip():
                errors.append(line.strip())
            ctx.emit(line, stream=stream)

        argv = playbook_argv(config, playbook, inventory, extra, vault)
        try:
            outcome = run_process(argv, cwd=cwd, env=env, emit=emit, timeout=ctx.budget(),
                                  cancelled=ctx.control.cancelled, on_start=ctx.on_cancel,
                                  masker=ctx.masker)
        except OSError as exc:
            raise StepFailed(f"cannot start ansible-playbook: {exc.strerror}") from None
        finally:
            end_control_masters(control)
        if outcome.timed_out:
            raise StepTimedOut(f"timed out after {ctx.timeout:g}s; ansible-playbook and its "
                               "ssh connections were ended", exit_code=outcome.exit_code)
        if outcome.cancelled:
            raise StepCancelled("cancelled; ansible-playbook and its ssh connections were "
                                "ended", exit_code=outcome.exit_code)
        events = _events(scratch / "events.json")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(control, ignore_errors=True)
    outputs = summary_outputs(events.get("recap", {}))
    if outcome.exit_code != 0:
        raise StepFailed(failure_message(events, outcome.exit_code, list(errors)),
                         exit_code=outcome.exit_code)
    return StepResult(exit_code=0, outputs=outputs)


def end_control_masters(control_dir: Path) -> int:
    """Kill the ssh ControlMaster processes of this step (their control sockets are in
    ``control_dir``). They escape the process runner's token scan: OpenSSH's setproctitle
    overwrites the environment area /proc shows, so they are found by their title
    (``ssh: <control path> [mux]``) instead. Returns how many there were."""
    needle = str(control_dir).encode() + b"/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read(8192)
        except OSError:
            continue
        if needle in cmdline and b"[mux]" in cmdline:
            found.append(int(entry))
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return len(found)


def _events(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def summary_outputs(recap: dict[str, dict[str, int]]) -> dict[str, str]:
    """Outputs: ``recap`` (JSON: per host ok / changed / failed / unreachable / skipped /
    rescued / ignored) and the totals ``ok``, ``changed``, ``failed``, ``unreachable``,
    ``skipped``."""
    per_host = {host: {("failed" if k == "failures" else k): v for k, v in counts.items()}
                for host, counts in recap.items()}
    outputs = {"recap": json.dumps(per_host, sort_keys=True)}
    for key in TOTALS:
        outputs[key] = str(sum(counts.get(key, 0) for counts in per_host.values()))
    return outputs


def failure_message(events: dict[str, Any], exit_code: int | None,
                    errors: list[str]) -> str:
    """Which task failed on which host and why; else the unreachable host; else ansible's
    own error (a syntax error, a missing file)."""
    failures = events.get("failures") or []
    unreachable = events.get("unreachable") or []
    if failures:
        first = failures[0]
        more = f" (and {len(failures) - 1} more failure(s))" if len(failures) > 1 else ""
        return (f"task {first['task']!r} failed on host {first['host']!r}: "
                f"{first['message'] or 'no message'}{more}")
    if unreachable:
        first = unreachable[0]
        return f"host {first['host']!r} is unreachable: {first['message'] or 'no message'}"
    detail = next((e for e in reversed(errors) if e.startswith("ERROR")), None) or \
        (errors[-1] if errors else "no output")
    return f"ansible-playbook exited with code {exit_code}: {detail[:1000]}"


@step_task("ansible", execute_ansible)
def ansible(
    *,
    playbook: str,
    inventory: str | None = None,
    hosts: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
    extra_vars: dict[str, Any] | None = None,
    limit: str | None = None,
    tags: str | list[str] | None = None,
    skip_tags: str | list[str] | None = None,
    check: bool = False,
    diff: bool = False,
    become: bool = False,
    forks: int | None = None,
    vault_password: str | None = None,
    ansible_cfg: dict[str, dict[str, Any]] | None = None,
    working_dir: str | None = None,
    env: dict[str, str] | None = None,
    env_passthrough: list[str] | None = None,
    workspace: str | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Run an Ansible playbook with ansible-playbook (ansible-core).

    Args:
        playbook: The playbook file, relative to ``workspace``.
        inventory: An inventory file, relative to ``workspace`` (or give ``hosts``).
        hosts: SshHost block names; the inventory is generated from them, with their host
            keys checked strictly and their keys in private files.
        groups: With ``hosts``: inventory groups, ``{group: [host, ...]}``.
        extra_vars: Extra variables, written to a file passed as ``-e @file``, every string
            marked ``!unsafe``: data, never templated by Ansible.
        limit: ``--limit`` pattern.
        tags: Only tasks with these tags.
        skip_tags: Skip tasks with these tags.
        check: ``--check``: report what would change, change nothing.
        diff: ``--diff``: show the changes to files.
        become: ``--become``.
        forks: ``--forks``.
        vault_password: Name of a Prefect Secret block holding the vault password.
        ansible_cfg: ansible.cfg settings, ``{section: {key: value}}``, among those a step
            may change (ansflow.spec.ansible_cfg.ALLOWED).
        working_dir: Directory to run in, relative to ``workspace``.
        env: Extra environment variables of ansible-playbook.
        env_passthrough: Variables of this process it inherits beyond the clean base.
        workspace: The directory it works in (default: the current directory).
        timeout: Seconds before ansible-playbook and its ssh children are ended.

    Returns:
        ``exit_code`` (0) and ``outputs``: ``recap`` (JSON, per host) and the totals ``ok``,
        ``changed``, ``failed``, ``unreachable``, ``skipped``.

    Raises:
        StepFailed: a task failed (the message names the task, host and message), a host
            was unreachable, or ansible-playbook refused the playbook.
            StepTimedOut / StepCancelled: killed at the deadline / on cancel.

    Example:
        ```python
        from ansflow.tasks.ansible import ansible

        out = ansible(playbook="site.yml", hosts=["web1", "web2"], groups={"web": ["web1",
                      "web2"]}, extra_vars={"release": "1.4"})
        print(out["outputs"]["changed"])
        ```
    """
    return run_standalone("ansible", execute_ansible, config_of(AnsibleConfig, locals()),
                          timeout=timeout, workspace=workspace, env=env,
                          env_passthrough=env_passthrough)
