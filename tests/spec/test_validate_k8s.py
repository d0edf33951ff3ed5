"""Validation of the Kubernetes steps and of steps in pods: targets inherited from defaults
and from the step before, each step type's config checked with FILE:LINE:COL positions."""

from plan_text import ok, problems

from ansflow.spec.validate import load_plan


def test_k8s_step_without_cluster_is_an_error_naming_the_step(tmp_path):
    out = problems(tmp_path, """\
steps:
  - name: wait
    type: k8s_wait
    config: {resource_type: deployment, resource_name: x}
""")
    assert any("step 'wait' (k8s_wait) names no cluster" in o for o in out)


def test_a_pod_step_without_image_or_cluster_is_refused_with_positions(tmp_path):
    out = problems(tmp_path, """\
steps:
  - {id: play, type: ansible, config: {playbook: site.yml, hosts: [a], groups: {g: [b]}}}
  - {id: pod, type: command, runs_on: kubernetes, config: {command: x}}
""")
    assert len(out) == 3 and out[0].startswith("p.yaml:2:")
    assert "groups name hosts not in 'hosts': 'b'" in out[0]
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
    plan = ok(tmp_path, """\
pipeline:
  name: m
  defaults: {k8s: {cluster: c, namespace: n}}
  steps:
    - {id: logs, type: k8s_logs, config: {pod_selector: app=web, follow: true, since_seconds: 10m}}
""")
    logs = plan.step("logs")
    assert (logs.config["cluster"], logs.config["namespace"]) == ("c", "n")


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
