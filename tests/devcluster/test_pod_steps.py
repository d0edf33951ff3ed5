"""`runs_on: kubernetes`: command and script steps as pods on the dev cluster's real node
(real containers): output, exit codes, outputs, env, secrets kept out of the pod spec, the
workspace in and downloads out, timeout and cancel deleting the pod, and the failures that
must come fast with their reason (a missing image, an unschedulable pod, a kwok node)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from fixtures_k8s import BUSYBOX_IMAGE, KWOK_POD_SPEC, REAL_NODE_POD_SPEC
from fixtures_pipeline import by_id
from kubernetes import client as k8s
from polling import until

from ansflow.engines.kube_pod import STEP_POD_LABEL
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.spec.steps import CommandConfig, ScriptConfig
from ansflow.tasks.command import execute_command, execute_script

pytestmark = pytest.mark.k8s

ON_REAL_NODE = {"node_selector": REAL_NODE_POD_SPEC["nodeSelector"],
                "tolerations": REAL_NODE_POD_SPEC["tolerations"]}


def run_pods(api, ns: str, run_id: str) -> list:
    return k8s.CoreV1Api(api).list_namespaced_pod(
        ns, label_selector=f"ansflow.dev/run-id={run_id}").items


def run_secrets(api, ns: str, run_id: str) -> list:
    return k8s.CoreV1Api(api).list_namespaced_secret(
        ns, label_selector=f"ansflow.dev/run-id={run_id}").items


def config(cluster, ns: str, model=CommandConfig, **kw):
    return model(cluster=cluster.block_name, namespace=ns, image=BUSYBOX_IMAGE,
                 **ON_REAL_NODE, **kw)


def messages(caplog) -> list[str]:
    return "\n".join(r.getMessage() for r in caplog.records).splitlines()


def test_a_command_in_a_pod_output_exit_code_outputs_env_and_workspace(
        real_node_cluster, make_ctx, caplog, tmp_path):
    ns = real_node_cluster.namespace("pod")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "input.txt").write_text("from the workspace\n")
    ctx = make_ctx("command", runs_on="kubernetes",
                   env={"GREETING": "it's \"quoted\"\nand two lines"})
    result = execute_command(ctx, config(
        real_node_cluster, ns, working_dir="src", download=["out"], command=(
            'cat input.txt; printf "%s\\n" "$GREETING"; echo "host=$(hostname)"; '
            'echo "in=$PWD" >> "$ANSFLOW_OUTPUT"; mkdir -p ../out; echo made > ../out/f; '
            'echo "ws=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT"; printf "no newline"')))
    lines = messages(caplog)
    assert "from the workspace" in lines
    assert "it's \"quoted\"" in lines and "and two lines" in lines
    assert lines[-1] == "no newline"
    assert any(line.startswith("host=ansflow-command-step-") for line in lines), lines
    assert result.outputs == {"in": "/workspace/src", "ws": "/workspace"}
    assert (tmp_path / "out" / "f").read_text() == "made\n"
    with real_node_cluster.client() as api:
        assert run_pods(api, ns, ctx.run_id) == []
        until(lambda: not run_secrets(api, ns, ctx.run_id), 30, "the step's Secret gone")

    ctx = make_ctx("command", runs_on="kubernetes")
    with pytest.raises(StepFailed) as failed:
        execute_command(ctx, config(real_node_cluster, ns, command="echo before; exit 3"))
    assert failed.value.exit_code == 3
    assert "exited with code 3" in str(failed.value)


def test_a_script_in_a_pod_with_a_secret_never_in_the_pod_spec(real_node_cluster, make_ctx,
                                                               caplog):
    ns = real_node_cluster.namespace("pod")
    secret = "s3cr3t-value-" + "x" * 8
    ctx = make_ctx("script", runs_on="kubernetes", env={"TOKEN": secret}, secrets=[secret])
    seen: dict = {}

    def inspect() -> None:
        with real_node_cluster.client() as api:
            pods = until(lambda: [p for p in run_pods(api, ns, ctx.run_id)
                                  if p.status.phase == "Running"], 60, "the pod running")
            seen["pod"] = json.dumps(api.sanitize_for_serialization(pods[0]))
            found = run_secrets(api, ns, ctx.run_id)
            seen["owners"] = [(o.kind, o.name, o.uid) for o in found[0].metadata.owner_references]
            seen["labels"] = (found[0].metadata.labels, pods[0].metadata.labels)
            seen["uid"] = pods[0].metadata.uid
            seen["name"] = pods[0].metadata.name

    watcher = threading.Thread(target=inspect)
    watcher.start()
    result = execute_script(ctx, config(
        real_node_cluster, ns, model=ScriptConfig, args=["one arg"], script=(
            'sleep 2\necho "token is $TOKEN"\necho "arg=$1"\n'
            'echo "len=${#TOKEN}" >> "$ANSFLOW_OUTPUT"\n')))
    watcher.join()
    assert result.outputs == {"len": str(len(secret))}
    lines = messages(caplog)
    assert "token is ***" in lines and "arg=one arg" in lines
    assert secret not in "\n".join(lines)
    assert secret not in seen["pod"]
    assert seen["owners"] == [("Pod", seen["name"], seen["uid"])]
    # What the cleanup flow knows a step pod's Secret by (and its run), on both objects.
    for labels in seen["labels"]:
        assert labels[STEP_POD_LABEL] == "true" and labels["ansflow.dev/run-id"] == ctx.run_id


def test_timeout_and_cancel_delete_the_pod(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("pod")
    ctx = make_ctx("command", runs_on="kubernetes", timeout=8)
    started = time.monotonic()
    with pytest.raises(StepTimedOut) as timed_out:
        execute_command(ctx, config(real_node_cluster, ns, command="echo up; sleep 600"))
    assert "was deleted" in str(timed_out.value)
    assert time.monotonic() - started < 8 + 35
    with real_node_cluster.client() as api:
        assert run_pods(api, ns, ctx.run_id) == []

    ctx = make_ctx("command", runs_on="kubernetes")
    errors: list = []

    def run() -> None:
        try:
            execute_command(ctx, config(real_node_cluster, ns, command="sleep 600"))
        except StepFailed as exc:
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    with real_node_cluster.client() as api:
        until(lambda: [p for p in run_pods(api, ns, ctx.run_id)
                       if p.status.phase == "Running"], 60, "the pod running")
        ctx.control.cancel()
        runner.join(60)
        assert not runner.is_alive()
        assert isinstance(errors[0], StepCancelled), errors
        assert run_pods(api, ns, ctx.run_id) == []


def test_a_missing_image_or_no_node_fails_fast_with_the_reason(real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("pod")
    started = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        execute_command(make_ctx("command", runs_on="kubernetes"), CommandConfig(
            cluster=real_node_cluster.block_name, namespace=ns, command="true",
            image="localhost/ansflow/no-such-image:1", **ON_REAL_NODE))
    assert "ErrImagePull" in str(failed.value) or "ImagePullBackOff" in str(failed.value)
    assert time.monotonic() - started < 60

    with pytest.raises(StepFailed) as failed:
        execute_command(make_ctx("command", runs_on="kubernetes"), CommandConfig(
            cluster=real_node_cluster.block_name, namespace=ns, command="true",
            image=BUSYBOX_IMAGE, node_selector={"no-such": "label"}))
    assert "Unschedulable" in str(failed.value)

    # A pod that tolerates the kwok nodes' taint and selects them lands on one, which runs
    # nothing: refused at once.
    with pytest.raises(StepFailed) as failed:
        execute_command(make_ctx("command", runs_on="kubernetes"), CommandConfig(
            cluster=real_node_cluster.block_name, namespace=ns, command="true",
            image=BUSYBOX_IMAGE, node_selector=KWOK_POD_SPEC["nodeSelector"],
            tolerations=KWOK_POD_SPEC["tolerations"]))
    assert "a kwok node" in str(failed.value) and "--real-node" in str(failed.value)


def test_a_pod_step_without_any_selector_lands_on_the_real_node(real_node_cluster, make_ctx):
    """The kwok nodes are tainted on a cluster with a real node: a step pod needs no
    dev-cluster-specific selector or toleration to run in a real container."""
    ns = real_node_cluster.namespace("pod")
    result = execute_command(make_ctx("command", runs_on="kubernetes"), CommandConfig(
        cluster=real_node_cluster.block_name, namespace=ns, image=BUSYBOX_IMAGE,
        command='echo "ran=$(cat /etc/hostname)" >> "$ANSFLOW_OUTPUT"'))
    # Success means a real container: a pod on a kwok node is refused (test above).
    assert result.exit_code == 0 and result.outputs["ran"].startswith("ansflow-command-step-")


def test_a_kubernetes_pipeline_runs_its_steps_in_pods(real_node_cluster, run_pipeline):
    ns = real_node_cluster.namespace("pod")
    state, summary = run_pipeline(f"""
        pipeline:
          name: in-pods
          type: kubernetes
          defaults:
            kubernetes:
              cluster: {real_node_cluster.block_name}
              namespace: {ns}
              image: {BUSYBOX_IMAGE}
              node_selector: {{"ansflow.dev/real-node": "true"}}
              tolerations: [{{key: ansflow.dev/real-node, operator: Exists, effect: NoSchedule}}]
              resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{memory: 64Mi}}}}
          steps:
            - name: make
              type: command
              config:
                command: echo "version=1.2.{{{{ pipeline.build_number }}}}" >> "$ANSFLOW_OUTPUT"
            - name: use
              type: command
              config:
                command: test "{{{{ steps.make.outputs.version }}}}" != ""
            - name: local one
              type: command
              runs_on: local
              config:
                command: echo here
    """)
    assert state.is_completed(), summary["message"]
    steps = by_id(summary)
    assert steps["make"]["outputs"]["version"].startswith("1.2."), steps["make"]
    assert {s: steps[s]["state"] for s in steps} == {
        "make": "completed", "use": "completed", "local_one": "completed"}


def test_pod_settings_reach_the_pod_and_an_unknown_service_account_is_refused(
        real_node_cluster, make_ctx):
    ns = real_node_cluster.namespace("pod")
    with real_node_cluster.client() as api:
        k8s.CoreV1Api(api).create_namespaced_service_account(
            ns, {"metadata": {"name": "step-runner"}})
    ctx = make_ctx("command", runs_on="kubernetes")
    resources = {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    seen: dict = {}

    def inspect() -> None:
        with real_node_cluster.client() as api:
            [pod] = until(lambda: run_pods(api, ns, ctx.run_id), 60, "the step's pod")
            seen["spec"] = api.sanitize_for_serialization(pod.spec)

    watcher = threading.Thread(target=inspect)
    watcher.start()
    # The token is mounted only when a service account is named: the step can use it.
    result = execute_command(ctx, config(
        real_node_cluster, ns, service_account="step-runner", resources=resources,
        command="sleep 1; test -s /var/run/secrets/kubernetes.io/serviceaccount/token "
                "&& echo token=yes >> \"$ANSFLOW_OUTPUT\""))
    watcher.join()
    assert result.outputs == {"token": "yes"}
    spec = seen["spec"]
    assert spec["serviceAccountName"] == "step-runner"
    assert spec["automountServiceAccountToken"] is True
    assert spec["containers"][0]["resources"] == resources
    assert spec["nodeSelector"] == ON_REAL_NODE["node_selector"]
    assert spec["nodeName"] == "127.0.0.1"

    ctx = make_ctx("command", runs_on="kubernetes")
    with pytest.raises(StepFailed) as failed:
        execute_command(ctx, config(real_node_cluster, ns, service_account="nobody-here",
                                    command="true"))
    assert "serviceaccount \"nobody-here\" not found" in str(failed.value)
    assert "Traceback" not in str(failed.value)
    with real_node_cluster.client() as api:  # the Secret made before the pod went with it
        assert run_secrets(api, ns, ctx.run_id) == []


def test_a_container_config_error_fails_fast_with_the_reason(real_node_cluster, make_ctx,
                                                             monkeypatch):
    """A Secret that lost a key the pod reads (edited by someone while the step started): the
    real kubelet reports CreateContainerConfigError, and the step fails at once with it."""
    from ansflow.runtime import pod_step

    original = pod_step.pod_manifest

    def with_a_missing_key(spec):
        manifest = original(spec)
        manifest["spec"]["containers"][0]["env"].append(
            {"name": "GONE", "valueFrom": {"secretKeyRef": {"name": spec.name,
                                                            "key": "no-such-key"}}})
        return manifest

    monkeypatch.setattr(pod_step, "pod_manifest", with_a_missing_key)
    ns = real_node_cluster.namespace("pod")
    ctx = make_ctx("command", runs_on="kubernetes", timeout=300)
    started = time.monotonic()
    with pytest.raises(StepFailed) as failed:
        execute_command(ctx, config(real_node_cluster, ns, command="echo never"))
    assert "CreateContainerConfigError" in str(failed.value)
    assert "no-such-key" in str(failed.value)
    assert time.monotonic() - started < 60
    with real_node_cluster.client() as api:
        assert run_pods(api, ns, ctx.run_id) == []
