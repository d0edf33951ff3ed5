"""k8s_scale, k8s_restart and k8s_rollback against the dev cluster (kwok makes pods Running
and Ready), plus their pure decisions."""

from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client as k8s
from prefect import flow

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.errors import EngineUnavailable, StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import K8sRestartConfig, K8sRollbackConfig, K8sScaleConfig
from ansflow.tasks.k8s_restart import RESTARTED_AT, execute_k8s_restart
from ansflow.tasks.k8s_rollback import execute_k8s_rollback, pick_revision
from ansflow.tasks.k8s_rollout import scale_status
from ansflow.tasks.k8s_scale import execute_k8s_scale
from ansflow.tasks.k8s_workload import KINDS, suggestion

REVISION = "deployment.kubernetes.io/revision"


def deployment_body(name: str, replicas: int = 2, image: str = "example.invalid/app:1",
                    **pod_spec) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": image}], **pod_spec}}},
    }


def statefulset_body(name: str, replicas: int = 2, image: str = "example.invalid/db:1") -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {
                     "containers": [{"name": "main", "image": image}]}}},
    }


def until(predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out")


def ready_deployment(dev_cluster, ns: str, body: dict):
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_deployment(ns, body)
        name, want = body["metadata"]["name"], body["spec"]["replicas"]
        until(lambda: (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0)
              == want)


def set_image(dev_cluster, ns: str, name: str, image: str, revision: str) -> None:
    """A new pod template (a new revision), rolled out."""
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": image}]}}}})

        def rolled_out():
            d = apps.read_namespaced_deployment(name, ns)
            return (d.metadata.annotations.get(REVISION) == revision
                    and d.status.updated_replicas == d.spec.replicas
                    and (d.status.ready_replicas or 0) == d.spec.replicas
                    and (d.status.replicas or 0) == d.spec.replicas)

        until(rolled_out)


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


def rollback_config(dev_cluster, ns: str, **kw) -> K8sRollbackConfig:
    return K8sRollbackConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


@pytest.mark.k8s
def test_rollback_of_a_deployment_to_previous_and_to_revision_1(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("undo")
    ready_deployment(dev_cluster, ns, deployment_body("web", 2, image="app:1"))
    set_image(dev_cluster, ns, "web", "app:2", "2")
    set_image(dev_cluster, ns, "web", "app:3", "3")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        rs1 = next(rs for rs in apps.list_namespaced_replica_set(ns).items
                   if rs.metadata.annotations[REVISION] == "1")
        template1 = api.sanitize_for_serialization(rs1.spec.template)
    template1["metadata"]["labels"].pop("pod-template-hash")

    previous = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_name="web", timeout=90))
    assert previous.outputs == {"revision": "2", "new_revision": "4"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.spec.template.spec.containers[0].image == "app:2"
    assert d.status.updated_replicas == 2 == d.status.ready_replicas  # rolled out

    first = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_name="web", revision=1, timeout=90))
    assert first.outputs == {"revision": "1", "new_revision": "5"}
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
        live = api.sanitize_for_serialization(d.spec.template)
    assert live == template1
    assert d.metadata.annotations[REVISION] == "5"
    assert d.status.updated_replicas == 2 == d.status.ready_replicas


@pytest.mark.k8s
def test_rollback_refuses_a_missing_or_current_revision_and_changes_nothing(dev_cluster,
                                                                          make_ctx):
    ns = dev_cluster.namespace("undo-no")
    ready_deployment(dev_cluster, ns, deployment_body("web", 1, image="app:1"))
    set_image(dev_cluster, ns, "web", "app:2", "2")
    with pytest.raises(StepFailed) as err:
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="web", revision=9, timeout=10))
    assert str(err.value) == (f"cluster '{dev_cluster.block_name}': deployment/web in "
                              f"namespace {ns} has no revision 9 (revisions: 1, 2)")
    with pytest.raises(StepFailed, match="already runs revision 2, its current revision: "
                                         r"nothing to roll back\n  hint: roll back to an "
                                         r"earlier one \(revisions: 1, 2\)"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="web", revision=2, timeout=10))
    with pytest.raises(StepFailed, match="not found; did you mean: web?"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_name="webb", timeout=10))
    with dev_cluster.client() as api:
        d = k8s.AppsV1Api(api).read_namespaced_deployment("web", ns)
    assert d.metadata.annotations[REVISION] == "2"
    assert d.spec.template.spec.containers[0].image == "app:2"


@pytest.mark.k8s
def test_rollback_of_a_statefulset_through_controller_revisions(dev_cluster, make_ctx):
    ns = dev_cluster.namespace("undo-sts")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_stateful_set(ns, statefulset_body("db", 2, image="db:1"))

        def rolled_out(image: str):
            def check():
                s = apps.read_namespaced_stateful_set("db", ns)
                return (s.status.observed_generation == s.metadata.generation
                        and s.status.update_revision == s.status.current_revision
                        and s.status.ready_replicas == 2
                        and s.spec.template.spec.containers[0].image == image)
            return check

        until(rolled_out("db:1"), 120)
        apps.patch_namespaced_stateful_set("db", ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "db:2"}]}}}})
        until(rolled_out("db:2"), 120)
    with pytest.raises(StepFailed, match=r"has no revision 5 \(revisions: 1, 2\)"):
        execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
            dev_cluster, ns, resource_type="statefulset", resource_name="db", revision=5))
    result = execute_k8s_rollback(make_ctx("k8s_rollback"), rollback_config(
        dev_cluster, ns, resource_type="sts", resource_name="db", timeout=120))
    assert result.outputs == {"revision": "1", "new_revision": "3"}
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        s = apps.read_namespaced_stateful_set("db", ns)
        pods = k8s.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=db").items
    assert s.spec.template.spec.containers[0].image == "db:1"
    assert s.status.update_revision == s.status.current_revision
    assert {p.spec.containers[0].image for p in pods} == {"db:1"}


def daemonset_body(name: str, image: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "main", "image": image}]}}}}


@pytest.mark.k8s
def test_restart_and_rollback_of_a_daemonset_and_restart_of_a_statefulset(dev_cluster,
                                                                         make_ctx):
    ns = dev_cluster.namespace("ds")
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_daemon_set(ns, daemonset_body("agent", "agent:1"))
        apps.create_namespaced_stateful_set(ns, statefulset_body("db", 1))
    cfg = dict(cluster=dev_cluster.block_name, namespace=ns, timeout=120)
    # The restart waits for the first rollout too, then for its own.
    restarted = execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
        resource_type="ds", resource_name="agent", **cfg))
    assert restarted.outputs["revision"] == "2"
    sts = execute_k8s_restart(make_ctx("k8s_restart"), K8sRestartConfig(
        resource_type="statefulset", resource_name="db", **cfg))
    assert sts.outputs["revision"] == "2"
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        ds = apps.read_namespaced_daemon_set("agent", ns)
        s = apps.read_namespaced_stateful_set("db", ns)
        assert ds.spec.template.metadata.annotations[RESTARTED_AT] == \
            restarted.outputs["restarted_at"]
        assert s.spec.template.metadata.annotations[RESTARTED_AT] == sts.outputs["restarted_at"]
        assert s.status.update_revision == s.status.current_revision
        apps.patch_namespaced_daemon_set("agent", ns, {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "agent:2"}]}}}})

        def observed():
            d = apps.read_namespaced_daemon_set("agent", ns)
            return d.status.observed_generation == d.metadata.generation

        until(observed)
    back = execute_k8s_rollback(make_ctx("k8s_rollback"), K8sRollbackConfig(
        resource_type="daemonset", resource_name="agent", revision=1, **cfg))
    assert back.outputs == {"revision": "1", "new_revision": "4"}
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.spec.template.spec.containers[0].image == "agent:1"
    assert RESTARTED_AT not in (ds.spec.template.metadata.annotations or {})  # revision 1's
    assert ds.status.updated_number_scheduled == ds.status.desired_number_scheduled >= 1


@pytest.mark.k8s
def test_restart_or_rollback_waiting_on_an_on_delete_daemonset_is_refused_before_a_change(
        dev_cluster, make_ctx):
    ns = dev_cluster.namespace("ondelete")
    body = daemonset_body("agent", "agent:1")
    body["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_daemon_set(ns, body)
    cfg = dict(cluster=dev_cluster.block_name, namespace=ns, resource_type="ds",
               resource_name="agent", timeout=30)
    for execute, config in ((execute_k8s_restart, K8sRestartConfig(**cfg)),
                            (execute_k8s_rollback, K8sRollbackConfig(**cfg))):
        with pytest.raises(StepFailed, match="uses the OnDelete update strategy.*nothing was "
                                             "changed\n  hint: set wait: false"):
            execute(make_ctx("k8s"), config)
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.metadata.generation == 1
    # Without the wait, the restart is made (the pods change when they are deleted).
    done = execute_k8s_restart(make_ctx("k8s"), K8sRestartConfig(**cfg, wait=False))
    with dev_cluster.client() as api:
        ds = k8s.AppsV1Api(api).read_namespaced_daemon_set("agent", ns)
    assert ds.spec.template.metadata.annotations[RESTARTED_AT] == done.outputs["restarted_at"]
