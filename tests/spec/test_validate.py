"""Validation: every problem at once, at the right FILE:LINE:COL, with suggestions."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from plan_text import problems

from ansflow.errors import UsageError
from ansflow.spec.schema import pipeline_json_schema
from ansflow.spec.validate import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["docker-steps.yaml", "k8s-steps.yaml", "full-stack.yaml"])
def test_seed_examples_validate_unchanged(name):
    plan = load_plan(EXAMPLES / "seed" / name)
    assert plan.steps


def test_every_example_validates_against_the_published_json_schema():
    schema = pipeline_json_schema()
    files = sorted(EXAMPLES.rglob("*.yaml"))
    assert len(files) >= 4
    for file in files:
        jsonschema.validate(yaml.safe_load(file.read_text(encoding="utf-8")), schema)


def test_schema_rejects_an_unknown_key():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"steps": [{"type": "command", "config": {"comand": "x"}}]},
                            pipeline_json_schema())


def test_seed_defaults_k8s_target_inherited_and_implicit_deployment():
    plan = load_plan(EXAMPLES / "seed" / "full-stack.yaml")
    deploy = next(s for s in plan.steps if s.type == "k8s_deploy")
    exec_step = next(s for s in plan.steps if s.type == "k8s_exec")
    assert exec_step.config["cluster"] == "local-minikube"
    assert exec_step.config["namespace"] == "development"
    spec = deploy.config["deployment_spec"]
    assert spec["name"] == "my-app" and spec["labels"] == {"app": "my-app"}
    assert spec["replicas"] == 1
    assert spec["image"] == "{{ steps.docker_build.outputs.image }}"
    build = next(s for s in plan.steps if s.type == "docker_build")
    assert "tag" not in build.config  # the model default (latest) applies at run time


def test_seed_stages_run_in_written_order():
    plan = load_plan(EXAMPLES / "seed" / "full-stack.yaml")
    ids = [s.id for s in plan.steps]
    for before, after in zip(ids, ids[1:]):
        assert plan.step(after).needs == [before]


def test_all_problems_reported_at_once_with_positions(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: bad
  variables:
    image: app
  stages:
    - name: Build
      steps:
        - name: build
          type: docker_buld
          config: {image_name: x}
        - name: compile
          type: command
          retries: many
          config:
            comand: "make"
        - name: echo
          type: command
          needs: [compil]
          config:
            command: "echo {{ vars.imgae }} {{ steps.later.outputs.x }}"
    - name: Test
      needs: [Buil]
      steps:
        - id: later
          type: script
          config: {script: "x", file: "y"}
""")
    assert out[0].startswith("p.yaml:9:17: unknown step type 'docker_buld'; did you mean "
                             "'docker_build'?")
    assert "p.yaml:13:20: 'retries': expected an integer, got 'many'" in out
    assert "p.yaml:15:13: unknown key 'comand'; did you mean 'command'?" in out
    assert "p.yaml:18:19: step 'echo' needs unknown step 'compil'; did you mean 'compile'?" in out
    assert any(o.startswith("p.yaml:20:22: step 'echo': unknown variable 'vars.imgae'; "
                            "did you mean 'image'? (variables: image)") for o in out)
    assert any("p.yaml:20:22:" in o and "does not run before step 'echo'" in o for o in out)
    assert "p.yaml:22:15: stage 'Test' needs unknown stage 'Buil'; did you mean 'Build'?" in out
    assert "p.yaml:26:19: give exactly one of 'script' (inline) or 'file'" in out


def test_cycles_are_named(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: c
  stages:
    - {name: a, needs: [b], steps: [{type: command, config: {command: x}}]}
    - {name: b, needs: [a], steps: [{type: command, id: two, config: {command: x}}]}
""")
    assert out == ["p.yaml:4:24: stages form a cycle: a -> b -> a"]
    out = problems(tmp_path, """\
steps:
  - {id: x, needs: [y], type: command, config: {command: x}}
  - {id: y, needs: [x], type: command, config: {command: x}}
""")
    assert len(out) == 1 and "steps form a cycle" in out[0]
    assert "x -> y -> x" in out[0] or "y -> x -> y" in out[0]


def test_duplicate_ids_and_missing_type(tmp_path):
    out = problems(tmp_path, """\
steps:
  - {id: a, type: command, config: {command: x}}
  - {id: a, type: command, config: {command: y}}
  - {name: no type, config: {}}
""")
    assert "p.yaml:3:10: duplicate step id 'a'" in out
    assert any(o.startswith("p.yaml:4:5: step has no 'type'") for o in out)


def test_sandbox_escape_refused_at_validation(tmp_path):
    out = problems(tmp_path, "steps:\n  - type: command\n    config: {command: \"{{ ''.__class__ }}\"}\n")
    assert out == ["p.yaml:3:23: step 'command': access to private attribute '__class__' is not "
                   "allowed in a template"]


@pytest.mark.parametrize("text, expected", [
    ("- a\n- b\n", "p.yaml:1:1: expected a mapping with `pipeline:` or `steps:` at the top, got list"),
    ("pipeline: 3\n", "p.yaml:1:11: `pipeline:` must be a mapping, got int"),
    ("stepz: []\n", "p.yaml:1:1: expected `pipeline:` or `steps:` at the top; did you mean 'steps'?"),
    ("steps: [{type: command, config: {command: x}}]\nx: !!python/name:os.system\n",
     "p.yaml:2:4: YAML tag 'tag:yaml.org,2002:python/name:os.system' is not allowed: pipeline "
     "files hold plain data only"),
])
def test_shape_errors(tmp_path, text, expected):
    assert problems(tmp_path, text) == [expected]


def test_implicit_deploy_without_build_is_an_error(tmp_path):
    out = problems(tmp_path, "steps:\n  - name: d\n    type: k8s_deploy\n    config: {cluster: c, namespace: n}\n")
    assert any("earlier docker_build step, but there is none" in o for o in out)


def test_templated_typed_field_is_checked_after_rendering(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""\
pipeline:
  name: t
  variables: {n: 3}
  steps:
    - type: k8s_wait
      config: {cluster: c, namespace: n, resource_type: deploy, resource_name: app,
               timeout: "{{ vars.n }}"}
""")
    assert load_plan(path).steps[0].config["timeout"] == "{{ vars.n }}"


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_plan(tmp_path / "nope.yaml")


def test_plan_json_round_trips():
    plan = load_plan(EXAMPLES / "seed" / "k8s-steps.yaml")
    assert json.loads(json.dumps(plan.to_dict()))["name"] == "k8s-steps"


def test_published_schema_file_is_up_to_date():
    published = json.loads((EXAMPLES.parent / "docs" / "pipeline.schema.json").read_text())
    assert published == pipeline_json_schema(), "run: ansflow schema > docs/pipeline.schema.json"


def test_non_finite_durations_and_binary_tags_are_refused(tmp_path):
    out = problems(tmp_path, """\
steps:
  - {id: a, type: command, timeout: .nan, config: {command: x}}
  - {id: b, type: command, retry_delay: .inf, config: {command: x}}
""")
    assert len(out) == 2 and all("must be a finite number of seconds" in o for o in out), out
    out = problems(tmp_path, """\
steps:
  - {id: a, type: command, config: {command: !!binary aGVsbG8=}}
""")
    assert len(out) == 1 and "YAML tag 'tag:yaml.org,2002:binary' is not allowed" in out[0], out
