"""How operations show objects (pure): the dry-run diff without server noise and without
Secret values, markdown that cluster text cannot break, the manifest parser's refusals."""

from __future__ import annotations

import pytest

from ansflow.errors import StepFailed
from ansflow.manage.apply import MAX_MANIFEST_BYTES, check_scopes, parse_manifest
from ansflow.manage.describe import describe_markdown, newest_events, shown_object
from ansflow.manage.present import cell, fenced, object_diff


def configmap(data: dict, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "ns", **meta}, "data": data}


def test_diff_drops_server_noise_and_shows_real_changes():
    live = configmap({"a": "1", "b": "2"}, uid="u-1", resourceVersion="7", generation=1,
                     creationTimestamp="2026-01-01T00:00:00Z",
                     managedFields=[{"manager": "kubectl"}])
    planned = configmap({"a": "1", "b": "3"}, uid="u-1", resourceVersion="8",
                        managedFields=[{"manager": "ansflow"}])
    diff = object_diff(live, planned)
    assert "-  b: '2'\n+  b: '3'\n" in diff
    for noise in ("uid", "resourceVersion", "managedFields", "creationTimestamp", "generation"):
        assert noise not in diff
    assert object_diff(live, dict(live, metadata=dict(live["metadata"], resourceVersion="9"))) \
        == ""
    new = object_diff(None, planned)
    assert new.startswith("--- /dev/null\n+++ planned/cfg\n") and "+kind: ConfigMap\n" in new


def test_a_secret_diff_says_which_values_change_never_what_they_are():
    def secret(data, annotation):
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": annotation}},
            "type": "Opaque", "data": data}

    live = secret({"user": "YWRtaW4=", "pw": "b2xkLXNlY3JldA=="},
                  '{"data":{"pw":"b2xkLXNlY3JldA=="}}')
    planned = secret({"user": "YWRtaW4=", "pw": "bmV3LXNlY3JldA==", "extra": "eHl6eHl6"},
                     '{"data":{"pw":"bmV3LXNlY3JldA=="}}')
    diff = object_diff(live, planned)
    for value in ("b2xkLXNlY3JldA==", "bmV3LXNlY3JldA==", "eHl6eHl6", "YWRtaW4="):
        assert value not in diff
    assert "-  pw: '*** (before)'\n+  pw: '*** (after)'\n" in diff
    assert "+  extra: '***'\n" in diff and "user: '***'" in diff


def test_markdown_fences_and_cells_hold_hostile_cluster_text():
    text = "ends here ```\n# heading"
    block = fenced(text, "yaml")
    assert block.startswith("````yaml\n") and block.endswith("\n````\n")
    assert cell("a|b\nc<script>`x`") == "a\\|b c&lt;script&gt;'x'"
    assert cell("x" * 500).endswith("...") and len(cell("x" * 500)) == 303


def test_describe_markdown_of_a_secret_lists_key_names_only():
    obj = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": "db", "annotations": {
               "kubectl.kubernetes.io/last-applied-configuration": "c2VjcmV0LXZhbHVl"}},
           "data": {"password": "c2VjcmV0LXZhbHVl"}}
    markdown = describe_markdown(obj, "secret/db", [])
    assert "c2VjcmV0LXZhbHVl" not in markdown
    assert "keys: password (values are never shown)" in markdown
    assert shown_object(obj)["data"] == {"password": "(value hidden)"}
    assert "No recent events." in markdown


def test_events_newest_first_and_bounded():
    events = [{"reason": f"r{i}", "lastTimestamp": f"2026-01-01T00:00:{i:02d}Z"}
              for i in range(30)]
    events.append({"reason": "new-style", "eventTime": "2026-01-01T00:01:00.000000Z"})
    newest = newest_events(events, limit=5)
    assert [e["reason"] for e in newest] == ["new-style", "r29", "r28", "r27", "r26"]


def test_manifest_parser_refuses_tags_bad_yaml_and_incomplete_objects():
    docs = parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n"
                          "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: "
                          "ConfigMap, metadata: {name: b}}\n")
    assert [d["metadata"]["name"] for d in docs] == ["a", "b"]
    with pytest.raises(StepFailed, match=r"not valid YAML at line 1, column 4: YAML tag "
                                         r"'tag:yaml.org,2002:python/object/apply:os.system'"):
        parse_manifest("a: !!python/object/apply:os.system [echo hi]\n")
    with pytest.raises(StepFailed, match="line 2, column 1: duplicate key 'kind'"):
        parse_manifest("kind: A\nkind: B\n")
    with pytest.raises(StepFailed, match=r"document 2 \(Service\) has no apiVersion, "
                                         r"metadata.name"):
        parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n"
                       "kind: Service\n")
    as_json = parse_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"}})
    assert as_json[0]["metadata"]["name"] == "j"  # `--param manifest=...` parsed it as JSON
    with pytest.raises(StepFailed, match="manifest is empty"):
        parse_manifest("  \n")
    with pytest.raises(StepFailed, match=f"at most {MAX_MANIFEST_BYTES} are accepted"):
        parse_manifest("a: " + "x" * MAX_MANIFEST_BYTES)
    with pytest.raises(StepFailed) as err:
        parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ../../secrets/x, "
                       "namespace: 'a b'}\n")
    assert "document 1: metadata.name '../../secrets/x' is not an object name" in str(err.value)
    assert "document 1: metadata.namespace 'a b' is not a valid name" in str(err.value)
    with pytest.raises(StepFailed, match="document 1 is not a mapping"):
        parse_manifest("- a\n- b\n")


def test_scope_check_names_every_object_outside_the_namespace():
    objs = parse_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: "
                          "other}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n")
    with pytest.raises(StepFailed) as err:
        check_scopes(objs, [True, False], "mine", allow_cluster_scoped=False)
    assert "object 1 (configmap/a) is in namespace 'other'" in str(err.value)
    assert "object 2 (namespace/n) is cluster-scoped" in str(err.value)
    check_scopes(objs[1:], [False], "mine", allow_cluster_scoped=True)
