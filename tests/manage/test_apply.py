"""The `apply` operation against the dev cluster: several documents applied and re-applied,
a dry run that changes nothing and shows the diff, conflicts with another field manager,
objects outside the namespace refused before anything is applied."""

from __future__ import annotations

import textwrap

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed, StepTransient
from ansflow.manage.objects import apply

pytestmark = pytest.mark.k8s

MANIFEST = textwrap.dedent("""\
    apiVersion: v1
    kind: ConfigMap
    metadata: {name: web-config}
    data: {mode: prod}
    ---
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, labels: {app: web}}
    spec:
      replicas: 1
      selector: {matchLabels: {app: web}}
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: main, image: example.invalid/web:1}]}
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec: {ports: [{port: 80}], selector: {app: web}}
    """)


def configmap_doc(name: str, data: dict, kind: str = "ConfigMap") -> str:
    items = ", ".join(f"{k}: '{v}'" for k, v in data.items())
    return f"apiVersion: v1\nkind: {kind}\nmetadata: {{name: {name}}}\ndata: {{{items}}}\n"


def test_a_multi_document_manifest_is_applied_then_unchanged(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply")
    result, _ = run_op(apply, ns, manifest=MANIFEST)
    assert result.outputs == {"objects": "configmap/web-config,deployment/web,service/web",
                              "states": "created,created,created"}
    assert result.summary == "applied 3 object(s) to cluster 'test': 3 created"
    assert result.changed and result.target.kind == "ConfigMap" and result.target.namespace == ns
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("web-config", ns).data == \
            {"mode": "prod"}
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        assert [m.manager for m in d.metadata.managed_fields if m.operation == "Apply"] == \
            ["ansflow"]
        assert k8s.CoreV1Api(api).read_namespaced_service("web", ns).spec.ports[0].port == 80
    again, _ = run_op(apply, ns, manifest=MANIFEST)
    assert again.outputs["states"] == "unchanged,unchanged,unchanged" and not again.changed


def test_dry_run_changes_nothing_and_shows_the_diff(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-dry")
    run_op(apply, ns, manifest=configmap_doc("cfg", {"mode": "a", "keep": "k"}))
    changed = configmap_doc("cfg", {"mode": "b", "keep": "k"}) + "---\n" + \
        configmap_doc("fresh", {"x": "1"})
    result, _ = run_op(apply, ns, manifest=changed, dry_run=True)
    assert result.outputs["states"] == "would change,would create" and not result.changed
    assert result.summary.startswith("dry run: applied 2 object(s)")
    assert "Server-side dry run: nothing was changed." in result.markdown
    assert "-  mode: a\n+  mode: b\n" in result.markdown and "   keep: k\n" in result.markdown
    assert "--- /dev/null\n+++ planned/configmap/fresh\n" in result.markdown
    for noise in ("managedFields", "resourceVersion", "uid:", "creationTimestamp"):
        assert noise not in result.markdown
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        assert core.read_namespaced_config_map("cfg", ns).data == {"mode": "a", "keep": "k"}
        assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items
                if c.metadata.name == "fresh"] == []


def test_a_secret_with_values_is_refused_and_a_secrets_diff_never_shows_them(
        dev_cluster, run_op, shown_to_user):
    ns = dev_cluster.namespace("apply-secret")
    value = "c2VjcmV0LXZhbHVlLTEyMw=="
    refused = f"apiVersion: v1\nkind: Secret\nmetadata: {{name: db}}\ndata: {{pw: {value}}}\n"
    with pytest.raises(StepFailed) as err:
        run_op(apply, ns, manifest=refused)
    assert str(err.value).startswith("manifest: nothing applied: object 1 (secret/db) carries "
                                     "values in data / stringData")
    assert "ansflow-k8s/secret" in str(err.value) and value not in str(err.value)
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_secret(ns, {"metadata": {"name": "db"},
                                                         "data": {"pw": value}})
    labels_only = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, labels: {tier: db}}\n"
    result, _ = run_op(apply, ns, manifest=labels_only, dry_run=True)
    assert "+    tier: db\n" in result.markdown and "   pw: '***'\n" in result.markdown
    shown = shown_to_user(result)
    assert value not in shown and "secret-value-123" not in shown


def test_a_conflict_names_the_field_and_its_manager_and_applies_nothing(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-conflict")
    with dev_cluster.client() as api:
        api.call_api(*api.param_serialize(
            "PATCH", f"/api/v1/namespaces/{ns}/configmaps/shared",
            query_params=[("fieldManager", "helm")],
            header_params={"Content-Type": "application/apply-patch+yaml",
                           "Accept": "application/json"},
            body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"},
                  "data": {"owner": "helm"}},
            auth_settings=["BearerToken"])).read()
    manifest = configmap_doc("first", {"a": "1"}) + "---\n" + \
        configmap_doc("shared", {"owner": "ansflow"})
    with pytest.raises(StepFailed) as err:
        run_op(apply, ns, manifest=manifest)
    message = str(err.value)
    assert ".data.owner (owned by \"helm\")" in message
    assert message.startswith(f"cluster 'test': apply (server-side, dry run) configmap/shared "
                              f"in namespace {ns}: ")
    assert "hint: set force_conflicts: true" in message
    with dev_cluster.client() as api:
        names = [c.metadata.name for c in k8s.CoreV1Api(api).list_namespaced_config_map(ns).items]
    assert "first" not in names  # the dry run of every object came first
    forced, _ = run_op(apply, ns, manifest=manifest, force_conflicts=True)
    assert forced.outputs["states"] == "created,configured"


def test_objects_outside_the_namespace_or_cluster_scoped_are_refused(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-scope")
    other = configmap_doc("x", {"a": "1"}).replace("{name: x}", "{name: x, namespace: kube-system}")
    with pytest.raises(StepFailed, match=r"nothing applied: object 1 \(configmap/x\) is in "
                                         r"namespace 'kube-system', but this apply is for "
                                         f"namespace '{ns}'"):
        run_op(apply, ns, manifest=other)
    cluster_scoped = "apiVersion: v1\nkind: Namespace\nmetadata: {name: from-apply-x}\n"
    with pytest.raises(StepFailed, match=r"object 1 \(namespace/from-apply-x\) is "
                                         "cluster-scoped"):
        run_op(apply, ns, manifest=cluster_scoped)
    with pytest.raises(StepFailed, match="not valid YAML at line 1, column 4: YAML tag"):
        run_op(apply, ns, manifest="a: !!python/object/apply:os.system [id]\n")
    with pytest.raises(StepFailed, match="the cluster has no kind 'Widget' in apiVersion 'v1'"):
        run_op(apply, ns, manifest="apiVersion: v1\nkind: Widget\nmetadata: {name: w}\n")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        assert "from-apply-x" not in [n.metadata.name for n in core.list_namespace().items]
    allowed, _ = run_op(apply, ns, manifest=cluster_scoped, allow_cluster_scoped=True)
    assert allowed.target.namespace is None and allowed.outputs["states"] == "created"
    with dev_cluster.client() as api:
        k8s.CoreV1Api(api).delete_namespace("from-apply-x")


def test_an_invalid_object_is_refused_by_the_server_before_anything_is_applied(
        dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-invalid")
    bad = "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec: {ports: [{port: 0}]}\n"
    with pytest.raises(StepFailed) as err:
        run_op(apply, ns, manifest=configmap_doc("ok", {"a": "1"}) + "---\n" + bad)
    assert "invalid object" in str(err.value) and "spec.ports[0].port" in str(err.value)
    with dev_cluster.client() as api:
        names = [c.metadata.name for c in k8s.CoreV1Api(api).list_namespaced_config_map(ns).items]
    assert "ok" not in names


def test_a_field_of_the_wrong_type_is_a_clear_refusal_not_a_retry(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-type")
    with pytest.raises(StepFailed) as err:
        run_op(apply, ns, manifest="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                   "data: {port: 8080}\n")
    assert not isinstance(err.value, StepTransient)
    assert ".data.port: expected string" in str(err.value)
    assert "quote it" in str(err.value)


def test_a_crd_and_its_custom_resource_in_one_manifest(dev_cluster, run_op):
    ns = dev_cluster.namespace("apply-crd")
    group = f"g{ns.split('-')[-1]}.example.com"
    manifest = textwrap.dedent(f"""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {{name: widgets.{group}}}
        spec:
          group: {group}
          scope: Namespaced
          names: {{plural: widgets, singular: widget, kind: Widget}}
          versions:
          - name: v1
            served: true
            storage: true
            schema:
              openAPIV3Schema:
                type: object
                properties:
                  spec: {{type: object, properties: {{size: {{type: integer}}}}}}
        ---
        apiVersion: {group}/v1
        kind: Widget
        metadata: {{name: w1}}
        spec: {{size: 3}}
        """)
    dry, _ = run_op(apply, ns, manifest=manifest, allow_cluster_scoped=True, dry_run=True)
    assert dry.outputs["states"] == "would create,would create"
    assert "its kind is defined by this manifest: not checked" in dry.markdown
    result, _ = run_op(apply, ns, manifest=manifest, allow_cluster_scoped=True)
    assert result.outputs == {"objects": f"customresourcedefinition/widgets.{group},widget/w1",
                              "states": "created,created"}
    with dev_cluster.client() as api:
        widget = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            group, "v1", ns, "widgets", "w1")
        assert widget["spec"] == {"size": 3}
        k8s.ApiextensionsV1Api(api).delete_custom_resource_definition(f"widgets.{group}")


def test_the_manifest_is_applied_as_written_never_rendered_as_a_template(dev_cluster, run_op):
    import yaml

    ns = dev_cluster.namespace("apply-tpl")
    values = {"newline": "1\n    securityContext: {privileged: true}",
              "document": "x\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n"
                          "metadata: {name: pwn}",
              "flow": "{a: b}", "template": "{{ vars.x }}{% if true %}y{% endif %}",
              "tag": "!!python/object/apply:os.system ['touch PWNED']", "nul": "a\x00b"}
    manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "literal"}, "data": values})
    result, _ = run_op(apply, ns, manifest=manifest)
    assert result.outputs == {"objects": "configmap/literal", "states": "created"}
    with dev_cluster.client() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("literal", ns).data == values
        assert k8s.RbacAuthorizationV1Api(api).list_namespaced_role_binding(ns).items == []
    with pytest.raises(StepFailed, match="tag"):
        run_op(apply, ns, manifest="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: t}\n"
                                   "data: {a: !!python/object/apply:os.system ['true']}\n")
