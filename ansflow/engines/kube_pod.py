"""The pure half of `runs_on: kubernetes`: the step pod's and Secret's manifests, the fixed
program the pod runs, what a pod's status means for the step, and the reading of the pod's
log (the step's lines, then its outputs and exit code between two marker lines).

The pod runs :data:`WRAPPER`, the same text for every step, so no step value is in the pod
spec. The step's environment, its command (``step.sh``) and an inline script live in a Secret
the pod reads (env through ``secretKeyRef``, the files through a read-only volume); the
Secret is owned by the pod, so it goes with it. The wrapper

1. waits (when the workspace is copied in) until ``/run/ansflow-step/ready`` exists: the step
   writes it after the workspace's tar stream has been unpacked over exec;
2. runs ``step.sh`` (``cd`` to the working directory, ``exec`` the argv) in ``/workspace``;
3. prints ``<mark> begin``, the ``$ANSFLOW_OUTPUT`` file and ``<mark> end <code>``, each on a
   line of its own (``mark`` is random per step attempt);
4. with downloads, waits until ``/run/ansflow-step/release`` exists (the step copies the
   paths out over exec first), and exits with the command's code, which the step then reads
   from the container's terminated state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ansflow.outputs import MAX_OUTPUT_BYTES

CONTAINER = "step"
# On a step's Pod and its Secret: what tells the cleanup that a Secret is a step pod's (a run's
# leftover when its worker died), not one a k8s_deploy deployed (never a run's leftover).
STEP_POD_LABEL = "ansflow.dev/step-pod"
WORKSPACE = "/workspace"
STEP_DIR = "/run/ansflow-step"
SECRET_DIR = "/run/ansflow-secret"
SCRIPT_KEY = "ansflow-script"  # keys with a '-' never clash with an environment name
STEP_KEY = "ansflow-step.sh"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Seconds the pod may outlive the step's own deadline before Kubernetes ends it (a worker that
# died without deleting its pod).
DEADLINE_SLACK = 60
# The waiting reasons after which a step's container will not start by waiting longer.
STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
                   "ErrImageNeverPull"})

WRAPPER = r"""S=/run/ansflow-step
mark=$1
nap() { sleep 0.05 2>/dev/null || sleep 1; }
if [ "$2" = 1 ]; then
  n=0
  while [ ! -e "$S/ready" ]; do
    n=$((n+1))
    if [ "$n" -gt 12000 ]; then echo "ansflow: the workspace never arrived" >&2; exit 125; fi
    nap
  done
fi
: > "$S/outputs" || exit 125
sh /run/ansflow-secret/ansflow-step.sh </dev/null
code=$?
printf '\n%s begin\n' "$mark"
cat "$S/outputs"
printf '\n%s end %s\n' "$mark" "$code"
if [ "$3" = 1 ]; then
  n=0
  while [ ! -e "$S/release" ] && [ "$n" -lt 72000 ]; do n=$((n+1)); nap; done
fi
exit "$code"
"""


def pod_name(step_id: str, suffix: str) -> str:
    """``ansflow-<step>-<suffix>``: a DNS-1123 label of at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]+", "-", step_id.lower()).strip("-")[:40].strip("-") or "step"
    return f"ansflow-{base}-{suffix}"[:63].rstrip("-")


def secret_manifest(name: str, namespace: str, labels: dict[str, str], env: dict[str, str],
                    step_sh: str, script: str | None) -> dict:
    """The Secret holding the step's environment, its ``step.sh`` and an inline script."""
    data = {key: str(value) for key, value in env.items()}
    data[STEP_KEY] = step_sh
    if script is not None:
        data[SCRIPT_KEY] = script
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "stringData": data}


@dataclass(frozen=True)
class PodSpecInput:
    """What the step's pod is made of (values already rendered and checked)."""

    name: str
    namespace: str
    image: str
    labels: dict[str, str]
    env_names: list[str]  # from the Secret
    plain_env: dict[str, str]  # ansflow's own variables: nothing secret
    mark: str
    wait_workspace: bool
    hold: bool
    timeout: float | None = None
    service_account: str | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    resources: dict[str, dict[str, Any]] | None = None


def pod_manifest(spec: PodSpecInput) -> dict:
    """The step's pod: one container running :data:`WRAPPER`, never restarted."""
    env = [{"name": k, "value": v} for k, v in spec.plain_env.items()]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": spec.name, "key": k}}}
            for k in spec.env_names]
    container: dict[str, Any] = {
        "name": CONTAINER, "image": spec.image,
        "command": ["sh", "-c", WRAPPER, "ansflow", spec.mark,
                    "1" if spec.wait_workspace else "0", "1" if spec.hold else "0"],
        "workingDir": WORKSPACE, "env": env,
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE},
                         {"name": "step", "mountPath": STEP_DIR},
                         {"name": "secret", "mountPath": SECRET_DIR, "readOnly": True}],
    }
    if spec.resources:
        container["resources"] = spec.resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": bool(spec.service_account),
        "terminationGracePeriodSeconds": 5,
        "containers": [container],
        "volumes": [{"name": "workspace", "emptyDir": {}},
                    {"name": "step", "emptyDir": {}},
                    {"name": "secret", "secret": {"secretName": spec.name,
                                                  "defaultMode": 0o555}}],
    }
    if spec.timeout is not None:
        pod_spec["activeDeadlineSeconds"] = max(1, math.ceil(spec.timeout)) + DEADLINE_SLACK
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = list(spec.tolerations)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": spec.name, "namespace": spec.namespace,
                         "labels": spec.labels},
            "spec": pod_spec}


def owner_patch(pod: dict) -> dict:
    """The merge patch that makes the Secret the pod's (deleted with it)."""
    meta = pod["metadata"]
    return {"metadata": {"ownerReferences": [{
        "apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}]}}


@dataclass(frozen=True)
class PodState:
    """Where the step's pod stands: started (running or ended), stuck (with why), or not yet."""

    started: bool = False
    terminated: dict | None = None  # the container's terminated state, once there
    stuck: str | None = None
    node: str | None = None
    progress: str = ""


def _container_status(pod: dict) -> dict:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return status
    return {}


def pod_state(pod: dict) -> PodState:
    """What the pod's status says for the step (pure)."""
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    container = _container_status(pod)
    state = container.get("state") or {}
    if state.get("terminated") is not None:
        return PodState(started=True, terminated=state["terminated"], node=node)
    if state.get("running") is not None:
        return PodState(started=True, node=node, progress="running")
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or ""
    if reason in STUCK:
        message = str(waiting.get("message") or "").strip()
        return PodState(stuck=f"{reason}: {message}" if message else reason, node=node)
    if status.get("phase") == "Failed":
        why = status.get("reason") or "Failed"
        return PodState(stuck=f"the pod failed ({why}): {status.get('message') or ''}".strip(),
                        node=node)
    for cond in status.get("conditions") or []:
        if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                and cond.get("reason") == "Unschedulable"):
            return PodState(stuck=f"Unschedulable: {cond.get('message') or ''}".strip())
    if not node:
        return PodState(progress="waiting to be scheduled")
    return PodState(node=node, progress=f"on node {node}: {reason or 'starting'}")


def terminated_reason(terminated: dict) -> str:
    """``OOMKilled``, ``Error``... with the message, for a container that ended unexpectedly."""
    reason = terminated.get("reason") or "ended"
    message = str(terminated.get("message") or "").strip()
    return f"{reason}: {message}" if message else reason


class MarkedLog:
    """Reads the pod's log bytes: the step's own lines, then its outputs and exit code
    between ``<mark> begin`` and ``<mark> end <code>``.

    The wrapper starts each marker with a newline so it is on a line of its own; the empty
    line that newline makes after output that ended with one is dropped, so the step's lines
    come out as written. Output lines are kept byte for byte (at most MAX_OUTPUT_BYTES in
    all); a step line longer than ``max_line`` bytes is handed out in pieces.
    """

    def __init__(self, mark: str, max_line: int = 8192) -> None:
        self.begin = f"{mark} begin".encode()
        self.end = re.compile(re.escape(mark.encode()) + rb" end (\d+)")
        self.max_line = max_line
        self.in_outputs = False
        self.outputs = bytearray()
        self.too_big = False
        self.exit_code: int | None = None
        self._held_blank = False
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The step's lines (without their newline) that ``data`` completes."""
        self._buf.extend(data)
        shown: list[bytes] = []
        while True:
            cut = self._buf.find(b"\n")
            if cut < 0:
                limit = MAX_OUTPUT_BYTES + 1 if self.in_outputs else self.max_line
                if len(self._buf) > limit:
                    piece = bytes(self._buf[:limit])
                    del self._buf[:limit]
                    self._line(piece, shown, whole=False)
                    continue
                return shown
            line = bytes(self._buf[:cut])
            del self._buf[:cut + 1]
            self._line(line, shown)

    def flush(self) -> list[bytes]:
        """The rest, at the end of the log."""
        shown: list[bytes] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            self._line(line, shown)
        if self._held_blank and not self.in_outputs and self.exit_code is None:
            shown.append(b"")
        self._held_blank = False
        return shown

    def _line(self, line: bytes, shown: list[bytes], whole: bool = True) -> None:
        if line.endswith(b"\r") and whole:
            line = line[:-1]
        if self.exit_code is not None:
            shown.append(line)  # a background process that wrote after the end
            return
        if self.in_outputs:
            match = self.end.fullmatch(line) if whole else None
            if match:
                self._held_blank = False
                self.exit_code = int(match.group(1))
                self.in_outputs = False
                return
            self._pass(line, whole, self._add_output)
            return
        if whole and line == self.begin:
            self._held_blank = False
            self.in_outputs = True
            return
        self._pass(line, whole, shown.append)

    def _pass(self, line: bytes, whole: bool, sink: Any) -> None:
        """Hand ``line`` to ``sink``, holding an empty line back until the next line shows
        it was not the one a marker's leading newline made."""
        if self._held_blank:
            sink(b"")
            self._held_blank = False
        if line == b"" and whole:
            self._held_blank = True
        else:
            sink(line)

    def _add_output(self, line: bytes) -> None:
        if len(self.outputs) + len(line) + 1 > MAX_OUTPUT_BYTES:
            self.too_big = True
            return
        self.outputs += line + b"\n"

    @property
    def outputs_text(self) -> str:
        return self.outputs.decode("utf-8", "replace")
