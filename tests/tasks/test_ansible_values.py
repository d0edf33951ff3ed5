"""Values reach Ansible as data: real ansible-playbook against the private sshd, with values
that Ansible would run as a template (`{{ lookup('pipe', 'touch MARKER') }}`) if ansflow
handed them over as plain text. Each test checks the marker file is never created and the
value arrives literally. And what `ansible_cfg` and the step's env may change."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from fixtures_pipeline import by_id
from plan_text import problems

from ansflow.errors import StepFailed
from ansflow.runtime.ansible_data import data_yaml
from ansflow.runtime.base import StepContext
from ansflow.spec.ansible_cfg import check_settings
from ansflow.spec.steps import AnsibleConfig
from ansflow.tasks.ansible import execute_ansible

CFG = {"defaults": {"interpreter_python": "/usr/bin/python3"}}
CFG_TEXT = "ansible_cfg: {defaults: {interpreter_python: /usr/bin/python3}}"


def _hostile(marker: Path) -> str:
    return "{{ lookup('pipe', 'touch " + str(marker) + "') }}"


def _ctx(tmp_path: Path, block, **extra) -> StepContext:
    step_id = f"values-{uuid.uuid4().hex[:8]}"
    return StepContext(pipeline="p", run_id="r", build_number=1, step_id=step_id,
                       step_name=step_id, stage="", step_type="ansible",
                       workspace=str(tmp_path), blocks={"host:web": block}, **extra)


def test_run_value_step_output_and_author_text_arrive_literally(run_pipeline, ssh_host,
                                                                tmp_path):
    """A run-form value and a step output holding Jinja, in plain and nested extra vars, are
    written by the play on the host as they are: `lookup('pipe')` never runs. Text the
    author wrote (here through `{% raw %}`) is data too: Ansible's Jinja belongs in the
    playbook, which templates `{{ inventory_hostname }}` itself."""
    run_marker, out_marker = tmp_path / "RUN-MARKER", tmp_path / "OUTPUT-MARKER"
    hostile = _hostile(run_marker)
    # The step output comes from a file the pipeline text does not template.
    (tmp_path / "emit.sh").write_text(
        f"printf 'version=%s\\n' \"{_hostile(out_marker)}\" >> \"$ANSFLOW_OUTPUT\"\n")
    (tmp_path / "write.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - copy: {content: '{{ release }}', dest: '{{ dir }}/release'}\n"
        "    - copy: {content: '{{ nested.list[0] }}', dest: '{{ dir }}/nested'}\n"
        "    - copy: {content: '{{ version }}', dest: '{{ dir }}/version'}\n"
        "    - copy: {content: '{{ author }}|{{ inventory_hostname }}', "
        "dest: '{{ dir }}/author'}\n")
    out = tmp_path / "out"
    out.mkdir()
    state, summary = run_pipeline(f"""
        pipeline:
          name: ansible-values
          variables: {{release: "1.0"}}
          steps:
            - {{id: build, type: command, config: {{command: sh emit.sh}}}}
            - id: site
              needs: [build]
              type: ansible
              config:
                playbook: write.yml
                hosts: [{ssh_host}]
                {CFG_TEXT}
                extra_vars:
                  dir: {out}
                  release: "{{{{ vars.release }}}}"
                  nested: {{list: ["{{{{ vars.release }}}}"]}}
                  version: "{{{{ steps.build.outputs.version }}}}"
                  author: "{{% raw %}}{{{{ inventory_hostname }}}}{{% endraw %}}"
    """, variables={"release": hostile})
    steps = by_id(summary)
    assert steps["site"]["state"] == "completed", steps["site"]
    assert (out / "release").read_text() == hostile
    assert (out / "nested").read_text() == hostile
    assert (out / "version").read_text() == _hostile(out_marker)
    assert (out / "author").read_text() == "{{ inventory_hostname }}|" + ssh_host
    assert not run_marker.exists() and not out_marker.exists()


def test_inventory_values_from_a_block_are_data(sshd, tmp_path):
    """A block's user name holding Jinja: Ansible templates connection variables when it
    connects; the generated inventory marks them unsafe, so ssh is asked to log in as that
    literal name (refused: unreachable) and nothing runs on the worker."""
    marker = tmp_path / "USER-MARKER"
    (tmp_path / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - {name: Ping, ping: {}}\n")
    ctx = _ctx(tmp_path, sshd.block(username=_hostile(marker)))
    with pytest.raises(StepFailed, match="unreachable"):
        execute_ansible(ctx, AnsibleConfig(playbook="ping.yml", hosts=["web"],
                                           ansible_cfg=CFG))
    assert not marker.exists()


def test_data_yaml_marks_every_string_keys_and_nested_values():
    text = data_yaml({"a{{x}}": ["{{ y }}", {"k": "v\n'\"", "n": 1, "b": True, "z": None}]},
                     "extra_vars")
    assert text == ('!unsafe "a{{x}}":\n- !unsafe "{{ y }}"\n- !unsafe "k": !unsafe "v\\n\'\\""\n'
                    '  !unsafe "n": 1\n  !unsafe "b": true\n  !unsafe "z": null\n')
    with pytest.raises(StepFailed, match=r"extra_vars\.a: not valid UTF-8"):
        data_yaml({"a": "\udc80"}, "extra_vars")
    with pytest.raises(StepFailed, match="cannot be passed to Ansible"):
        data_yaml({"a": object()}, "extra_vars")


@pytest.mark.parametrize("field, value, message", [
    ("limit", "web:{{ lookup('pipe', 'id') }}", "limit .*refused here"),
    ("limit", "@/etc/hosts", "a `@file` limit is not supported"),
    ("limit", "all,@hosts.txt", "a `@file` limit is not supported"),
    ("tags", ["ok", "{% set x = 1 %}"], "tags .*refused here"),
    ("tags", "{# c #}", "tags .*refused here"),
    ("skip_tags", "{{ x }}", "skip_tags .*refused here"),
])
def test_command_line_values_with_jinja_are_refused_before_ansible_runs(sshd, tmp_path, field,
                                                                         value, message):
    """ansible-playbook exposes --limit, --tags and --skip-tags to playbooks as
    ansible_limit, ansible_run_tags and ansible_skip_tags, templated when used (checked with
    ansible-core 2.17): a command line cannot be marked unsafe, so Jinja there is refused."""
    marker = tmp_path / "CLI-MARKER"
    (tmp_path / "show.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - copy: {{content: '{{{{ ansible_limit }}}}', dest: '{marker}'}}\n")
    config = AnsibleConfig.model_construct(**{
        **AnsibleConfig(playbook="show.yml", hosts=["web"], ansible_cfg=CFG).__dict__,
        field: value})
    with pytest.raises(StepFailed, match=message):
        execute_ansible(_ctx(tmp_path, sshd.block()), config)
    assert not marker.exists()  # ansible-playbook never started


def test_group_member_from_a_value_must_be_one_of_the_hosts(sshd, tmp_path):
    """Validation leaves a templated member to the run: rendered, it must name a host of
    `hosts` (else it would be an inventory host no block describes)."""
    marker = tmp_path / "GROUP-MARKER"
    (tmp_path / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - {name: Ping, ping: {}}\n")
    config = AnsibleConfig(playbook="ping.yml", hosts=["web"], ansible_cfg=CFG,
                           groups={"g": ["web", _hostile(marker)]})
    with pytest.raises(StepFailed, match="groups name hosts not in 'hosts': .*lookup"):
        execute_ansible(_ctx(tmp_path, sshd.block()), config)
    assert not marker.exists()


def test_env_cannot_reconfigure_ansible(sshd, tmp_path):
    """ANSIBLE_* variables override ansible.cfg (ANSIBLE_HOST_KEY_CHECKING=False would turn
    host key checking off): an ansible step's env may not set them."""
    (tmp_path / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - {name: Ping, ping: {}}\n")
    ctx = _ctx(tmp_path, sshd.block(), env={"ANSIBLE_HOST_KEY_CHECKING": "False", "OK": "1"})
    with pytest.raises(StepFailed, match="env ANSIBLE_HOST_KEY_CHECKING: an ansible step's"):
        execute_ansible(ctx, AnsibleConfig(playbook="ping.yml", hosts=["web"],
                                           ansible_cfg=CFG))


def test_ansible_cfg_allowlist_units():
    assert check_settings({"defaults": {"forks": 5, "gathering": "smart",
                                        "any_errors_fatal": "yes"},
                           "ssh_connection": {"pipelining": False}}, rendered=True) == {
        "defaults": {"forks": "5", "gathering": "smart", "any_errors_fatal": "True"},
        "ssh_connection": {"pipelining": "False"}}
    for section, key, value in (
            ("defaults", "host_key_checking", False),
            ("ssh_connection", "ssh_args", "-o StrictHostKeyChecking=no"),
            ("ssh_connection", "ssh_common_args", "-o UserKnownHostsFile=/dev/null"),
            ("defaults", "lookup_plugins", "/tmp/evil"),
            ("defaults", "callbacks_enabled", "evil"),
            ("defaults", "vault_password_file", "/tmp/pw"),
            ("defaults", "log_path", "/tmp/log"),
            ("defaults", "roles_path", "/tmp/roles"),
            ("ssh_connection", "ssh_executable", "/tmp/ssh"),
            ("defaults", "transport", "local"),
            ("colors", "ok", "green")):
        with pytest.raises(ValueError, match=f"{section}.{key} cannot be set"):
            check_settings({section: {key: value}}, rendered=True)
    for settings in ({"defaults": {"forks": "{{ x }}"}}, {"defaults": {"forks": "1\n[x]"}},
                     {"defaults": {"gathering": "%(x)s"}},
                     {"defaults": {"interpreter_python": "/usr/bin/python3 -c evil"}},
                     {"defaults": {"interpreter_python": "/usr/../tmp/python"}},
                     {"defaults": {"remote_user": "{{ lookup('pipe','id') }}"}},
                     {"defaults": {"any_errors_fatal": "maybe"}},
                     {"defaults": {"timeout": float("nan")}}):
        with pytest.raises(ValueError, match="is not|neither"):
            check_settings(settings, rendered=True)
    # At validation a templated value waits for its rendering; a refused key does not.
    assert check_settings({"defaults": {"forks": "{{ vars.n }}"}}, rendered=False) == {}
    with pytest.raises(ValueError, match="host_key_checking cannot be set"):
        check_settings({"defaults": {"host_key_checking": "{{ vars.x }}"}}, rendered=False)


def test_ansible_cfg_and_limit_refused_at_validation_with_their_position(tmp_path):
    found = problems(tmp_path, """\
pipeline:
  name: p
  variables: {n: "5"}
  steps:
    - id: a
      type: ansible
      config:
        playbook: site.yml
        hosts: [web]
        limit: "@hosts.txt"
        ansible_cfg:
          defaults: {forks: "{{ vars.n }}", host_key_checking: false}
""")
    assert any(p.startswith("p.yaml:10:") and "a `@file` limit is not supported" in p
               for p in found), found
    assert any(p.startswith("p.yaml:12:") and "defaults.host_key_checking cannot be set" in p
               and "ansflow checks host keys strictly" in p for p in found), found
    assert len(found) == 2, found
    found = problems(tmp_path, """\
pipeline:
  name: p
  stages:
    - name: s
      env: {ANSIBLE_SSH_ARGS: "-o StrictHostKeyChecking=no"}
      steps:
        - id: a
          type: ansible
          config: {playbook: site.yml, hosts: [web]}
          env: {ANSIBLE_HOST_KEY_CHECKING: "False", OTHER: "1"}
""")
    # The stage's variable at the step's type, the step's own at its value.
    assert [p.split(" variables are")[0] for p in found] == [
        "p.yaml:8:17: step 'a': env ANSIBLE_SSH_ARGS: an ansible step's ANSIBLE_*",
        "p.yaml:10:44: step 'a': env ANSIBLE_HOST_KEY_CHECKING: an ansible step's ANSIBLE_*"
    ], found


def test_templated_ansible_cfg_value_checked_once_rendered(run_pipeline, ssh_host, tmp_path):
    (tmp_path / "ping.yml").write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                                       "    - {name: Ping, ping: {}}\n")
    _, summary = run_pipeline(f"""
        pipeline:
          name: ansible-cfg-value
          variables: {{n: "2"}}
          steps:
            - id: a
              type: ansible
              config: {{playbook: ping.yml, hosts: [{ssh_host}],
                        ansible_cfg: {{defaults: {{forks: "{{{{ vars.n }}}}",
                                                  interpreter_python: /usr/bin/python3}}}}}}
    """, variables={"n": "2\n[defaults]\nhost_key_checking = False"})
    step = by_id(summary)["a"]
    assert step["state"] == "failed"
    assert "ansible_cfg defaults.forks" in step["message"]
    assert "is not a number" in step["message"]
