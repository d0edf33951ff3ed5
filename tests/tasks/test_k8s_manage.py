"""k8s_scale and k8s_restart against the dev cluster (kwok makes pods Running
and Ready), plus their pure decisions (k8s_rollback: test_k8s_rollback.py)."""

from __future__ import annotations

import threading
import time

import pytest
from k8s_workloads import (
    REVISION,
    deployment_body,
    ready_deployment,
    statefulset_body,
)
from kubernetes import client as k8s
from prefect import flow

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.errors import EngineUnavailable, StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.k8s_rollout import scale_status
from ansflow.runtime.k8s_workload import KINDS, suggestion
from ansflow.spec.steps import K8sRestartConfig, K8sScaleConfig
from ansflow.tasks.k8s_restart import RESTARTED_AT, execute_k8s_restart
from ansflow.tasks.k8s_rollback import pick_revision
from ansflow.tasks.k8s_scale import execute_k8s_scale

# ---- pure decisions -------------------------------------------------------------------------


def test_scale_status_waits_for_the_new_count_ready_and_the_rest_gone():
    obj = {"kind": "Deployment", "metadata": {"name": "web", "generation": 3},
           "spec": {"replicas": 3},
           "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1}}
    assert "spec update to be observed" in scale_status(obj).progress
    obj["status"]["observedGeneration"] = 3
    assert scale_status(obj).progress == "deployment 'web': 1 of 3 replicas are ready"
    obj["status"].update(replicas=5, readyReplicas=5)
    assert not scale_status(obj).done and "2 replicas beyond 3" in scale_status(obj).progress
    obj["status"].update(replicas=3, readyReplicas=3)
    assert scale_status(obj).done
    zero = {"kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 0}, "status": {"observedGeneration": 1}}
    assert scale_status(zero).done


def test_pick_revision_is_kubectls_and_refuses_unknown_and_current():
    history = {1: {}, 2: {}, 3: {}}
    assert pick_revision(history, 3, None, "deployment/web") == 2
    assert pick_revision(history, 3, 1, "deployment/web") == 1
    with pytest.raises(StepFailed, match=r"has no revision 7 \(revisions: 1, 2, 3\)"):
        pick_revision(history, 3, 7, "deployment/web")
    with pytest.raises(StepFailed, match="already runs revision 3, its current revision"):
        pick_revision(history, 3, 3, "deployment/web")
    with pytest.raises(StepFailed, match=r"no previous revision .*\(revisions: 1\)"):
        pick_revision({1: {}}, 1, None, "deployment/web")


def test_not_found_suggests_close_names_or_says_what_there_is():
    res = KINDS["Deployment"]
    assert suggestion("wbe", ["web", "worker", "api"], res, "ns") == "; did you mean: web?"
    assert suggestion("x", [], res, "ns") == " (there are no deployments in namespace ns)"
    assert suggestion("zzzz", ["web", "api"], res, "ns") == \
        " (deployments in namespace ns: api, web)"


# ---- k8s_scale on the dev cluster -----------------------------------------------------------


def scale_config(dev_cluster, ns: str, **kw) -> K8sScaleConfig:
    return K8sScaleConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


@pytest.mark.k8s
def test_scale_deployment_up_and_down_waits_for_the_count(dev_cluster, make_ctx, caplog):
    ns = dev_cluster.namespace("scale")
    ready_deployment(dev_cluster, ns, deployment_body("web", 1))
    up = execute_k8s_scale(make_ctx("k8s_scale"), scale_config(
        dev_cluster, ns, resource_name="web", replicas=4, timeout=90))
    assert up.outputs == {"previous_replicas": "1", "replicas": "4"}
    with dev_cluster.client() as api:
        status = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).status
        assert status.ready_replicas == 4  # ready when the step returned, not later
    down = execute_k8s_scale(make_ctx("k8s_scale"), scale_config(
        dev_cluster, ns, resource_type="deploy", resource_name="web", replicas=0, timeout=90))
    assert down.outputs == {"previous_replicas": "4", "replicas": "0"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        assert d.spec.replicas == 0 and not d.status.replicas
    messages = [r.getMessage() for r in caplog.records]
    assert f"scaled deployment/web in namespace {ns} from 1 to 4 replicas on cluster " \
           f"'{dev_cluster.block_name}'" in messages
    assert "deployment 'web': 4 of 4 replicas are ready" in messages


@pytest.mark.k8s
def test_scale_statefulset_through_its_scale_subresource(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("scale-sts")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_stateful_set(ns, statefulset_body("db", 1))
    result = execute_k8s_scale(make_ctx("k8s_scale"), scale_config(
        dev_cluster, ns, resource_type="sts", resource_name="db", replicas=3, timeout=120))
    assert result.outputs == {"previous_replicas": "1", "replicas": "3"}
    with dev_cluster.client() as api:
        sts = k8s.AppsV1Api(api).read_namespaced_stateful_set("db", ns)
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=db").items
    assert sts.status.ready_replicas == 3
    assert sorted(p.metadata.name for p in pods) == ["db-0", "db-1", "db-2"]


@pytest.mark.k8s
def test_scale_of_a_missing_object_suggests_the_close_name_and_changes_nothing(
        dev_cluster, make_ctx):
    ns = dev_cluster.namespace("scale-miss")
    ready_deployment(dev_cluster, ns, deployment_body("frontend", 1))
    with pytest.raises(StepFailed) as err:
        execute_k8s_scale(make_ctx("k8s_scale"), scale_config(
            dev_cluster, ns, resource_name="frontnd", replicas=3, timeout=10))
    assert str(err.value) == (f"cluster '{dev_cluster.block_name}': deployment/frontnd in "
                              f"namespace {ns} not found; did you mean: frontend?")
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("frontend", ns).spec.replicas == 1


@pytest.mark.k8s
def test_scale_wait_that_cannot_finish_is_timed_out_with_the_last_status(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("scale-to")
    # Pods no node accepts stay Pending: the new count never becomes ready.
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(
            ns, deployment_body("stuck", 0, nodeSelector={"no-such-node": "x"}))
    started = time.monotonic()
    with pytest.raises(StepTimedOut) as err:
        execute_k8s_scale(make_ctx("k8s_scale"), scale_config(
            dev_cluster, ns, resource_name="stuck", replicas=2, timeout=3))
    assert time.monotonic() - started < 30
    assert f"deployment/stuck in namespace {ns} did not reach 2 ready replicas in time" \
        in str(err.value)
    assert "0 of 2 replicas are ready" in str(err.value)


@pytest.mark.k8s
def test_scale_wait_stops_at_the_step_deadline_and_on_cancel(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("scale-stop")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(
            ns, deployment_body("stuck", 0, nodeSelector={"no-such-node": "x"}))
    cfg = scale_config(dev_cluster, ns, resource_name="stuck", replicas=1, timeout=300)
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="did not reach 1 ready replicas in time"):
        execute_k8s_scale(make_ctx("k8s_scale", timeout=3), cfg)  # the step's own timeout
    assert time.monotonic() - started < 30
    ctx = make_ctx("k8s_scale")
    threading.Timer(2.0, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled, match="the run was cancelled"):
        execute_k8s_scale(ctx, cfg.model_copy(update={"replicas": 2}))
    assert time.monotonic() - started < 20


@pytest.mark.k8s
def test_scale_forbidden_names_verb_object_namespace_and_cluster(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("scale-rbac")
    ready_deployment(dev_cluster, ns, deployment_body("web", 1))
    with dev_cluster.client() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
        rbac.create_namespaced_role(ns, {"metadata": {"name": "read"}, "rules": [
            {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]})
        rbac.create_namespaced_role_binding(ns, {
            "metadata": {"name": "reader-read"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
        token = core.create_namespaced_service_account_token(
            "reader", ns, {"spec": {"expirationSeconds": 600}}).status.token
    block = KubernetesCluster(server=dev_cluster.server, token=token,
                              certificate_authority=(dev_cluster.paths.pki / "ca.crt").read_text(),
                              namespace=ns)
    with pytest.raises(StepFailed) as err:
        execute_k8s_scale(make_ctx("k8s_scale", blocks={"cluster": block}), K8sScaleConfig(
            cluster="reader", resource_name="web", replicas=3, timeout=10))
    message = str(err.value)
    assert message.startswith(f"cluster 'reader': patch deployments/scale 'web' in namespace "
                              f"{ns}: 403 Forbidden")
    assert token not in message and "Traceback" not in message
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment("web", ns).spec.replicas == 1


@pytest.mark.k8s
def test_scale_on_an_unreachable_cluster_says_so(make_ctx):
    block = KubernetesCluster(server="https://127.0.0.1:9", verify_ssl=False, namespace="x")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=r"cluster 'gone': get deployment/web in "
                                                "namespace x: the API server is unreachable"):
        execute_k8s_scale(make_ctx("k8s_scale", blocks={"cluster": block}), K8sScaleConfig(
            cluster="gone", resource_name="web", replicas=1, timeout=10))
    assert time.monotonic() - started < 60


@pytest.mark.k8s
def test_scale_in_a_pipeline_and_as_a_task_in_a_plain_flow(dev_cluster, run_pipeline):
    ns = dev_cluster.namespace("scale-pipe")
    ready_deployment(dev_cluster, ns, deployment_body("api", 1))
    state, summary = run_pipeline(f"""
        pipeline:
          name: scale-it
          defaults:
            k8s: {{cluster: {dev_cluster.block_name}, namespace: {ns}}}
          steps:
            - id: up
              type: k8s_scale
              config: {{resource_name: api, replicas: 3, timeout: 90}}
            - id: show
              type: command
              config:
                command: echo "was={{{{ steps.up.outputs.previous_replicas }}}}" >>$ANSFLOW_OUTPUT
    """)
    assert state.is_completed(), summary
    steps = {s["id"]: s for s in summary["steps"]}
    assert steps["up"]["outputs"] == {"previous_replicas": "1", "replicas": "3"}
    assert steps["show"]["outputs"] == {"was": "1"}  # a later step reads the output
    with dev_cluster.client() as api:
        assert k8s.AppsV1Api(api).read_namespaced_deployment(
            "api", ns).status.ready_replicas == 3

    from ansflow import tasks

    @flow(name="user-scale")
    def user_flow():
        return tasks.k8s_scale(cluster=dev_cluster.block(), namespace=ns,
                               resource_name="api", replicas=2, timeout=90)

    result = user_flow()
    assert result["outputs"] == {"previous_replicas": "3", "replicas": "2"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("api", ns)
        assert d.spec.replicas == 2 and d.status.ready_replicas == 2 and d.status.replicas == 2


# ---- k8s_restart ----------------------------------------------------------------------------


@pytest.mark.k8s
def test_restart_sets_restarted_at_and_rolls_out_a_new_replica_set(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("restart")
    ready_deployment(dev_cluster, ns, deployment_body("web", 2))
    with dev_cluster.client() as api:
        before = {p.metadata.name for p in k8s.CoreV1Api(api).list_namespaced_pod(ns).items}
    result = execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
        cluster=dev_cluster.block_name, namespace=ns, resource_name="web", timeout=90))
    assert result.outputs["revision"] == "2"
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        rss = k8s.AppsV1Api(api).list_namespaced_replica_set(ns).items
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns).items
    assert d.spec.template.metadata.annotations[RESTARTED_AT] == result.outputs["restarted_at"]
    assert d.metadata.annotations[REVISION] == "2"
    new = [rs for rs in rss if rs.metadata.annotations[REVISION] == "2"]
    assert len(rss) == 2 and new[0].status.ready_replicas == 2
    live = {p.metadata.name for p in pods if not p.metadata.deletion_timestamp}
    assert len(live) == 2 and not live & before  # every pod replaced
    assert d.status.updated_replicas == 2 == d.status.ready_replicas


@pytest.mark.k8s
def test_restart_of_a_paused_deployment_or_a_missing_one_changes_nothing(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("restart-no")
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, {
            **deployment_body("p", 1), "spec": {**deployment_body("p", 1)["spec"],
                                                "paused": True}})
    cfg = dict(cluster=dev_cluster.block_name, namespace=ns, timeout=10)
    with pytest.raises(StepFailed, match=r"deployment/p in namespace .* is paused, so it was "
                                         "not restarted"):
        execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(resource_name="p", **cfg))
    with pytest.raises(StepFailed, match=r"statefulset/p in namespace .* not found \(there "
                                         "are no statefulsets"):
        execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
            resource_name="p", resource_type="sts", **cfg))
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("p", ns)
    assert RESTARTED_AT not in (d.spec.template.metadata.annotations or {})


# ---- k8s_rollback ---------------------------------------------------------------------------
