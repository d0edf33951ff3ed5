"""k8s_logs against the dev cluster. kwok serves one CRI-format file as every container's
log (`dev_cluster.pod_logs`); the tests append unique lines to it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kubernetes import client as k8s

from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import K8sLogsConfig
from ansflow.tasks.k8s_logs import TAIL_KEPT, execute_k8s_logs

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def log_ns(dev_cluster) -> str:
    """A namespace with a 2-replica Deployment `talker` whose pods are Running."""
    ns = dev_cluster.namespace("logs")
    labels = {"app": "talker"}
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "talker"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "example.invalid/app:1"}]}}}}
    with dev_cluster.client() as api:
        k8s.AppsV1Api(api).create_namespaced_deployment(ns, body)
        core = k8s.CoreV1Api(api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod(ns, label_selector="app=talker").items
            if len(pods) == 2 and all(p.status.phase == "Running" for p in pods):
                return ns
            time.sleep(0.3)
    raise AssertionError("talker pods never ran")


def pods_of(dev_cluster, ns) -> list[str]:
    with dev_cluster.client() as api:
        return sorted(p.metadata.name for p in k8s.CoreV1Api(api).list_namespaced_pod(
            ns, label_selector="app=talker").items)


def append(dev_cluster, *texts: str) -> None:
    with dev_cluster.pod_logs.open("a") as fh:
        for text in texts:
            fh.write(f"2026-01-01T00:00:01Z stdout F {text}\n")


def lines_of(caplog) -> list[str]:
    """The logged lines: k8s_logs logs each burst of lines it reads as one record."""
    return [line for m in caplog.messages for line in m.split("\n")]


def config(dev_cluster, ns, **kw) -> K8sLogsConfig:
    return K8sLogsConfig(cluster=dev_cluster.block_name, namespace=ns, **kw)


def test_one_pod_streams_its_log_and_counts_lines(dev_cluster, log_ns, make_ctx, caplog):
    marker = f"one-pod-{uuid.uuid4().hex}"
    append(dev_cluster, marker)
    pod = pods_of(dev_cluster, log_ns)[0]
    result = execute_k8s_logs(make_ctx("k8s_logs"), config(dev_cluster, log_ns, pod=pod))
    assert marker in lines_of(caplog)  # unprefixed for one pod
    assert result.outputs["pods"] == pod and int(result.outputs["lines"]) >= 1


def test_selector_reads_every_pod_prefixed_and_tail_lines_bounds_each(
        dev_cluster, log_ns, make_ctx, caplog):
    first, second = f"sel-a-{uuid.uuid4().hex}", f"sel-b-{uuid.uuid4().hex}"
    append(dev_cluster, "older line", first, second)
    pods = pods_of(dev_cluster, log_ns)
    result = execute_k8s_logs(make_ctx("k8s_logs"), config(
        dev_cluster, log_ns, pod_selector="app=talker", tail_lines=2))
    assert result.outputs == {"pods": ",".join(pods), "lines": "4"}
    logged = [m for m in lines_of(caplog) if m.startswith("[")]
    assert sorted(logged) == sorted(f"[{p}] {t}" for p in pods for t in (first, second))
    assert not any("older line" in m for m in caplog.messages)


def test_follow_streams_new_lines_and_ends_at_its_timeout(dev_cluster, log_ns, make_ctx,
                                                         caplog):
    late = f"late-{uuid.uuid4().hex}"
    pod = pods_of(dev_cluster, log_ns)[0]
    threading.Timer(1.5, append, args=(dev_cluster, late)).start()
    started = time.monotonic()
    result = execute_k8s_logs(make_ctx("k8s_logs"), config(
        dev_cluster, log_ns, pod=pod, follow=True, tail_lines=0, timeout=4))
    elapsed = time.monotonic() - started
    assert 3.5 <= elapsed < 15
    assert late in lines_of(caplog)
    assert "stopped following after 4 s (timeout)" in caplog.messages
    assert result.outputs["lines"] == "1"


def test_follow_cut_by_the_step_timeout_or_a_cancel(dev_cluster, log_ns, make_ctx):
    pod = pods_of(dev_cluster, log_ns)[0]
    started = time.monotonic()
    with pytest.raises(StepTimedOut, match="the step's timeout stopped the logs"):
        execute_k8s_logs(make_ctx("k8s_logs", timeout=2), config(
            dev_cluster, log_ns, pod=pod, follow=True, tail_lines=0, timeout=60))
    assert time.monotonic() - started < 12
    ctx = make_ctx("k8s_logs")
    threading.Timer(1.0, ctx.control.cancel).start()
    started = time.monotonic()
    with pytest.raises(StepCancelled):
        execute_k8s_logs(ctx, config(dev_cluster, log_ns, pod=pod, follow=True, timeout=60))
    assert time.monotonic() - started < 12


def test_a_secret_in_a_log_line_is_masked(dev_cluster, log_ns, make_ctx, caplog):
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    append(dev_cluster, f"password={secret} end")
    pod = pods_of(dev_cluster, log_ns)[0]
    execute_k8s_logs(make_ctx("k8s_logs", secrets=[secret]), config(
        dev_cluster, log_ns, pod=pod, tail_lines=5))
    assert "password=*** end" in lines_of(caplog)
    assert not any(secret in m for m in caplog.messages)


def test_missing_pod_suggests_close_names_and_empty_selector_fails(dev_cluster, log_ns,
                                                                   make_ctx):
    pod = pods_of(dev_cluster, log_ns)[0]
    typo = pod[:-1] + ("x" if pod[-1] != "x" else "y")
    with pytest.raises(StepFailed) as err:
        execute_k8s_logs(make_ctx("k8s_logs"), config(dev_cluster, log_ns, pod=typo))
    assert f"cluster 'test': pod {typo!r} not found in namespace {log_ns}" in str(err.value)
    assert f"did you mean {pod!r}" in str(err.value)
    with pytest.raises(StepFailed, match=f"no pods match the selector 'app=ghost' in "
                                         f"namespace {log_ns}"):
        execute_k8s_logs(make_ctx("k8s_logs"), config(dev_cluster, log_ns,
                                                      pod_selector="app=ghost"))
    with pytest.raises(StepFailed, match="has no container 'nope' \\(it has: main\\)"):
        execute_k8s_logs(make_ctx("k8s_logs"), config(dev_cluster, log_ns, pod=pod,
                                                      container="nope"))


def test_the_tail_is_a_markdown_artifact_of_a_real_flow_run(dev_cluster, log_ns):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    import ansflow.tasks as tasks

    marker = f"artifact-{uuid.uuid4().hex}"
    many = [f"filler-{i}" for i in range(TAIL_KEPT + 20)]
    append(dev_cluster, *many, marker)
    pod = pods_of(dev_cluster, log_ns)[0]

    @flow(name="logs-flow")
    def logs_flow():
        return tasks.k8s_logs(cluster=dev_cluster.block_name, namespace=log_ns, pod=pod,
                              tail_lines=TAIL_KEPT + 21)

    state = logs_flow(return_state=True)
    assert state.is_completed(), state.message
    assert state.result()["outputs"]["lines"] == str(TAIL_KEPT + 21)
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert artifact.type == "markdown"
    body = artifact.data
    assert f"# Logs of {pod}" in body and marker in body
    assert f"The last {TAIL_KEPT} of {TAIL_KEPT + 21} lines." in body
    assert "filler-20\n" not in body and "filler-21\n" in body  # only the last 200 kept


def test_the_artifact_is_masked_and_none_is_made_outside_a_flow_run(dev_cluster, log_ns,
                                                                    make_ctx):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from ansflow.tasks.k8s_logs import LogCollector, publish_tail

    secret = f"tok-{uuid.uuid4().hex}"
    append(dev_cluster, f"bearer {secret} used")
    pod = pods_of(dev_cluster, log_ns)[0]
    outside = LogCollector(make_ctx("k8s_logs"), prefixed=False)
    outside.add(pod, ["a line"])
    assert publish_tail(outside.ctx, outside, [pod]) is False  # no flow run: nothing, no error

    @flow(name="logs-masked")
    def masked():
        execute_k8s_logs(make_ctx("k8s_logs", secrets=[secret]),
                         config(dev_cluster, log_ns, pod=pod, tail_lines=3))

    state = masked(return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert "bearer *** used" in artifact.data and secret not in artifact.data
