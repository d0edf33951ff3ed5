"""The ansible step: real ansible-playbook (ansible-core from the lock) against the private
sshd, with an inventory generated from SshHost blocks."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from fixtures_pipeline import by_id, logs
from fixtures_ssh import other_key, remote_processes

from ansflow.engines.reaper import private_dir
from ansflow.errors import StepCancelled, StepFailed
from ansflow.runtime.base import StepContext
from ansflow.spec.steps import AnsibleConfig
from ansflow.tasks.ansible import execute_ansible, failure_message, summary_outputs

# The sshd's host is this machine: its login PATH may hold shims (pyenv); use Debian's python.
CFG = "ansible_cfg: {defaults: {interpreter_python: /usr/bin/python3}}"
SITE = """\
- hosts: web
  gather_facts: false
  tasks:
    - name: Render the config
      template: {src: app.conf.j2, dest: "{{ target }}/app.conf"}
      notify: restart app
    - name: A skipped task
      debug: {msg: never}
      when: false
  handlers:
    - name: restart app
      copy: {content: "restarted\\n", dest: "{{ target }}/restarted"}
"""


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "site.yml").write_text(SITE)
    (ws / "app.conf.j2").write_text("port={{ port }}\nname={{ inventory_hostname }}\n")
    return ws


def test_summary_and_failure_message_units():
    out = summary_outputs({"a": {"ok": 2, "changed": 1, "failures": 0, "unreachable": 0,
                                 "skipped": 1}, "b": {"ok": 1, "changed": 1, "failures": 1}})
    assert (out["ok"], out["changed"], out["failed"], out["skipped"]) == ("3", "2", "1", "1")
    assert json.loads(out["recap"])["b"]["failed"] == 1
    message = failure_message({"failures": [{"task": "t", "host": "h", "message": "boom"}]},
                              2, [])
    assert message == "task 't' failed on host 'h': boom"
    assert "ERROR! bad" in failure_message({}, 4, ["x", "ERROR! bad", "y"])
    with pytest.raises(ValueError, match="not both"):
        AnsibleConfig(playbook="p", inventory="i", hosts=["a"])
    with pytest.raises(ValueError, match="groups name hosts not in"):
        AnsibleConfig(playbook="p", hosts=["a"], groups={"g": ["b"]})


def test_a_group_member_that_is_not_utf8_is_refused_with_an_encodable_message():
    # A non-UTF-8 byte reaches Python as a lone surrogate; pydantic-core must be able to
    # encode the validator's message, so the raw name is never in it.
    with pytest.raises(ValueError) as caught:
        AnsibleConfig(playbook="p", hosts=["a"], groups={"g": ["x\udcff\udcfe"]})
    message = str(caught.value)
    message.encode("utf-8")
    assert "groups name hosts not in 'hosts': 'x\\udcff\\udcfe'" in message


def test_playbook_template_handler_and_check(run_pipeline, ssh_host, tmp_path):
    target = tmp_path / "remote"
    target.mkdir()
    _workspace(tmp_path)
    common = (f"hosts: [{ssh_host}], groups: {{web: [{ssh_host}]}}, {CFG}, "
              f"extra_vars: {{target: '{target}', port: PORT}}")
    port80 = common.replace("PORT", "80")
    text = f"""
        pipeline:
          name: ansible-site
          workspace: ws
          steps:
            - {{id: first, type: ansible, config: {{playbook: site.yml, {port80}}}}}
            - {{id: again, type: ansible, config: {{playbook: site.yml, {port80}}}}}
            - {{id: dry, type: ansible, config: {{playbook: site.yml, check: true, diff: true,
                {common.replace('PORT', '8080')}}}}}
    """
    state, summary = run_pipeline(text)
    steps = by_id(summary)
    assert all(s["state"] == "completed" for s in steps.values()), steps
    first = steps["first"]["outputs"]
    assert (first["changed"], first["failed"], first["unreachable"]) == ("2", "0", "0")
    assert json.loads(first["recap"])[ssh_host]["skipped"] == 1
    assert (target / "app.conf").read_text() == f"port=80\nname={ssh_host}\n"
    assert (target / "restarted").read_text() == "restarted\n"
    assert steps["again"]["outputs"]["changed"] == "0"  # idempotent: no handler either
    assert steps["dry"]["outputs"]["changed"] == "1"  # would change...
    assert (target / "app.conf").read_text() == f"port=80\nname={ssh_host}\n"  # ...did not
    lines = logs(state.state_details.flow_run_id, f"changed: [{ssh_host}] Render the config")
    for line in (f"changed: [{ssh_host}] Render the config", "HANDLER [restart app]",
                 f"changed: [{ssh_host}] restart app", f"skipped: [{ssh_host}] A skipped task",
                 f"ok: [{ssh_host}] Render the config"):
        assert line in lines, line
    assert any(line.startswith("+port=8080") for line in lines)  # the --diff of the check


def test_failing_task_unreachable_host_and_quoted_extra_vars(run_pipeline, sshd, ssh_host,
                                                             tmp_path, prefect_server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    dead = f"dead-{uuid.uuid4().hex[:6]}"
    sshd.block(port=closed).save(dead)
    out_file = tmp_path / "vars.out"
    value = "it's \"quoted\"\nsecond line $HOME `x` \\ end"
    ws = tmp_path
    (ws / "fail.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Fine\n      debug: {msg: fine}\n"
        "    - name: Break here\n      fail: {msg: this task broke}\n")
    (ws / "vars.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Write the value\n      copy: {content: '{{ value }}', dest: '{{ out }}'}\n")
    (ws / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                 "    - {name: Ping, ping: {}}\n")
    extra = json.dumps({"value": value, "out": str(out_file)})
    _, summary = run_pipeline(f"""
        pipeline:
          name: ansible-failures
          stages:
            - name: s
              parallel: true
              steps:
                - {{id: broken, type: ansible, allow_failure: true,
                    config: {{playbook: fail.yml, hosts: [{ssh_host}], {CFG}}}}}
                - {{id: gone, type: ansible, allow_failure: true,
                    config: {{playbook: ping.yml, hosts: [{dead}], {CFG}}}}}
                - id: quoted
                  type: ansible
                  config: {{playbook: vars.yml, hosts: [{ssh_host}], extra_vars: {extra},
                           {CFG}}}
    """)
    steps = by_id(summary)
    assert steps["broken"]["state"] == "failed"
    assert (f"task 'Break here' failed on host '{ssh_host}': this task broke"
            in steps["broken"]["message"])
    assert steps["gone"]["state"] == "failed"
    assert f"host '{dead}' is unreachable" in steps["gone"]["message"]
    assert steps["quoted"]["state"] == "completed", steps["quoted"]
    assert out_file.read_text() == value


def test_host_behind_jump_hosts_and_a_password_only_host(run_pipeline, sshd, tmp_path,
                                                         prefect_server):
    """Two jump hosts deep (each the private sshd, reached through the one before): the
    ProxyCommand chain is what connects, and every hop's host key is checked: the same
    chain with a wrong host key for the outer hop fails."""
    from pydantic import SecretStr

    tag = uuid.uuid4().hex[:6]
    names = {n: f"{n}-{tag}" for n in ("outer", "inner", "behind", "badouter", "badbehind",
                                       "pw")}
    wrong_key = (other_key(tmp_path).with_suffix(".pub")).read_text().strip()
    sshd.block().save(names["outer"])
    sshd.block(jump_host=names["outer"]).save(names["inner"])
    sshd.block(jump_host=names["inner"]).save(names["behind"])
    sshd.block(known_host_keys=[wrong_key]).save(names["badouter"])
    sshd.block(jump_host=names["badouter"]).save(names["badbehind"])
    sshd.block(private_key=None, password=SecretStr("a-long-password")).save(names["pw"])
    out_file = tmp_path / "via-jump.out"
    (tmp_path / "jump.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - copy: {content: '{{ inventory_hostname }}', dest: '{{ out }}'}\n")
    steps = "\n".join(
        f"    - {{id: {key}, type: ansible, allow_failure: true, config: {{playbook: jump.yml, "
        f"hosts: [{names[key]}], {CFG}, extra_vars: {{out: '{out_file}.{key}'}}}}}}"
        for key in ("behind", "badbehind", "pw"))
    _, summary = run_pipeline(f"pipeline:\n  name: ansible-jump\n  steps:\n{steps}\n")
    got = by_id(summary)
    assert got["behind"]["state"] == "completed", got["behind"]
    assert Path(f"{out_file}.behind").read_text() == names["behind"]
    assert got["badbehind"]["state"] == "failed"
    assert f"host '{names['badbehind']}' is unreachable" in got["badbehind"]["message"]
    assert not Path(f"{out_file}.badbehind").exists()
    assert got["pw"]["state"] == "failed"
    assert (f"host '{names['pw']}': ansible steps need key authentication"
            in got["pw"]["message"])


def test_vault_and_secret_extra_vars(run_pipeline, ssh_host, tmp_path, prefect_server):
    """A vaulted variable decrypted with a Secret block's password; a secret passed as an
    extra var is masked in the task lines (a vaulted value shown by the playbook itself is
    ansible's to hide: no_log)."""
    from prefect.blocks.system import Secret

    password = f"vault-{uuid.uuid4().hex}"
    vaulted = f"s3cr3t-{uuid.uuid4().hex[:12]}"
    token = f"tok-{uuid.uuid4().hex}"
    name, token_name = f"vault-{uuid.uuid4().hex[:6]}", f"token-{uuid.uuid4().hex[:6]}"
    Secret(value=password).save(name)
    Secret(value=token).save(token_name)
    (tmp_path / "pw").write_text(password)
    vault_bin = Path(sys.executable).parent / "ansible-vault"
    encrypted = subprocess.run(
        [str(vault_bin), "encrypt_string", "--vault-password-file", str(tmp_path / "pw"),
         vaulted, "--name", "db_password"], capture_output=True, text=True, check=True)
    (tmp_path / "pw").unlink()
    (tmp_path / "vars.yml").write_text(encrypted.stdout)
    out_file = tmp_path / "db.out"
    (tmp_path / "vault.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  vars_files: [vars.yml]\n  tasks:\n"
        f"    - copy: {{content: '{{{{ db_password }}}}', dest: '{out_file}'}}\n"
        "    - {name: Show the token, debug: {msg: 'token is {{ token }}'}}\n"
        "    - {name: Fail with it, fail: {msg: 'bad {{ token }}'}}\n")
    state, summary = run_pipeline(f"""
        pipeline:
          name: ansible-vault
          steps:
            - id: v
              type: ansible
              config:
                playbook: vault.yml
                hosts: [{ssh_host}]
                vault_password: {name}
                extra_vars: {{token: "{{{{ secrets['{token_name}'] }}}}"}}
                {CFG}
    """)
    step = by_id(summary)["v"]
    assert step["state"] == "failed" and "task 'Fail with it' failed" in step["message"]
    assert out_file.read_text() == vaulted
    assert token not in step["message"] and password not in step["message"]
    lines = logs(state.state_details.flow_run_id, f"ok: [{ssh_host}] Show the token")
    assert any("Fail with it" in line for line in lines)
    assert not any(token in line or password in line for line in lines)


def test_cancel_and_timeout_end_ansible_and_its_ssh_children(sshd, tmp_path):
    (tmp_path / "slow.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - {name: Wait, command: sleep 300}\n")
    for how in ("cancel", "timeout"):
        step_id = f"slow-{how}-{uuid.uuid4().hex[:8]}"
        ctx = StepContext(pipeline="p", run_id="r", build_number=1, step_id=step_id,
                          step_name=step_id, stage="", step_type="ansible",
                          workspace=str(tmp_path), blocks={"host:web": sshd.block()},
                          timeout=4 if how == "timeout" else None)
        if how == "cancel":
            threading.Timer(4, ctx.control.cancel).start()
        started = time.monotonic()
        error = StepCancelled if how == "cancel" else StepFailed
        with pytest.raises(error, match="ansible-playbook and its ssh connections were ended"):
            execute_ansible(ctx, AnsibleConfig(
                playbook="slow.yml", hosts=["web"],
                ansible_cfg={"defaults": {"interpreter_python": "/usr/bin/python3"}}))
        assert time.monotonic() - started < 20
        assert not remote_processes(f"ansflow-ansible-{step_id}")  # ansible, ssh
        # ssh clients and ControlMasters by their control path (apart, a short one)
        assert not [p for p in remote_processes(private_dir())
                    if "[mux]" in p or "ControlPath" in p]
