"""A run-form value inserted into k8s_deploy's inline manifest or helm values, through a real
pipeline run on the dev cluster: one scalar, never a field, a container setting or an object
of its own (the renderer: tests/test_yamltemplate.py)."""

from __future__ import annotations

import pytest
from fixtures_pipeline import by_id
from k8s_workloads import deploy
from kubernetes import client as k8s

from ansflow.errors import StepFailed
from ansflow.yamltemplate import render_yaml

pytestmark = pytest.mark.k8s


def hostile(ns: str) -> str:
    """A tag that, rendered as text into `image: {{ vars.tag }}`, would make the container
    privileged and add a RoleBinding granting cluster-admin to the namespace's default
    service account."""
    return ("web:1\n          securityContext: {privileged: true}\n---\n"
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
            "metadata: {name: pwn}\n"
            "roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, "
            "name: cluster-admin}\n"
            f"subjects: [{{kind: ServiceAccount, name: default, namespace: {ns}}}]")


def _no_injected_objects(api, ns: str) -> None:
    rbac = k8s.RbacAuthorizationV1Api(api)
    assert [b.metadata.name for b in rbac.list_namespaced_role_binding(ns).items] == []


def test_a_hostile_variable_in_an_inline_manifest_is_one_image_string(dev_cluster,
                                                                       run_pipeline):
    ns = dev_cluster.namespace("tpl")
    value = hostile(ns)
    state, summary = run_pipeline(f"""
        pipeline:
          name: manifest-values
          variables:
            tag: {{type: string, default: "1"}}
            side: {{type: string, default: "1"}}
            replicas: 1
          steps:
            - id: deploy
              type: k8s_deploy
              config:
                cluster: {dev_cluster.block_name}
                namespace: {ns}
                timeout: 60
                manifest: |
                  apiVersion: apps/v1
                  kind: Deployment
                  metadata:
                    name: web
                    labels: {{app: web}}
                  spec:
                    replicas: {{{{ vars.replicas }}}}
                    selector: {{matchLabels: {{app: web}}}}
                    template:
                      metadata: {{labels: {{app: web}}}}
                      spec:
                        containers:
                          - name: sidecar
                            image: "registry.example/side:{{{{ vars.side }}}}"
                          - name: web
                            image: {{{{ vars.tag }}}}
    """, variables={"tag": value, "side": 'x" # y'})
    steps = by_id(summary)
    # The API server takes any image string (kwok runs no image): the run completes, with
    # the value, whole, as the image and nothing else changed.
    assert state.is_completed(), summary
    assert steps["deploy"]["outputs"]["objects"] == "deployment/web"
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        _no_injected_objects(api, ns)
    assert d.spec.replicas == 1  # an integer variable is still an integer
    containers = d.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [
        ("sidecar", 'registry.example/side:x" # y'), ("web", value)]
    assert all(c.security_context is None for c in containers)
    assert d.spec.template.spec.security_context in (None, k8s.V1PodSecurityContext())


def test_a_hostile_label_value_is_refused_by_the_api_server_and_applies_nothing(
        dev_cluster, run_pipeline):
    ns = dev_cluster.namespace("tpl")
    state, summary = run_pipeline(f"""
        pipeline:
          name: manifest-label
          variables: {{tag: "1"}}
          steps:
            - id: deploy
              type: k8s_deploy
              config:
                cluster: {dev_cluster.block_name}
                namespace: {ns}
                manifest: |
                  apiVersion: v1
                  kind: ConfigMap
                  metadata:
                    name: cfg
                    labels: {{tag: {{{{ vars.tag }}}}}}
                  data: {{v: {{{{ vars.tag }}}}}}
    """, variables={"tag": hostile(ns)})
    assert state.is_failed(), summary
    error = by_id(summary)["deploy"]["message"]
    assert "configmap/cfg" in error and "Invalid value" in error, error
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).list_namespaced_config_map(
            ns, field_selector="metadata.name=cfg").items == []
        _no_injected_objects(api, ns)


CHART = {
    "Chart.yaml": "apiVersion: v2\nname: values\nversion: 0.1.0\n",
    "values.yaml": "v: x\n",
    # The chart quotes its value (its own text template is the chart author's to get right).
    "templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                                "  name: {{ .Release.Name }}-values\n"
                                "data:\n  v: {{ .Values.v | quote }}\n",
}


def test_a_hostile_variable_in_helm_values_is_one_value(dev_cluster, run_pipeline, tmp_path):
    for name, text in CHART.items():
        (tmp_path / "chart" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "chart" / name).write_text(text)
    ns = dev_cluster.namespace("tplhelm")
    value = hostile(ns) + "\n{{ .Release.Name }} {{ vars.tag }}"
    state, summary = run_pipeline(f"""
        pipeline:
          name: helm-values
          variables: {{tag: "1"}}
          steps:
            - id: helm
              type: k8s_deploy
              config:
                cluster: {dev_cluster.block_name}
                namespace: {ns}
                timeout: 60
                helm:
                  chart: ./chart
                  release: vals
                  values: {{v: "{{{{ vars.tag }}}}"}}
    """, variables={"tag": value})
    assert state.is_completed(), summary
    assert by_id(summary)["helm"]["outputs"]["objects"] == "configmap/vals-values"
    with dev_cluster.client() as api:
        data = k8s.CoreV1Api(api).read_namespaced_config_map("vals-values", ns).data
        _no_injected_objects(api, ns)
    assert data == {"v": value}


def test_a_string_value_is_text_and_a_wrong_type_is_a_clear_failure(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("tpltype")
    template = ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
                "  replicas: {{ replicas }}\n  selector: {matchLabels: {app: web}}\n"
                "  template:\n    metadata: {labels: {app: web}}\n"
                "    spec: {containers: [{name: web, image: 'web:1'}]}\n")
    output = {"replicas": "2"}  # a step output: always a string
    with pytest.raises(StepFailed) as err:
        deploy(make_ctx, dev_cluster, ns, manifest=render_yaml(template, output))
    assert "failed to create typed patch object" in str(err.value)
    assert "`{{ x | int }}` makes it a number" in str(err.value)
    _, result = deploy(make_ctx, dev_cluster, ns, manifest=render_yaml(
        template.replace("{{ replicas }}", "{{ replicas | int }}"), output))
    assert result.outputs["objects"] == "deployment/web"
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).spec.replicas == 2
