"""Run-form constraints (pattern, enum, lengths, bounds) through a real served deployment:
the server's form carries them and refuses a bad value; a run that gets one anyway (an
`ansflow run` or a deployment without schema enforcement) fails before any step."""

from __future__ import annotations

import pytest
from prefect.exceptions import PrefectHTTPStatusError

pytestmark = pytest.mark.server

PIPELINE = """\
pipeline:
  name: {name}
  variables:
    target: {{default: dev, enum: [dev, prod]}}
    tag: {{default: "1.0", pattern: "^[0-9][0-9.]*$", maxLength: 12, minLength: 1}}
    replicas: {{default: 2, type: integer, minimum: 1, maximum: 5}}
    note: none
  steps:
    - id: say
      type: command
      config:
        command: "echo {{{{ vars.target }}}} {{{{ vars.tag }}}} '{{{{ vars.note }}}}' > ran.txt"
"""


def test_served_form_carries_the_constraints_and_refuses_bad_values(serve, deploy, tmp_path,
                                                                     unique):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    (tmp_path / "p.yaml").write_text(PIPELINE.format(name=unique), encoding="utf-8")
    proc = serve(str(tmp_path / "p.yaml"))
    dep = deploy.wait_for_deployment(unique, proc=proc)
    deploy.wait_for_runner(proc)
    props = dep.parameter_openapi_schema["properties"]
    assert props["target"]["enum"] == ["dev", "prod"]
    assert props["tag"]["pattern"] == "^[0-9][0-9.]*$"
    assert props["tag"]["maxLength"] == 12 and props["tag"]["minLength"] == 1
    assert props["replicas"]["minimum"] == 1 and props["replicas"]["maximum"] == 5
    with get_client(sync_client=True) as client:
        for bad in ({"target": "staging"}, {"tag": "1.0; touch PWNED"}, {"tag": "9" * 13},
                    {"replicas": 9}):
            with pytest.raises(PrefectHTTPStatusError, match=next(iter(bad))):
                client.create_flow_run_from_deployment(dep.id, parameters=bad)
        assert client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[dep.id]))) == []
    # An unconstrained run-form value is data in the command all the same.
    note = "x'; touch PWNED; echo '$(touch PWNED)"
    good = deploy.run_and_wait(unique, {"target": "prod", "tag": "2.1", "replicas": 5,
                                        "note": note})
    assert good.state.is_completed(), good.state
    assert (tmp_path / "ran.txt").read_text() == f"prod 2.1 {note}\n"
    assert not (tmp_path / "PWNED").exists()


def test_a_run_with_a_bad_value_fails_before_any_step_naming_the_variable(run_pipeline,
                                                                         tmp_path):
    text = PIPELINE.format(name="constrained")
    for bad, message in (({"target": "staging"}, "variable 'target': the value 'staging' is "
                          "not one of 'dev', 'prod'"),
                         ({"tag": "1;touch PWN"}, "variable 'tag': the value '1;touch PWN' "
                          "does not match the pattern"),
                         ({"tag": "1" * 13}, "is longer than 12 characters"),
                         ({"replicas": "0"}, "variable 'replicas': the value 0 is less than "
                          "the minimum 1")):
        state, _ = run_pipeline(text, variables=bad)
        assert state.is_failed() and message in state.message, state.message
        assert not (tmp_path / "ran.txt").exists()
    state, _ = run_pipeline(text, variables={"tag": "3.0"})
    assert state.is_completed()
    assert (tmp_path / "ran.txt").read_text() == "dev 3.0 none\n"
