"""`ansflow serve --manage` against the suite's Prefect server and dev cluster: one deployment
`ansflow-k8s/<operation>` per operation, runs started through the API and `prefect deployment
run`, their events and artifacts, refusals, and the confirm / approval of a delete."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from fixtures_pipeline import run_artifacts as artifacts
from fixtures_pipeline import server_events as events
from kubernetes import client as k8s
from polling import until

pytestmark = [pytest.mark.server, pytest.mark.k8s]

APPROVAL_TIMEOUT = 25  # the served runs' approval timeout (ANSFLOW_APPROVAL_TIMEOUT)


def _prefect_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prefect", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def served(dev_cluster, prefect_server, tmp_path_factory):
    """One `ansflow serve --manage` for the module (the cluster block saved before)."""
    log = tmp_path_factory.mktemp("manage") / "serve.log"
    env = {**os.environ, "ANSFLOW_APPROVAL_TIMEOUT": str(APPROVAL_TIMEOUT),
           "ANSFLOW_CLUSTER_REFRESH_SECONDS": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "serve", "--manage"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        until(lambda: proc.poll() is not None or "serving ansflow-k8s/scale" in log.read_text(),
              60, "serve to start")
        assert proc.poll() is None, log.read_text()
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        def deployed():
            with get_client(sync_client=True) as client:
                try:
                    return client.read_deployment_by_name("ansflow-k8s/scale")
                except ObjectNotFound:
                    return None

        until(deployed, 60, "the deployments")
        time.sleep(2)  # the runner polls for runs once the deployments exist
        yield log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def deployment_body(name: str, replicas: int = 1, image: str = "example.invalid/app:1") -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {
                         "containers": [{"name": "main", "image": image}]}}}}


def ready_deployment(dev_cluster, ns: str, name: str, replicas: int = 1) -> None:
    with dev_cluster.client() as api:
        apps = k8s.AppsV1Api(api)
        apps.create_namespaced_deployment(ns, deployment_body(name, replicas))
        until(lambda: (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0)
              == replicas, 60, f"deployment {name} ready")


def run(operation: str, timeout: float = 180, **parameters):
    """A run of `ansflow-k8s/<operation>` started through the API, once it has ended."""
    from prefect.deployments import run_deployment

    return run_deployment(f"ansflow-k8s/{operation}", parameters=parameters, timeout=timeout,
                          poll_interval=0.5)


def start(operation: str, **parameters):
    from prefect.deployments import run_deployment

    return run_deployment(f"ansflow-k8s/{operation}", parameters=parameters, timeout=0)


def wait_state(run_id, check, timeout: float = 120):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return until(lambda: (lambda r: r if r.state and check(r.state) else None)(
            client.read_flow_run(run_id)), timeout, "the run's state")


def run_logs(run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    time.sleep(1.0)  # run logs are sent in batches
    with get_client(sync_client=True) as client:
        return [log.message for log in client.read_logs(log_filter=LogFilter(
            flow_run_id=LogFilterFlowRunId(any_=[run_id])))]


def no_traceback(run_id) -> None:
    shown = [m for m in run_logs(run_id) if "Traceback" in m]
    assert not shown, shown[0]


def replicas_of(dev_cluster, ns: str, name: str):
    with dev_cluster.client() as api:
        return k8s.AppsV1Api(api).read_namespaced_deployment(name, ns)


def exists(dev_cluster, ns: str, name: str) -> bool:
    with dev_cluster.client() as api:
        try:
            k8s.AppsV1Api(api).read_namespaced_deployment(name, ns)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return False
            raise
    return True


# ---- serving ---------------------------------------------------------------------------------


def test_serve_manage_check_lists_one_deployment_per_operation_without_a_server(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ansflow.cli", "serve", "--manage", "--check"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert res.returncode == 0, res.stderr
    for op in ("scale", "restart", "rollback", "delete", "logs"):
        assert f"serving ansflow-k8s/{op} (cluster, namespace, " in res.stderr
    assert ("serving ansflow-k8s/scale (cluster, namespace, resource_name, replicas, "
            "resource_type, wait, timeout)") in res.stderr
    assert "ignore_missing, confirm; destructive" in res.stderr
    assert "ansflow-pipeline/" not in res.stderr  # no path given: no pipelines looked for


def test_served_forms_are_typed_and_the_cluster_is_a_choice_of_saved_blocks(
        served, dev_cluster):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        scale = client.read_deployment_by_name("ansflow-k8s/scale")
        delete = client.read_deployment_by_name("ansflow-k8s/delete")
        logs = client.read_deployment_by_name("ansflow-k8s/logs")
    assert scale.entrypoint == "ansflow.flows.manage.manage_scale"
    props = scale.parameter_openapi_schema["properties"]
    assert dev_cluster.block_name in props["cluster"]["enum"]
    assert props["cluster"]["description"] == "The saved KubernetesCluster block to act on."
    assert props["resource_type"]["enum"] == ["deployment", "statefulset", "replicaset"]
    assert props["replicas"]["type"] == "integer"
    assert props["replicas"]["description"] == "The new count of replicas (0 or more)."
    assert props["wait"] == {"default": True, "description": "Wait until the new count is "
                             "ready and no other pods are left.", "position": 5,
                             "title": "wait", "type": "boolean"}
    assert scale.parameter_openapi_schema["required"] == ["cluster", "resource_name",
                                                          "replicas"]
    assert scale.parameter_openapi_schema["additionalProperties"] is False
    assert "confirm" not in props and "confirm" in delete.parameter_openapi_schema["properties"]
    assert "secret" in delete.parameter_openapi_schema["properties"]["resource_type"]["enum"]
    assert "since" in logs.parameter_openapi_schema["properties"]
    assert scale.description.startswith("Scale a Deployment, StatefulSet or ReplicaSet")


def test_prefect_deployment_run_scales_emits_the_event_and_publishes_the_before_after(
        served, dev_cluster):
    ns = dev_cluster.namespace("m-scale")
    ready_deployment(dev_cluster, ns, "web", 1)
    res = _prefect_cli("deployment", "run", "ansflow-k8s/scale",
                       "--param", f"cluster={dev_cluster.block_name}",
                       "--param", f"namespace={ns}", "--param", "resource_type=deployment",
                       "--param", "resource_name=web", "--param", "replicas=3",
                       "--watch", "--watch-timeout", "180")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Completed" in res.stdout
    d = replicas_of(dev_cluster, ns, "web")
    assert d.spec.replicas == 3 and d.status.ready_replicas == 3
    resource_id = f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.web"
    [event] = events("ansflow.k8s.scale", resource_id)
    assert event["resource"]["ansflow.k8s.kind"] == "Deployment"
    assert event["resource"]["ansflow.k8s.namespace"] == ns
    assert event["resource"]["ansflow.k8s.cluster"] == dev_cluster.block_name
    assert event["payload"]["before"] == {"replicas": "1"}
    assert event["payload"]["after"] == {"replicas": "3"}
    [related] = [r for r in event["related"] if r["prefect.resource.role"] == "flow-run"]
    run_id = related["prefect.resource.id"].removeprefix("prefect.flow-run.")
    [artifact] = artifacts(run_id)
    assert artifact.key == "ansflow-k8s-scale"
    assert "| replicas | 1 | 3 |" in artifact.data
    assert f"scaled deployment/web in namespace {ns} (cluster {dev_cluster.block_name}) " \
           "from 1 to 3 replicas" in artifact.data


def test_a_cluster_that_is_not_saved_is_refused_with_the_saved_ones(served, dev_cluster):
    import httpx
    from prefect.client.orchestration import get_client

    res = _prefect_cli("deployment", "run", "ansflow-k8s/scale", "--param", "cluster=nope",
                       "--param", "resource_name=web", "--param", "replicas=1")
    assert res.returncode != 0
    assert "nope" in res.stdout + res.stderr and f"'{dev_cluster.block_name}'" in \
        res.stdout + res.stderr  # the server's enum check lists the choices
    # The UI's "Enforce Parameter Schema" switched off (or a block deleted since): the run
    # itself refuses the name.
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name("ansflow-k8s/scale")
    url = os.environ["PREFECT_API_URL"].rstrip("/") + f"/deployments/{dep.id}/create_flow_run"
    answer = httpx.post(url, json={"parameters": {"cluster": "nope", "resource_name": "web",
                                                  "replicas": 1},
                                   "enforce_parameter_schema": False}, timeout=30)
    answer.raise_for_status()
    stale = wait_state(answer.json()["id"], lambda s: s.is_final(), timeout=120)
    assert stale.state.is_failed()
    assert stale.state.message.startswith(
        "no saved Kubernetes cluster block named 'nope' (saved: ")
    assert f"{dev_cluster.block_name}" in stale.state.message
    no_traceback(stale.id)


def test_a_cluster_block_saved_while_serving_becomes_a_choice(served, dev_cluster):
    from prefect.client.orchestration import get_client

    from ansflow.blocks.kubernetes import KubernetesCluster

    name = f"late-{uuid.uuid4().hex[:6]}"
    KubernetesCluster.from_kubeconfig_file(dev_cluster.kubeconfig).save(name, overwrite=True)
    try:
        def offered():
            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("ansflow-k8s/delete")
            schema = dep.parameter_openapi_schema
            return name in schema["properties"]["cluster"]["enum"] and schema

        schema = until(offered, 60, "the new block among the choices")
        assert dev_cluster.block_name in schema["properties"]["cluster"]["enum"]
        assert schema["additionalProperties"] is False
    finally:
        with get_client(sync_client=True) as client:
            doc = client.read_block_document_by_name(name, "ansflow-kubernetes-cluster")
            client.delete_block_document(doc.id)


def test_scale_of_an_unknown_object_fails_with_close_names_changes_nothing_and_is_audited(
        served, dev_cluster):
    ns = dev_cluster.namespace("m-miss")
    ready_deployment(dev_cluster, ns, "frontend", 1)
    failed = run("scale", cluster=dev_cluster.block_name, namespace=ns,
                 resource_name="frontnd", replicas=4)
    assert failed.state.is_failed()
    assert failed.state.message == (f"cluster '{dev_cluster.block_name}': deployment/frontnd "
                                    f"in namespace {ns} not found; did you mean: frontend?")
    assert replicas_of(dev_cluster, ns, "frontend").spec.replicas == 1
    [event] = events("ansflow.k8s.scale.failed",
                     f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.frontnd")
    assert "did you mean: frontend?" in event["payload"]["error"]
    no_traceback(failed.id)
    bad = run("scale", cluster=dev_cluster.block_name, namespace=ns, resource_name="frontend",
              replicas=-1)
    assert bad.state.is_failed() and "replicas" in bad.state.message
    assert replicas_of(dev_cluster, ns, "frontend").spec.replicas == 1


def test_restart_then_rollback_report_revisions_and_an_unknown_revision_is_refused(
        served, dev_cluster):
    ns = dev_cluster.namespace("m-roll")
    ready_deployment(dev_cluster, ns, "api", 1)
    restarted = run("restart", cluster=dev_cluster.block_name, namespace=ns,
                    resource_name="api", timeout=120)
    assert restarted.state.is_completed(), restarted.state
    [event] = events("ansflow.k8s.restart",
                     f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.api")
    assert event["payload"]["before"] == {"revision": "1"}
    assert event["payload"]["after"]["revision"] == "2"
    template = replicas_of(dev_cluster, ns, "api").spec.template.metadata.annotations
    assert "kubectl.kubernetes.io/restartedAt" in template
    refused = run("rollback", cluster=dev_cluster.block_name, namespace=ns,
                  resource_name="api", revision=9)
    assert refused.state.is_failed()
    assert "has no revision 9 (revisions: 1, 2)" in refused.state.message
    back = run("rollback", cluster=dev_cluster.block_name, namespace=ns, resource_name="api",
               timeout=120)
    assert back.state.is_completed(), back.state
    [event] = events("ansflow.k8s.rollback",
                     f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.api")
    assert event["payload"]["outputs"]["revision"] == "1"
    assert event["payload"]["before"] == {"revision": "2"}
    template = replicas_of(dev_cluster, ns, "api").spec.template.metadata.annotations or {}
    assert "kubectl.kubernetes.io/restartedAt" not in template  # revision 1's template
    [artifact] = artifacts(back.id)
    assert "| revision | 2 | 3 |" in artifact.data


def test_delete_with_confirm_equal_to_the_name_deletes_and_reports_it(served, dev_cluster):
    ns = dev_cluster.namespace("m-del")
    ready_deployment(dev_cluster, ns, "old", 1)
    done = run("delete", cluster=dev_cluster.block_name, namespace=ns,
               resource_type="deployment", resource_name="old", confirm="old")
    assert done.state.is_completed(), done.state
    assert not exists(dev_cluster, ns, "old")
    [event] = events("ansflow.k8s.delete",
                     f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.old")
    assert event["payload"]["outputs"] == {"deleted": "deployment/old", "count": "1"}
    assert any("delete of 'old' confirmed by its name" in m for m in run_logs(done.id))


def test_delete_without_confirm_pauses_and_a_rejection_changes_nothing(served, dev_cluster):
    from prefect.flow_runs import resume_flow_run

    ns = dev_cluster.namespace("m-rej")
    ready_deployment(dev_cluster, ns, "keep", 1)
    started = start("delete", cluster=dev_cluster.block_name, namespace=ns,
                    resource_type="deployment", resource_name="keep")
    wait_state(started.id, lambda s: s.is_paused())
    assert exists(dev_cluster, ns, "keep")
    resume_flow_run(started.id, run_input={"approve": False, "comment": "not today"})
    ended = wait_state(started.id, lambda s: s.is_final())
    assert ended.state.is_failed()
    assert ended.state.message == "delete of 'keep' was rejected (not today); nothing was changed"
    assert exists(dev_cluster, ns, "keep")
    [event] = events("ansflow.k8s.delete.failed",
                     f"ansflow.k8s.deployment.{dev_cluster.block_name}.{ns}.keep")
    assert "rejected" in event["payload"]["error"]


def test_delete_with_a_wrong_confirm_waits_and_an_approval_deletes(served, dev_cluster):
    from prefect.flow_runs import resume_flow_run

    ns = dev_cluster.namespace("m-ok")
    ready_deployment(dev_cluster, ns, "tmp", 1)
    started = start("delete", cluster=dev_cluster.block_name, namespace=ns,
                    resource_type="deployment", resource_name="tmp", confirm="tpm")
    wait_state(started.id, lambda s: s.is_paused())
    assert exists(dev_cluster, ns, "tmp")
    resume_flow_run(started.id, run_input={"approve": True, "comment": "ticket 42"})
    ended = wait_state(started.id, lambda s: s.is_final())
    assert ended.state.is_completed(), ended.state
    assert not exists(dev_cluster, ns, "tmp")
    logs = run_logs(started.id)
    assert any("confirm 'tpm' is not 'tmp'" in m for m in logs)
    assert any("delete of 'tmp' approved (ticket 42)" in m for m in logs)


def test_delete_not_approved_in_time_fails_and_changes_nothing(served, dev_cluster):
    ns = dev_cluster.namespace("m-late")
    ready_deployment(dev_cluster, ns, "stay", 1)
    ended = run("delete", timeout=APPROVAL_TIMEOUT + 90, cluster=dev_cluster.block_name,
                namespace=ns, resource_type="deployment", resource_name="stay")
    assert ended.state.is_failed()
    assert ended.state.message == (f"delete of 'stay' was not approved within "
                                   f"{APPROVAL_TIMEOUT} s; nothing was changed\n"
                                   "  hint: run again with confirm=stay")
    assert exists(dev_cluster, ns, "stay")


def test_logs_of_a_pod_selector_read_every_pod_and_publish_the_tail(served, dev_cluster):
    ns = dev_cluster.namespace("m-logs")
    ready_deployment(dev_cluster, ns, "talker", 2)
    marker = f"manage-logs-{uuid.uuid4().hex}"
    with dev_cluster.pod_logs.open("a") as fh:
        fh.write(f"2026-01-01T00:00:01Z stdout F {marker}\n")
    done = run("logs", cluster=dev_cluster.block_name, namespace=ns, pod_selector="app=talker",
               tail_lines=5, since="87600h")
    assert done.state.is_completed(), done.state
    logs = run_logs(done.id)
    assert sum(marker in m for m in logs) == 2  # one line per pod, prefixed
    keys = {a.key for a in artifacts(done.id)}
    assert "ansflow-k8s-logs" in keys and len(keys) == 2  # ours and the k8s_logs tail
    [event] = events("ansflow.k8s.logs",
                     f"ansflow.k8s.pod.{dev_cluster.block_name}.{ns}.app=talker")
    assert event["payload"]["changed"] is False
