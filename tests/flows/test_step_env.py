"""A step gets a clean environment, never the worker's credentials, unless the
pipeline (or the worker's operator) passes a variable through; `{{ env.* }}` sees the same."""

import pytest
from fixtures_pipeline import by_id

from ansflow.errors import SpecError
from ansflow.spec.validate import plan_from_bytes
from ansflow.stepenv import inherited_env

SECRETS = {"PREFECT_API_KEY": "sekrit-api-key", "AWS_SECRET_ACCESS_KEY": "u:pw@db",
           "DEPLOY_API_KEY": "deploy-api-key",
           "DOCKER_HOST": "tcp://10.9.8.7:2375", "MY_PROXY": "http://proxy:3128",
           "LC_ANSFLOW_TEST": "C.UTF-8"}

DUMP = """
pipeline:
  name: env-dump
  {passthrough}
  env:
    DECLARED: "from-the-pipeline"
  steps:
    - name: dump
      type: script
      config:
        interpreter: python3
        script: |
          import json, os
          with open(os.environ["ANSFLOW_OUTPUT"], "a") as f:
              f.write("env=" + json.dumps(dict(os.environ)) + "\\n")
"""


def _env_of(run_pipeline, passthrough: str = "") -> dict:
    import json
    state, summary = run_pipeline(DUMP.format(passthrough=passthrough))
    assert state.is_completed(), summary["message"]
    return json.loads(by_id(summary)["dump"]["outputs"]["env"])


def test_worker_credentials_do_not_reach_a_step(run_pipeline, monkeypatch, tmp_path):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    # The run's own store really uses it (a password-free URL the test can recognise).
    monkeypatch.setenv("ANSFLOW_DATABASE_URL", f"sqlite:///{tmp_path}/u-pw-store.db")
    env = _env_of(run_pipeline)
    for name in ("PREFECT_API_KEY", "ANSFLOW_DATABASE_URL", "AWS_SECRET_ACCESS_KEY",
                 "DOCKER_HOST", "MY_PROXY", "ANSFLOW_HOME", "PREFECT_API_URL", "PREFECT_HOME"):
        assert name not in env, name
    assert not any(v in " ".join(env.values()) for v in ("sekrit-api-key", "u:pw@db", "u-pw-store"))
    # The clean base: a command still finds its tools and its home.
    assert env["PATH"] and env["HOME"] and env["LC_ANSFLOW_TEST"] == "C.UTF-8"
    assert env["DECLARED"] == "from-the-pipeline" and env["CI"] == "true"
    assert env["ANSFLOW_PIPELINE"] == "env-dump"


def test_pipeline_and_worker_pass_through_lists(run_pipeline, monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("ANSFLOW_ENV_PASSTHROUGH", "DOCKER_HOST, NOT_SET_ANYWHERE")
    env = _env_of(run_pipeline, "env_passthrough: [DEPLOY_API_KEY, MY_*, PREFECT_*]")
    assert env["DEPLOY_API_KEY"] == "deploy-api-key"
    assert "PREFECT_API_KEY" not in env  # the worker's way to the Prefect API: never
    assert env["MY_PROXY"] == "http://proxy:3128"
    assert env["DOCKER_HOST"] == "tcp://10.9.8.7:2375"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "NOT_SET_ANYWHERE" not in env


def test_undeclared_worker_variable_in_a_template_is_refused_at_validation():
    text = b"""pipeline:
  name: t
  steps:
    - type: command
      config:
        command: "echo {{ env.DEPLOY_API_KEY }} {{ env.HOME }} {{ env.ANSFLOW_RUN_ID }}"
"""
    with pytest.raises(SpecError) as err:
        plan_from_bytes(text, "p.yaml", workspace="/tmp", default_name="t")
    message = str(err.value)
    assert "p.yaml:6:18:" in message and "DEPLOY_API_KEY" in message
    assert "env_passthrough" in message and "HOME" not in message.split("DEPLOY_API_KEY")[0]
    assert message.count("steps do not inherit") == 1
    # Passed through, or declared: accepted.
    ok = text.replace(b"  steps:", b"  env_passthrough: [DEPLOY_*]\n  steps:")
    plan_from_bytes(ok, "p.yaml", workspace="/tmp", default_name="t")
    # The Prefect API's settings are never reachable, whatever passes them through.
    api = ok.replace(b"env.DEPLOY_API_KEY", b"env.PREFECT_API_KEY").replace(
        b"[DEPLOY_*]", b"[PREFECT_*]")
    with pytest.raises(SpecError, match="PREFECT_API_KEY"):
        plan_from_bytes(api, "p.yaml", workspace="/tmp", default_name="t")


def test_a_bad_pass_through_entry_is_refused_at_its_position():
    text = b"""pipeline:
  name: t
  env_passthrough: [HTTP_PROXY, "*"]
  steps:
    - type: command
      config: {command: "true"}
"""
    with pytest.raises(SpecError) as err:
        plan_from_bytes(text, "p.yaml", workspace="/tmp", default_name="t")
    assert "p.yaml:3:" in str(err.value) and "whole environment" in str(err.value)


def test_template_env_is_what_the_step_sees(run_pipeline, monkeypatch):
    monkeypatch.setenv("PREFECT_API_KEY", "sekrit-api-key")
    monkeypatch.setenv("MY_PROXY", "http://proxy:3128")
    state, summary = run_pipeline("""
        pipeline:
          name: tpl
          env_passthrough: [MY_PROXY]
          steps:
            - name: show
              type: command
              config:
                command: echo "seen={{ env.MY_PROXY }}|{{ env.HOME }}" >> "$ANSFLOW_OUTPUT"
        """)
    assert state.is_completed(), summary["message"]
    assert by_id(summary)["show"]["outputs"]["seen"].startswith("http://proxy:3128|/")


def test_inherited_env_units():
    worker = {"PATH": "/bin", "PREFECT_API_KEY": "k", "LC_ALL": "C", "HTTP_PROXY": "p",
              "DEPLOY_API_KEY": "d", "ANSFLOW_ENV_PASSTHROUGH": "HTTP_*,  *, bad-name"}
    assert inherited_env([], worker) == {"PATH": "/bin", "LC_ALL": "C", "HTTP_PROXY": "p"}
    assert inherited_env(["DEPLOY_API_KEY"], worker)["DEPLOY_API_KEY"] == "d"
    assert "PREFECT_API_KEY" not in inherited_env(["PREFECT_API_KEY", "PREFECT_*"], worker)


def test_a_task_in_a_plain_flow_gets_the_clean_env_too(prefect_server, monkeypatch, tmp_path):
    from prefect import flow

    from ansflow import tasks

    monkeypatch.setenv("PREFECT_API_KEY", "sekrit-api-key")
    monkeypatch.setenv("MY_PROXY", "http://proxy:3128")

    @flow
    def user_flow():
        line = 'echo "seen=${PREFECT_API_KEY:-none}|${MY_PROXY:-none}" >> "$ANSFLOW_OUTPUT"'
        return (tasks.command(command=line, workspace=str(tmp_path)),
                tasks.command(command=line, workspace=str(tmp_path),
                              env_passthrough=["MY_*"]))

    clean, passed = user_flow()
    assert clean["outputs"]["seen"] == "none|none"
    assert passed["outputs"]["seen"] == "none|http://proxy:3128"
