"""Validation: every problem at once, at the right FILE:LINE:COL, with suggestions."""

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from ansflow.errors import SpecError, UsageError
from ansflow.spec.schema import pipeline_json_schema
from ansflow.spec.validate import load_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_plan(path)
    return [str(p).replace(str(path), "p.yaml") for p in info.value.problems]


def ok(tmp_path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path)


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


def test_k8s_step_without_cluster_is_an_error_naming_the_step(tmp_path):
    out = problems(tmp_path, """\
steps:
  - name: wait
    type: k8s_wait
    config: {resource_type: deployment, resource_name: x}
""")
    assert any("step 'wait' (k8s_wait) names no cluster" in o for o in out)


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


def test_a_pod_step_without_image_or_cluster_is_refused_with_positions(tmp_path):
    out = problems(tmp_path, """\
steps:
  - {id: play, type: ansible, config: {playbook: site.yml, hosts: [a], groups: {g: [b]}}}
  - {id: pod, type: command, runs_on: kubernetes, config: {command: x}}
""")
    assert len(out) == 3 and out[0].startswith("p.yaml:2:")
    assert "groups name hosts not in 'hosts': b" in out[0]
    assert out[1] == ("p.yaml:3:5: step 'pod' runs on kubernetes but names no image: set its "
                      "config.image or `defaults.kubernetes.image`")
    assert out[2].startswith("p.yaml:3:5: step 'pod' runs on kubernetes but names no cluster")


def test_defaults_kubernetes_fill_in_pod_steps(tmp_path):
    plan = ok(tmp_path, """\
pipeline:
  name: pods
  type: kubernetes
  defaults:
    k8s: {cluster: dev, namespace: ci}
    docker: {image: "busybox:1"}
    kubernetes:
      namespace: pods
      node_selector: {disk: ssd}
      resources: {limits: {memory: 64Mi}}
  steps:
    - {id: a, type: command, config: {command: x}}
    - {id: b, type: script, config: {script: x, image: "alpine:3", namespace: own}}
    - {id: c, type: command, runs_on: local, config: {command: x}}
""")
    by = {s.id: s for s in plan.steps}
    assert by["a"].runs_on == "kubernetes"
    assert {k: by["a"].config[k] for k in ("image", "cluster", "namespace", "node_selector",
                                            "resources")} == {
        "image": "busybox:1", "cluster": "dev", "namespace": "pods",
        "node_selector": {"disk": "ssd"}, "resources": {"limits": {"memory": "64Mi"}}}
    assert (by["b"].config["image"], by["b"].config["namespace"]) == ("alpine:3", "own")
    assert "cluster" not in by["c"].config and by["c"].runs_on == "local"


def test_pod_resources_take_requests_and_limits_only(tmp_path):
    out = problems(tmp_path, """\
steps:
  - {id: pod, type: command, runs_on: kubernetes,
     config: {command: x, image: i, cluster: c, resources: {limit: {cpu: 1}}}}
""")
    assert len(out) == 1 and "resources takes 'requests' and 'limits', not limit" in out[0]


def test_k8s_scale_restart_rollback_validate_with_positions(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: manage
  defaults: {k8s: {cluster: c, namespace: n}}
  variables: {kind: sts, rev: 2}
  steps:
    - {id: s1, type: k8s_scale, config: {resource_name: a, replicas: -1}}
    - {id: s2, type: k8s_scale, config: {resource_name: a, replicas: 2, resource_type: daemonset}}
    - {id: s3, type: k8s_scale, config: {resource_name: a}}
    - {id: r1, type: k8s_restart, config: {resource_name: a, resource_type: job}}
    - {id: b1, type: k8s_rollback, config: {resource_name: a, revision: 0}}
    - {id: b2, type: k8s_rollback, config: {resource_name: a, resource_type: replicaset}}
    - {id: b3, type: k8s_rollback, config: {resource_name: a, revison: 2}}
    - {id: ok1, type: k8s_scale, config: {resource_name: a, replicas: 0, resource_type: sts}}
    - {id: ok2, type: k8s_restart, config: {resource_name: a, resource_type: "{{ vars.kind }}"}}
    - {id: ok3, type: k8s_rollback, config: {resource_name: a, revision: 3, resource_type: ds}}
    - {id: ok4, type: k8s_rollback, config: {resource_name: a, revision: "{{ vars.rev }}"}}
""")
    assert out == [
        "p.yaml:6:70: 'replicas': Input should be greater than or equal to 0",
        "p.yaml:7:88: 'resource_type': resource_type 'daemonset' is not one of deployment, "
        "replicaset, statefulset",
        "p.yaml:8:41: missing required key 'replicas'",
        "p.yaml:9:77: 'resource_type': resource_type 'job' is not one of daemonset, "
        "deployment, statefulset",
        "p.yaml:10:73: 'revision': Input should be greater than or equal to 1",
        "p.yaml:11:78: 'resource_type': resource_type 'replicaset' is not one of daemonset, "
        "deployment, statefulset",
        "p.yaml:12:63: unknown key 'revison'; did you mean 'revision'?",
    ]


def test_k8s_wait_condition_is_checked_by_validate_unless_templated(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: w
  variables: {cond: ready}
  steps:
    - {type: k8s_wait, config: {cluster: c, namespace: n, resource_type: deploy, resource_name: a, condition: avialable}}
    - {type: k8s_wait, config: {cluster: c, namespace: n, resource_type: deploy, resource_name: a, condition: "{{ vars.cond }}"}}
""")
    assert out == ["p.yaml:5:111: 'condition': unknown condition 'avialable': use available, "
                   "rollout, ready, complete, deleted, condition=TYPE[=VALUE] or "
                   "jsonpath={.path}[=VALUE]"]


def test_k8s_steps_inherit_cluster_and_namespace_from_the_step_that_runs_before(tmp_path):
    path = tmp_path / "p.yaml"
    # Written order: wait (stage b) above deploy (stage a), but b needs a, so deploy runs
    # first and the wait inherits from it, not from the step written above it.
    path.write_text("""\
pipeline:
  name: order
  stages:
    - name: b
      needs: [a]
      steps:
        - {id: wait, type: k8s_wait, config: {resource_type: deploy, resource_name: x}}
    - name: c
      needs: []
      steps:
        - {id: other, type: k8s_exec, config: {cluster: elsewhere, namespace: far, pod: p, command: x}}
    - name: a
      needs: []
      steps:
        - {id: deploy, type: k8s_deploy, config: {cluster: prod, namespace: shop, manifest: "kind: ConfigMap"}}
""")
    plan = load_plan(path)
    wait = plan.step("wait")
    assert (wait.config["cluster"], wait.config["namespace"]) == ("prod", "shop")
    out = problems(tmp_path, """\
stages:
  - {name: a, needs: [], steps: [{id: exec, type: k8s_exec, config: {pod: p, command: x}}]}
  - {name: b, needs: [], steps: [{id: dep, type: k8s_deploy, config: {cluster: c, namespace: n, manifest: "kind: ConfigMap"}}]}
""")
    assert any("step 'exec' (k8s_exec) names no cluster, and neither `defaults.k8s.cluster` "
               "nor a k8s step that runs before it gives one" in o for o in out), out


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


def test_k8s_delete_and_k8s_logs_are_validated_with_positions(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: m
  defaults: {k8s: {cluster: c, namespace: n}}
  steps:
    - {id: both, type: k8s_delete, config: {resource_type: cm, resource_name: a, label_selector: x=y}}
    - {id: prop, type: k8s_delete, config: {resource_type: cm, resource_name: a, propagation: later}}
    - {id: nopod, type: k8s_logs, config: {tail_lines: 5}}
    - {id: since, type: k8s_logs, config: {pod: p, since_seconds: soon}}
    - {id: ok1, type: k8s_delete, config: {resource_type: ns, resource_name: x, allow_cluster_scoped: true}}
    - {id: ok2, type: k8s_logs, config: {pod_selector: app=web, follow: true, timeout: 1m, since_seconds: 10m}}
""")
    assert len(out) == 4, out
    assert out[0].startswith("p.yaml:5:44: ") and "exactly one of 'resource_name' or " \
        "'label_selector'" in out[0]
    assert out[1].startswith("p.yaml:6:95: ") and "'background', 'foreground' or 'orphan'" \
        in out[1]
    assert out[2].startswith("p.yaml:7:43: ") and "exactly one of 'pod' or 'pod_selector'" \
        in out[2]
    assert out[3].startswith("p.yaml:8:67: ") and "'soon' is not a duration" in out[3]
    plan = load_plan_text(tmp_path, """\
pipeline:
  name: m
  defaults: {k8s: {cluster: c, namespace: n}}
  steps:
    - {id: logs, type: k8s_logs, config: {pod_selector: app=web, follow: true, since_seconds: 10m}}
""")
    logs = plan.step("logs")
    assert (logs.config["cluster"], logs.config["namespace"]) == ("c", "n")


def load_plan_text(tmp_path, text: str):
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan(path)


def test_k8s_delete_ignore_missing_and_k8s_logs_since_are_aliases_one_at_a_time(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: m
  defaults: {k8s: {cluster: c, namespace: n}}
  steps:
    - {id: d1, type: k8s_delete, config: {resource_type: cm, resource_name: a, ignore_missing: true}}
    - {id: d2, type: k8s_delete, config: {resource_type: cm, resource_name: a, ignore_missing: true, ignore_not_found: false}}
    - {id: l1, type: k8s_logs, config: {pod: p, since: 1h}}
    - {id: l2, type: k8s_logs, config: {pod: p, since: 1h, since_seconds: 30}}
    - {id: l3, type: k8s_logs, config: {pod: p, since: later}}
""")
    assert len(out) == 3, out
    assert out[0].startswith("p.yaml:6:42: ") and "only one of 'ignore_not_found' or " \
        "'ignore_missing'" in out[0]
    assert out[1].startswith("p.yaml:8:40: ") and "only one of 'since_seconds' or 'since'" \
        in out[1]
    assert out[2].startswith("p.yaml:9:") and "'later' is not a duration" in out[2]
    from ansflow.spec.steps import K8sDeleteConfig, K8sLogsConfig

    assert K8sDeleteConfig(resource_type="cm", resource_name="a",
                           ignore_missing=True).ignore_not_found is True
    assert K8sLogsConfig(pod="p", since="1h").since_seconds == 3600.0
