"""Cluster cleanup (ansflow.upkeep.cleanup_kube, the cleanup flow) against the dev cluster:
step pods and their Secrets of finished runs (never what k8s_deploy applied), expired objects, an object changed between
the plan and its delete (the pure rules, the store and the CLI: test_cleanup.py).

Everything a test creates carries a pipeline label of its own and every cleanup here is
limited to that pipeline, so other tests' objects are never touched.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from cleanup_runs import finished_and_running_runs, run_labels
from kubernetes import client as k8s

from ansflow.engines.kube_pod import STEP_POD_LABEL
from ansflow.runtime.k8s_manifests import EXPIRES_ANNOTATION, EXPIRES_LABEL
from ansflow.spec.steps import K8sDeployConfig
from ansflow.upkeep.cleanup import (
    KEEP_ANNOTATION,
    PIPELINE_LABEL,
    RUN_LABEL,
    CleanupOptions,
    cleanup,
    execute,
    plan,
)


def _pod(api, ns, name, labels, annotations=None, step_pod=True):
    """A step pod of a run (or, ``step_pod=False``, a bare Pod k8s_deploy deployed, with the
    run labels too)."""
    if step_pod:
        labels = {**labels, STEP_POD_LABEL: "true"}
    body = {"metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    k8s.CoreV1Api(api).create_namespaced_pod(ns, body)


def _configmap(api, ns, name, labels, annotations=None):
    k8s.CoreV1Api(api).create_namespaced_config_map(ns, {"metadata": {
        "name": name, "labels": labels, "annotations": annotations or {}}})


def _secret(api, ns, name, labels, step_pod=True):
    """A step pod's Secret, as a worker that died before handing it to its pod leaves it (or,
    ``step_pod=False``, a Secret k8s_deploy deployed, with the run labels too)."""
    if step_pod:
        labels = {**labels, STEP_POD_LABEL: "true"}
    k8s.CoreV1Api(api).create_namespaced_secret(ns, {
        "metadata": {"name": name, "labels": labels}, "stringData": {"X": "1"}})


def _job(api, ns, name, labels):
    """A Job k8s_deploy deployed (ansflow makes no Jobs of its own): it has the run labels."""
    k8s.BatchV1Api(api).create_namespaced_job(ns, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "busybox"}]}}}})


def _gone(read, timeout: float = 30) -> bool:
    """True once ``read()`` 404s or shows a deletion in progress (kwok finishes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            obj = read()
        except k8s.ApiException as exc:
            if exc.status == 404:
                return True
            raise
        if obj.metadata.deletion_timestamp is not None:
            return True
        time.sleep(0.3)
    return False


def _exists(read) -> bool:
    try:
        obj = read()
    except k8s.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return obj.metadata.deletion_timestamp is None


@pytest.mark.k8s
@pytest.mark.server
def test_cluster_cleanup_dry_run_then_real_run_through_the_flow(dev_cluster, prefect_server):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from ansflow.flows.cleanup import ARTIFACT_KEY, cleanup_flow

    pipeline = f"cl-{uuid.uuid4().hex[:8]}"
    (done,), running = finished_and_running_runs()
    ns = dev_cluster.namespace("cleanup")
    past = str(int(time.time()) - 60)
    future = str(int(time.time()) + 3600)
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        _pod(api, ns, "finished", run_labels(pipeline, done))
        # What the pipeline deployed, its run over: a migration Job still going, a bare Pod.
        _job(api, ns, "deployed-job", run_labels(pipeline, done))
        _pod(api, ns, "deployed-pod", run_labels(pipeline, done), step_pod=False)
        _secret(api, ns, "finished-secret", run_labels(pipeline, done))
        _secret(api, ns, "running-secret", run_labels(pipeline, running))
        _secret(api, ns, "deployed-secret", run_labels(pipeline, done), step_pod=False)
        _pod(api, ns, "running", run_labels(pipeline, running))
        _pod(api, ns, "unknown", run_labels(pipeline, str(uuid.uuid4())))
        _pod(api, ns, "pinned", run_labels(pipeline, done), {KEEP_ANNOTATION: "true"})
        _pod(api, "kube-system", f"{pipeline}-sys", run_labels(pipeline, done))
        _configmap(api, ns, "expired", run_labels(pipeline, running, **{EXPIRES_LABEL: past}))
        _configmap(api, ns, "fresh", run_labels(pipeline, done, **{EXPIRES_LABEL: future}))
        _configmap(api, ns, "expired-pinned", run_labels(pipeline, done, **{EXPIRES_LABEL: past}),
                   {KEEP_ANNOTATION: "true"})
        _configmap(api, "kube-system", f"{pipeline}-sys",
                   run_labels(pipeline, done, **{EXPIRES_LABEL: past}))
        _configmap(api, ns, "unlabelled", {PIPELINE_LABEL: pipeline})

        counts = cleanup_flow(clusters=[dev_cluster.block_name], docker=False,
                              pipelines=[pipeline], run_retention_days=None, dry_run=True)
        assert counts["planned"] == 3 and counts["removed"] == 0, counts
        everything = [lambda n=n: core.read_namespaced_pod(n, ns)
                      for n in ("finished", "running", "unknown", "pinned", "deployed-pod")]
        everything += [lambda n=n: core.read_namespaced_config_map(n, ns)
                       for n in ("expired", "fresh", "expired-pinned", "unlabelled")]
        everything += [lambda n=n: core.read_namespaced_secret(n, ns)
                       for n in ("finished-secret", "running-secret", "deployed-secret")]
        assert all(_exists(read) for read in everything), "a dry run deleted something"
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[ARTIFACT_KEY])))
        rows = next(a.data for a in sorted(artifacts, key=lambda a: a.created, reverse=True)
                    if pipeline in str(a.data) or ns in str(a.data))
        planned = {(r["kind"], r["name"]) for r in (rows if isinstance(rows, list) else
                                                    __import__("json").loads(rows))
                   if r["action"] == "remove"}
        assert planned == {("Pod", "finished"), ("Secret", "finished-secret"),
                           ("ConfigMap", "expired")}

        counts = cleanup_flow(clusters=[dev_cluster.block_name], docker=False,
                              pipelines=[pipeline], run_retention_days=None)
        assert counts["removed"] == 3 and counts["failed"] == 0, counts
        assert _gone(lambda: core.read_namespaced_pod("finished", ns))
        assert _gone(lambda: core.read_namespaced_secret("finished-secret", ns))
        assert _exists(lambda: core.read_namespaced_secret("running-secret", ns))
        assert _exists(lambda: core.read_namespaced_secret("deployed-secret", ns))
        assert _exists(lambda: k8s.BatchV1Api(api).read_namespaced_job("deployed-job", ns))
        assert _exists(lambda: core.read_namespaced_pod("deployed-pod", ns))
        assert _gone(lambda: core.read_namespaced_config_map("expired", ns))
        for name in ("running", "unknown", "pinned"):
            assert _exists(lambda n=name: core.read_namespaced_pod(n, ns)), name
        for name in ("fresh", "expired-pinned", "unlabelled"):
            assert _exists(lambda n=name: core.read_namespaced_config_map(n, ns)), name
        assert _exists(lambda: core.read_namespaced_pod(f"{pipeline}-sys", "kube-system"))
        assert _exists(lambda: core.read_namespaced_config_map(f"{pipeline}-sys",
                                                               "kube-system"))
        core.delete_namespaced_pod(f"{pipeline}-sys", "kube-system")
        core.delete_namespaced_config_map(f"{pipeline}-sys", "kube-system")


@pytest.mark.k8s
@pytest.mark.server
def test_an_object_changed_between_plan_and_delete_is_kept(dev_cluster, prefect_server):
    pipeline = f"cl-{uuid.uuid4().hex[:8]}"
    done, running = finished_and_running_runs(n_done=2)
    ns = dev_cluster.namespace("cleanup")
    past = str(int(time.time()) - 60)
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        _pod(api, ns, "relabelled", run_labels(pipeline, done[0]))
        _pod(api, ns, "pinned-late", run_labels(pipeline, done[1]))
        _configmap(api, ns, "renewed", run_labels(pipeline, done[0], **{EXPIRES_LABEL: past}))
        options = CleanupOptions(clusters=[dev_cluster.block_name], pipelines=[pipeline],
                                 run_retention_days=None)
        report = plan(options)
        assert {i.name for i in report.remove} == {"relabelled", "pinned-late", "renewed"}
        # Just before the delete: the pod now belongs to a run still going, another pod is
        # pinned, the configmap was deployed again (its expiry moved on).
        core.patch_namespaced_pod("relabelled", ns, {"metadata": {"labels": {
            RUN_LABEL: running}}})
        core.patch_namespaced_pod("pinned-late", ns, {"metadata": {"annotations": {
            KEEP_ANNOTATION: "true"}}})
        core.patch_namespaced_config_map("renewed", ns, {"metadata": {"labels": {
            EXPIRES_LABEL: str(int(time.time()) + 3600)}}})
        execute(report, options)
        assert report.removed == [] and report.failed == []
        reasons = {i.name: i.reason for i in report.kept if i.name in
                   ("relabelled", "pinned-late", "renewed")}
        assert "still running" in reasons["relabelled"]
        assert KEEP_ANNOTATION in reasons["pinned-late"]
        assert "expires at" in reasons["renewed"]
        for name in ("relabelled", "pinned-late"):
            assert _exists(lambda n=name: core.read_namespaced_pod(n, ns))
        assert _exists(lambda: core.read_namespaced_config_map("renewed", ns))


@pytest.mark.k8s
def test_k8s_deploy_expire_after_marks_objects_and_cleanup_removes_them_once_expired(
        dev_cluster, make_ctx, prefect_server):
    from ansflow.tasks.k8s_deploy import execute_k8s_deploy

    ns = dev_cluster.namespace("review")
    ctx = make_ctx("k8s_deploy", pipeline=f"rv-{uuid.uuid4().hex[:8]}")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "review-app"},
                "data": {"a": "1"}}
    cfg = K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns, manifest=manifest,
                          expire_after="2h", timeout=60)
    before = int(time.time())
    execute_k8s_deploy(ctx, cfg)
    with dev_cluster.client() as api:
        core = k8s.CoreV1Api(api)
        live = core.read_namespaced_config_map("review-app", ns).metadata
        expires = int(live.labels[EXPIRES_LABEL])
        assert before + 7200 <= expires <= int(time.time()) + 7200
        assert live.annotations[EXPIRES_ANNOTATION].endswith("Z")
        base = dict(clusters=[dev_cluster.block_name], pipelines=[ctx.pipeline],
                    run_retention_days=None)
        report = cleanup(CleanupOptions(**base))
        assert not report.removed and any(i.name == "review-app" and "expires at" in i.reason
                                          for i in report.kept)
        later = datetime.now(timezone.utc) + timedelta(hours=3)
        report = plan(CleanupOptions(**base, now=later))
        assert [(i.kind, i.name) for i in report.remove] == [("ConfigMap", "review-app")]


@pytest.mark.k8s
def test_a_job_and_bare_pod_k8s_deploy_applied_stay_after_their_run_ends(
        dev_cluster, make_ctx, prefect_server):
    """A migration Job and a bare Pod deployed with `wait: false` carry the run labels as
    everything k8s_deploy applies; once the run is over they stay (only expire_after removes
    what a pipeline deployed), while a step pod of that same run goes."""
    from ansflow.store import Store
    from ansflow.tasks.k8s_deploy import execute_k8s_deploy

    ns = dev_cluster.namespace("deployed")
    ctx = make_ctx("k8s_deploy", pipeline=f"dp-{uuid.uuid4().hex[:8]}")
    container = [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]
    manifest = [
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
         "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": container}}}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare"},
         "spec": {"containers": container}}]
    execute_k8s_deploy(ctx, K8sDeployConfig(cluster=dev_cluster.block_name, namespace=ns,
                                            manifest=manifest, wait=False, timeout=60))
    store = Store()
    try:
        store.record_start(ctx.run_id, ctx.pipeline, 1)
        store.record_end(ctx.run_id, "completed")
    finally:
        store.close()
    with dev_cluster.client() as api:
        core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
        assert batch.read_namespaced_job("migrate", ns).metadata.labels[RUN_LABEL] == ctx.run_id
        assert core.read_namespaced_pod("bare", ns).metadata.labels[RUN_LABEL] == ctx.run_id
        _pod(api, ns, "step", run_labels(ctx.pipeline, ctx.run_id))
        report = cleanup(CleanupOptions(clusters=[dev_cluster.block_name],
                                        pipelines=[ctx.pipeline], run_retention_days=None))
        assert [(i.kind, i.name) for i in report.removed] == [("Pod", "step")], report.removed
        assert report.failed == [] and report.problems == []
        assert _gone(lambda: core.read_namespaced_pod("step", ns))
        assert _exists(lambda: batch.read_namespaced_job("migrate", ns))
        assert _exists(lambda: core.read_namespaced_pod("bare", ns))
