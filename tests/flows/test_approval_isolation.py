"""A step cannot answer its own run's approval with what ansflow gives it: the worker's
Prefect API settings never reach a step's environment, whatever a pass-through names."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from ansflow.errors import SpecError
from ansflow.stepenv import NEVER_INHERITED, check_pattern, inherited_env, reachable

pytestmark = pytest.mark.server


def test_prefect_api_settings_are_never_inherited():
    environ = {name: "secret-ish" for name in NEVER_INHERITED}
    environ.update(PATH="/bin", PREFECT_LOGGING_LEVEL="INFO",
                   ANSFLOW_ENV_PASSTHROUGH="PREFECT_*,PREFECT_API_URL")
    assert inherited_env(["PREFECT_*", "*_URL"], environ) == {
        "PATH": "/bin", "PREFECT_LOGGING_LEVEL": "INFO"}
    for name in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"):
        assert "never given to a step" in check_pattern(name)
        assert not reachable(name, ["PREFECT_*"], [])


def test_a_pipeline_cannot_pass_the_api_through(tmp_path):
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text("pipeline:\n  name: p\n  env_passthrough: [PREFECT_API_URL]\n  stages:\n"
                    "    - {name: s, steps: [{id: a, type: command, config: {command: 'true'}}]}\n")
    with pytest.raises(SpecError, match="PREFECT_API_URL.*never given to a step"):
        load_plan(path)


SELF_APPROVE = """\
pipeline:
  name: approval-self
  env_passthrough: ["PREFECT_*"]
  stages:
    - name: both
      parallel: true
      steps:
        - id: gate
          type: approval
          config: {{message: "Go?", timeout: 25s}}
        - id: sneak
          type: command
          env: {{PREFECT_SERVER_ALLOW_EPHEMERAL_MODE: "false"}}
          config:
            command: >-
              env > step-env;
              {python} -c "import os; from prefect.flow_runs import resume_flow_run;
              resume_flow_run(os.environ['ANSFLOW_RUN_ID'], run_input={{'approve': True}})"
              > attempt 2>&1 && echo answered >> attempt || echo refused >> attempt
"""


def test_a_step_cannot_answer_its_own_approval_with_its_environment(prefect_server, tmp_path,
                                                                    monkeypatch):
    from ansflow.flows.pipeline import pipeline_flow

    # The worker's operator passes every PREFECT_* variable through: still not the API's.
    monkeypatch.setenv("ANSFLOW_ENV_PASSTHROUGH", "PREFECT_*")
    assert os.environ.get("PREFECT_API_URL")  # the worker itself reaches the server
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(SELF_APPROVE.format(python=sys.executable)))
    monkeypatch.chdir(tmp_path)
    state = pipeline_flow(str(path), None, return_state=True)
    step_env = (tmp_path / "step-env").read_text()
    assert "ANSFLOW_RUN_ID=" in step_env
    assert not [line for line in step_env.splitlines()
                if line.split("=", 1)[0] in NEVER_INHERITED]
    attempt = (tmp_path / "attempt").read_text()
    assert attempt.strip().endswith("refused"), attempt
    assert state.is_failed()
    from ansflow.store import Store

    store = Store()
    try:
        summary = store.summary(str(state.state_details.flow_run_id))
    finally:
        store.close()
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["gate"]["state"] == "timedout", steps["gate"]  # never approved
    assert steps["sneak"]["state"] == "completed"
