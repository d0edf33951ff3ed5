"""Names, namespaces and selectors of Kubernetes steps written as literals are checked by the
API server's rules at validation (FILE:LINE:COL); templated ones when the step runs."""

from plan_text import ok, problems


def test_literal_hostile_names_namespaces_and_selectors_are_reported_with_positions(tmp_path):
    out = problems(tmp_path, """\
steps:
  - id: del
    type: k8s_delete
    config:
      cluster: dev
      resource_type: configmap
      resource_name: x/../../../kube-system/secrets/victim
  - id: scale
    type: k8s_scale
    config: {cluster: dev, namespace: "review-1/../prod", resource_name: web, replicas: 1}
  - id: logs
    type: k8s_logs
    config: {cluster: dev, pod_selector: "app=x&watch=true"}
  - id: exec
    type: k8s_exec
    config: {cluster: dev, pod: "..", command: "true"}
  - id: wait
    type: k8s_wait
    config: {cluster: dev, resource_type: deployment, resource_name: "%2e%2e"}
  - id: logs2
    type: k8s_logs
    config: {cluster: dev, pod: web-0, container: "Main"}
""")
    text = "\n".join(out)
    assert len(out) == 6, text
    assert out[0].startswith("p.yaml:7:22: ") and "resource_name " \
        "'x/../../../kube-system/secrets/victim' is not a valid Kubernetes name: may not " \
        "contain '/'" in out[0]
    assert out[1].startswith("p.yaml:10:") and \
        "namespace 'review-1/../prod' is not a valid Kubernetes namespace" in out[1]
    assert out[2].startswith("p.yaml:13:") and "pod_selector 'app=x&watch=true' is not a " \
        "valid Kubernetes label selector" in out[2]
    assert out[3].startswith("p.yaml:16:") and "pod '..' is not a valid Kubernetes name" in out[3]
    assert out[4].startswith("p.yaml:19:") and "resource_name '%2e%2e'" in out[4]
    assert out[5].startswith("p.yaml:22:") and "container 'Main' is not a valid Kubernetes " \
        "container name" in out[5]


def test_valid_and_templated_names_pass_validation(tmp_path):
    plan = ok(tmp_path, """\
pipeline:
  name: names
  variables: {pr: "42"}
  steps:
    - id: del
      type: k8s_delete
      config: {cluster: dev, namespace: "review-{{ vars.pr }}", resource_type: cm,
               label_selector: "app=x,foo,tier in (a, b),!old"}
    - id: scale
      type: k8s_scale
      config: {cluster: dev, namespace: team-a, resource_name: "web.v2", replicas: 1}
    - id: role
      type: k8s_delete
      config: {cluster: dev, resource_type: clusterrole, allow_cluster_scoped: true,
               resource_name: "system:old-role"}
""")
    assert [s.id for s in plan.steps] == ["del", "scale", "role"]


def test_a_literal_hostile_namespace_in_defaults_and_pod_steps_is_reported(tmp_path):
    out = problems(tmp_path, """\
pipeline:
  name: pods
  defaults:
    k8s: {cluster: dev, namespace: "ci/../kube-system"}
    kubernetes: {namespace: ".."}
    docker: {image: "busybox:1"}
  steps:
    - {id: a, type: command, runs_on: kubernetes, config: {command: x, namespace: "A_B"}}
""")
    text = "\n".join(out)
    assert len(out) == 3, text
    assert out[0].startswith("p.yaml:4:") and "namespace 'ci/../kube-system' is not a valid " \
        "Kubernetes namespace" in out[0]
    assert out[1].startswith("p.yaml:5:") and "namespace '..'" in out[1]
    assert out[2].startswith("p.yaml:8:") and "namespace 'A_B'" in out[2]
