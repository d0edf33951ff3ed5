"""The `delete_namespace` operation: what the namespace holds listed (counts by kind from a
live list) before it goes; the cluster's own namespaces and hostile names refused."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepFailed


def test_delete_namespace_is_registered_destructive_confirmed_by_its_name():
    from ansflow.manage import load_operations

    op = load_operations()["delete_namespace"]
    assert op.destructive and op.needs_confirmation({"resource_name": "review-1"}) == "review-1"


class NoSession:  # any use of the session fails with AttributeError
    pass


@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "default"])
def test_the_clusters_own_namespaces_are_refused(name):
    from ansflow.manage.namespace_delete import delete_namespace

    with pytest.raises(StepFailed, match="never deleted"):
        delete_namespace(None, NoSession(), resource_name=name)


@pytest.mark.parametrize("name", ["../x", "a;rm -rf /", "{{ x }}", "a\x00b", "x" * 64, "Web",
                                  "-a", "", "kube-system/.."])
def test_hostile_names_are_refused_by_the_name_rules(name):
    from ansflow.manage.namespace_delete import delete_namespace

    with pytest.raises(StepFailed, match="resource_name"):
        delete_namespace(None, NoSession(), resource_name=name)


@pytest.mark.k8s
def test_delete_namespace_lists_what_it_holds_then_deletes_it(dev_cluster, run_op):
    from ansflow.manage.namespace_delete import delete_namespace

    ns = dev_cluster.namespace("doomed")
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        for i in range(3):
            core.create_namespaced_config_map(ns, {"metadata": {"name": f"c{i}"}})
        core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "data": {"k": "eA=="}})
        core.create_namespaced_service(ns, {"metadata": {"name": "svc"}, "spec": {
            "ports": [{"port": 80}], "selector": {"app": "x"}}})
        result, _ = run_op(delete_namespace, None, resource_name=ns)
        counts = result.before["objects"]
        assert counts["ConfigMap"] == "4"  # three and kube-root-ca.crt
        assert counts["Secret"] == "1" and counts["Service"] == "1"
        assert counts["Deployment"] == "0" and counts["ServiceAccount"] == "1"
        assert "| ConfigMap | 4 |" in result.markdown
        assert result.outputs["state"] in ("deleted", "terminating")
        status = core.read_namespace(ns).status.phase \
            if result.outputs["state"] == "terminating" else "gone"
        assert status in ("Terminating", "gone")
    with pytest.raises(StepFailed, match="not found"):
        run_op(delete_namespace, None, resource_name="ansflow-no-such-namespace")
