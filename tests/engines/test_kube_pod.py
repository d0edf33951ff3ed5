"""The pure half of steps in pods: the pod's and Secret's manifests (nothing of the step's in
the pod spec), what a pod's status means, and the reading of the marked log."""

from __future__ import annotations

import json

from ansflow.engines.kube_pod import (
    DEADLINE_SLACK,
    MarkedLog,
    PodSpecInput,
    owner_patch,
    pod_manifest,
    pod_name,
    pod_state,
    secret_manifest,
)
from ansflow.outputs import MAX_OUTPUT_BYTES
from ansflow.runtime.pod_step import step_script
from ansflow.runtime.remote import SCRIPT_PATH


def spec(**kw) -> PodSpecInput:
    fields = dict(name="ansflow-s-abc", namespace="ns", image="busybox:1", labels={"a": "b"},
                  env_names=["TOKEN"], plain_env={"CI": "true"}, mark="M", wait_workspace=True,
                  hold=False)
    fields.update(kw)
    return PodSpecInput(**fields)


def test_the_pod_spec_holds_no_step_value_and_mounts_no_token_by_default():
    pod = pod_manifest(spec(timeout=10.2))
    text = json.dumps(pod)
    assert "s3cret" not in text
    container = pod["spec"]["containers"][0]
    assert container["command"][3:] == ["ansflow", "M", "1", "0"]
    assert {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "ansflow-s-abc",
                                                            "key": "TOKEN"}}} in container["env"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["activeDeadlineSeconds"] == 11 + DEADLINE_SLACK
    with_sa = pod_manifest(spec(service_account="ci", node_selector={"d": "ssd"},
                                tolerations=[{"key": "k", "operator": "Exists"}],
                                resources={"limits": {"memory": "64Mi"}}))
    assert with_sa["spec"]["serviceAccountName"] == "ci"
    assert with_sa["spec"]["automountServiceAccountToken"] is True
    assert with_sa["spec"]["nodeSelector"] == {"d": "ssd"}
    assert with_sa["spec"]["containers"][0]["resources"] == {"limits": {"memory": "64Mi"}}
    assert "activeDeadlineSeconds" not in with_sa["spec"]


def test_the_secret_holds_env_command_and_script_and_is_owned_by_the_pod():
    secret = secret_manifest("n", "ns", {}, {"TOKEN": "s3cret"}, "exec true\n", "echo hi\n")
    assert secret["stringData"] == {"TOKEN": "s3cret", "ansflow-step.sh": "exec true\n",
                                    "ansflow-script": "echo hi\n"}
    patch = owner_patch({"metadata": {"name": "n", "uid": "u-1"}})
    assert patch["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "n", "uid": "u-1"}]


def test_step_script_quotes_every_value():
    text = step_script(["sh", "-e", "-c", "echo 'a b'; $(x)"], "src dir")
    assert text.splitlines()[1] == "exec sh -e -c 'echo '\"'\"'a b'\"'\"'; $(x)'"
    assert "cd '/workspace/src dir'" in text
    assert "/run/ansflow-secret/ansflow-script" in step_script(["sh", SCRIPT_PATH], ".")


def test_pod_names_are_dns_labels():
    name = pod_name("Build_The-Thing" * 10, "a1b2c3")
    assert len(name) <= 63 and name.startswith("ansflow-build-the-thing")
    assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()


def status(**kw) -> dict:
    return {"spec": {"nodeName": kw.pop("node", None)}, "status": kw}


def test_pod_state_reads_start_end_and_the_stuck_reasons():
    assert not pod_state(status()).started
    assert pod_state(status()).progress == "waiting to be scheduled"
    unsched = status(conditions=[{"type": "PodScheduled", "status": "False",
                                  "reason": "Unschedulable", "message": "0/2 nodes"}])
    assert pod_state(unsched).stuck == "Unschedulable: 0/2 nodes"
    pull = status(node="n1", containerStatuses=[{"name": "step", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling x"}}}])
    assert pod_state(pull).stuck == "ImagePullBackOff: Back-off pulling x"
    creating = status(node="n1", containerStatuses=[{"name": "step", "state": {"waiting": {
        "reason": "ContainerCreating"}}}])
    assert pod_state(creating).stuck is None and not pod_state(creating).started
    running = status(node="n1", containerStatuses=[{"name": "step", "state": {"running": {}}}])
    assert pod_state(running).started and pod_state(running).terminated is None
    ended = status(node="n1", containerStatuses=[{"name": "step", "state": {
        "terminated": {"exitCode": 3, "reason": "Error"}}}])
    assert pod_state(ended).terminated == {"exitCode": 3, "reason": "Error"}
    failed = status(phase="Failed", reason="DeadlineExceeded", message="too long")
    assert "DeadlineExceeded" in pod_state(failed).stuck


def test_the_marked_log_gives_the_lines_as_written_then_outputs_and_code():
    log = MarkedLog("M")
    assert log.feed(b"one\n\ntwo\n") == [b"one", b"", b"two"]
    assert log.feed(b"\nM begin\nk=v\nmulti<<E\nx\nE\n\nM end 7\n") == []
    assert log.exit_code == 7 and log.outputs_text == "k=v\nmulti<<E\nx\nE\n"
    assert log.flush() == []
    # A last line without a newline, an empty outputs file, markers split across chunks.
    log = MarkedLog("M")
    shown = log.feed(b"partial") + log.feed(b"\nM be") + log.feed(b"gin\n\nM end 0\n")
    assert shown == [b"partial"] and log.exit_code == 0 and log.outputs_text == ""
    # A line that only looks like a marker of another mark is the step's own.
    log = MarkedLog("M")
    assert log.feed(b"N begin\nM end 1\n") == [b"N begin", b"M end 1"]
    assert log.exit_code is None and log.flush() == []


def test_the_marked_log_bounds_lines_and_outputs():
    log = MarkedLog("M", max_line=10)
    assert log.feed(b"x" * 25) == [b"x" * 10, b"x" * 10]
    log = MarkedLog("M")
    log.feed(b"M begin\n" + b"k=" + b"v" * MAX_OUTPUT_BYTES + b"\nM end 0\n")
    assert log.too_big and log.exit_code == 0
