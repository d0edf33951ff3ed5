"""Through real runs: run-form values and step outputs are data in every command,
secrets stay out of argv and keep their real value for later steps, templates are bounded."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_pipeline import by_id

HOSTILE = "x'; touch PWNED; echo \"$(touch PWNED)`touch PWNED`\\"


def test_a_hostile_variable_is_data_in_commands_and_scripts(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        pipeline:
          name: hostile
          variables:
            who: nobody
          steps:
            - id: bare
              type: command
              config: {command: "printf '%s' {{ vars.who }} > bare.txt"}
            - id: quoted
              type: command
              config:
                command: |
                  printf '%s' '{{ vars.who }}' > single.txt
                  printf '%s' "{{ vars.who }}" > double.txt
            - id: bashed
              type: command
              config: {shell: bash, command: "printf '%s' {{ vars.who }} > bash.txt"}
            - id: script
              type: script
              config:
                script: |
                  cat > heredoc.txt <<EOF
                  {{ vars.who }}
                  EOF
                  echo "out={{ vars.who }}" >> "$ANSFLOW_OUTPUT"
            - id: later
              type: command
              config: {command: "printf '%s' {{ steps.script.outputs.out }} > output.txt"}
    """, variables={"who": HOSTILE})
    assert state.is_completed(), summary
    for name in ("bare", "single", "double", "bash", "output"):
        assert (tmp_path / f"{name}.txt").read_text() == HOSTILE, name
    assert (tmp_path / "heredoc.txt").read_text() == HOSTILE + "\n"
    assert by_id(summary)["script"]["outputs"] == {"out": HOSTILE}
    assert not (tmp_path / "PWNED").exists()


def test_ansflow_run_var_is_data(prefect_server, tmp_path):
    (tmp_path / "p.yaml").write_text(
        "pipeline:\n  name: var-data\n  variables: {who: me}\n  steps:\n"
        "    - {id: greet, type: command, config: {command: "
        "\"echo hello {{ vars.who }} >> greeting.txt\"}}\n", encoding="utf-8")
    value = "x; touch PWNED"
    proc = subprocess.run([sys.executable, "-m", "ansflow.cli", "run", "p.yaml", "--json",
                           "--var", f"who={value}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "completed"
    assert (tmp_path / "greeting.txt").read_text() == f"hello {value}\n"
    assert not (tmp_path / "PWNED").exists()


def test_shell_code_filter_runs_shell_text_on_purpose(run_pipeline, tmp_path):
    state, summary = run_pipeline("""
        pipeline:
          name: opt-out
          variables: {extra: "; echo injected > injected.txt"}
          steps:
            - {id: a, type: command, config: {command: "true {{ vars.extra | shell_code }}"}}
    """)
    assert state.is_completed(), summary
    assert (tmp_path / "injected.txt").read_text() == "injected\n"


def test_secrets_never_reach_argv_and_keep_their_value_for_later_steps(run_pipeline,
                                                                         prefect_server,
                                                                         tmp_path):
    from prefect.blocks.system import Secret

    Secret(value="hunter2 'q'").save("h11-token", overwrite=True)
    Secret(value="7777").save("h11-four", overwrite=True)
    state, summary = run_pipeline("""
        pipeline:
          name: secret-argv
          steps:
            - id: use
              type: command
              config:
                command: >-
                  printf '%s' {{ secrets['h11-token'] }} > got.txt;
                  printf '%s' '{{ secrets['h11-token'] | upper }}' > upper.txt;
                  tr '\\0' ' ' < /proc/$$/cmdline > argv.txt;
                  echo "version=1.{{ pipeline.build_number }}7777" >> "$ANSFLOW_OUTPUT";
                  echo "four={{ secrets['h11-four'] }}" >> "$ANSFLOW_OUTPUT"
            - id: script
              type: script
              config:
                script: |
                  printf '%s' "{{ secrets['h11-token'] }}" > script-got.txt
                  cp "$0" script-copy.txt
            - id: later
              type: command
              config: {command: "printf '%s' {{ steps.use.outputs.version }} > version.txt"}
    """)
    assert state.is_completed(), summary
    assert (tmp_path / "got.txt").read_text() == "hunter2 'q'"
    assert (tmp_path / "upper.txt").read_text() == "HUNTER2 'Q'"
    assert (tmp_path / "script-got.txt").read_text() == "hunter2 'q'"
    argv = (tmp_path / "argv.txt").read_text()
    assert "hunter2" not in argv.lower() and "ANSFLOW_SECRET_1" in argv
    assert "hunter2" not in (tmp_path / "script-copy.txt").read_text().lower()
    # A short (4-character) secret is masked where shown, but later steps get the real value.
    n = summary["build_number"]
    assert (tmp_path / "version.txt").read_text() == f"1.{n}7777"
    outputs = by_id(summary)["use"]["outputs"]
    assert outputs["four"] == "***" and "7777" not in outputs["version"]
    assert "hunter2" not in json.dumps(summary).lower()


def test_template_bounds_fail_the_step_fast(run_pipeline, tmp_path):
    started = time.monotonic()
    state, summary = run_pipeline("""
        pipeline:
          name: bounded
          steps:
            - {id: power, type: command, allow_failure: true,
               config: {command: "echo {{ 9**999999999 }}"}}
            - {id: big, type: command, allow_failure: true,
               config: {command: "echo {{ 'x' * 2**31 }}"}}
            - id: endless
              type: command
              timeout: 2
              config:
                command: >-
                  {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}
                  true
    """)
    assert time.monotonic() - started < 60
    steps = by_id(summary)
    assert steps["power"]["state"] == "failed" and "too large" in steps["power"]["message"]
    assert steps["big"]["state"] == "failed" and "size limit" in steps["big"]["message"]
    assert steps["endless"]["state"] == "timedout", steps["endless"]
    assert "past its deadline" in steps["endless"]["message"]


def test_validation_refuses_values_where_they_cannot_be_quoted(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "pipeline:\n  name: bad\n  variables: {v: x}\n  steps:\n"
        "    - {id: a, type: command, config: {command: \"echo `{{ vars.v }}`\"}}\n",
        encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "ansflow.cli", "validate", "bad.yaml"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "bad.yaml:5:" in proc.stdout + proc.stderr
    assert "inside backticks" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.docker
def test_docker_run_gets_a_hostile_variable_as_data(run_pipeline, tmp_path, base_image):
    state, summary = run_pipeline(f"""
        pipeline:
          name: docker-data
          variables: {{v: none}}
          steps:
            - id: run
              type: docker_run
              config:
                image: {base_image}
                volumes: ["{tmp_path}:/w"]
                command: ["sh", "-c", "cd /w && printf '%s' {{{{ vars.v }}}} > out.txt"]
    """, variables={"v": HOSTILE})
    assert state.is_completed(), summary
    assert Path(tmp_path, "out.txt").read_text() == HOSTILE
    assert not Path(tmp_path, "PWNED").exists()


@pytest.mark.k8s
def test_k8s_exec_gets_a_hostile_step_output_as_data(run_pipeline, tmp_path, dev_cluster,
                                                     prefect_server):
    from kubernetes import client as k8s
    from prefect.blocks.system import Secret

    Secret(value="k8s 'tok'\n$(touch PWNED)").save("h11-k8s", overwrite=True)

    ns = dev_cluster.namespace("h11")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"a": "b"}},
           "spec": {"containers": [{"name": "main", "image": "example.invalid/web:1"}]}}
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(ns, pod)
        deadline = time.monotonic() + 60
        while core.read_namespaced_pod("web", ns).status.phase != "Running":
            assert time.monotonic() < deadline, "pod never ran"
            time.sleep(0.3)
    hostile = f"v; touch {tmp_path}/PWNED; echo $(touch {tmp_path}/PWNED)"
    (tmp_path / "value").write_text(hostile)
    state, summary = run_pipeline(f"""
        pipeline:
          name: exec-data
          steps:
            - id: make
              type: command
              config: {{command: 'echo "x=$(cat value)" >> "$ANSFLOW_OUTPUT"'}}
            - id: exec
              type: k8s_exec
              config:
                cluster: {dev_cluster.block_name}
                namespace: {ns}
                pod: web
                command: "echo got {{{{ steps.make.outputs.x }}}}"
            - id: secret
              type: k8s_exec
              config:
                cluster: {dev_cluster.block_name}
                namespace: {ns}
                pod: web
                command: >-
                  cd {tmp_path} && printf '%s' {{{{ secrets['h11-k8s'] }}}} > k8s-secret.txt &&
                  tr '\\0' ' ' < /proc/$$/cmdline > k8s-argv.txt && cat && echo done
    """)
    assert state.is_completed(), summary
    assert by_id(summary)["exec"]["outputs"]["stdout_tail"] == f"got {hostile}"
    assert not (tmp_path / "PWNED").exists()
    # The secret reached the command through stdin (an exec has no environment), not argv.
    assert (tmp_path / "k8s-secret.txt").read_text() == "k8s 'tok'\n$(touch PWNED)"
    assert "tok" not in (tmp_path / "k8s-argv.txt").read_text()
    assert by_id(summary)["secret"]["outputs"]["stdout_tail"] == "done"
