"""Pure decisions of the Kubernetes waits: rollout status (as kubectl), conditions, bad pods.

Every function here takes plain dicts (objects as the API server returns them) and returns a
verdict; no I/O. ``k8s_wait`` and ``k8s_deploy`` do the watching and act on the verdicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ansflow.engines.object_health import assess
from ansflow.spec.conditions import WaitCondition

# A container stuck in one of these will not recover by waiting longer.
BAD_WAITING_REASONS = frozenset({
    "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError",
})
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Right after an undo the controller keeps the failed rollout's ProgressDeadlineExceeded
# until the old ReplicaSet has scaled down: waiting on a rollback must not fail on it.
AFTER_ROLLBACK = "after-rollback"
# The wait of k8s_scale: the object's new count of replicas, all ready.
SCALED = "scaled"


@dataclass(frozen=True)
class Verdict:
    """Where a wait stands: done, failed for good (with why), or still going (with progress)."""

    done: bool = False
    failed: str | None = None
    progress: str = ""


def _get(obj: dict, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj if obj is not None else default


def _conditions(obj: dict) -> list[dict]:
    return [c for c in _get(obj, "status", "conditions", default=[]) if isinstance(c, dict)]


def deployment_status(obj: dict, *, tolerate_deadline: bool = False) -> Verdict:
    """kubectl's DeploymentStatusViewer, plus a clear failure for a paused Deployment."""
    name = _get(obj, "metadata", "name", default="?")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _get(obj, "metadata", "generation", default=0) > status.get("observedGeneration", 0):
        return Verdict(progress=f"waiting for deployment {name!r} spec update to be observed")
    for cond in _conditions(obj):
        if (cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded"
                and not tolerate_deadline):
            return Verdict(failed=f"deployment {name!r} exceeded its progress deadline")
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    total = status.get("replicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < want:
        verdict = Verdict(progress=f"deployment {name!r}: {updated} of {want} new replicas "
                                   "have been updated")
    elif total > updated:
        verdict = Verdict(progress=f"deployment {name!r}: {total - updated} old replicas are "
                                   "pending termination")
    elif available < updated:
        verdict = Verdict(progress=f"deployment {name!r}: {available} of {updated} updated "
                                   "replicas are available")
    else:
        return Verdict(done=True, progress=f"deployment {name!r} successfully rolled out")
    if spec.get("paused"):  # kubectl would wait forever here
        return Verdict(failed=f"deployment {name!r} is paused, so its rollout cannot finish "
                              "(resume it: kubectl rollout resume)", progress=verdict.progress)
    return verdict


def statefulset_status(obj: dict) -> Verdict:
    """kubectl's StatefulSetStatusViewer (RollingUpdate only)."""
    name = _get(obj, "metadata", "name", default="?")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return Verdict(failed=f"statefulset {name!r}: rollout status is only available for "
                              "the RollingUpdate strategy")
    observed = status.get("observedGeneration", 0)
    if observed == 0 or _get(obj, "metadata", "generation", default=0) > observed:
        return Verdict(progress=f"waiting for statefulset {name!r} spec update to be observed")
    want = spec.get("replicas", 1)
    ready = status.get("readyReplicas", 0)
    if want is not None and ready < want:
        return Verdict(progress=f"statefulset {name!r}: {ready} of {want} pods are ready")
    rolling = strategy.get("rollingUpdate")
    if rolling and rolling.get("partition") is not None:
        partition = rolling.get("partition") or 0
        if status.get("updatedReplicas", 0) < want - partition:
            return Verdict(progress=f"statefulset {name!r}: {status.get('updatedReplicas', 0)} "
                                    f"of {want - partition} pods updated (partition {partition})")
        return Verdict(done=True, progress=f"statefulset {name!r} partitioned roll out complete")
    if status.get("updateRevision") != status.get("currentRevision"):
        return Verdict(progress=f"statefulset {name!r}: {status.get('updatedReplicas', 0)} pods "
                                f"at revision {status.get('updateRevision')}")
    return Verdict(done=True, progress=f"statefulset {name!r} rolling update complete")


def daemonset_status(obj: dict) -> Verdict:
    """kubectl's DaemonSetStatusViewer (RollingUpdate only)."""
    name = _get(obj, "metadata", "name", default="?")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _get(spec, "updateStrategy", "type", default="RollingUpdate") != "RollingUpdate":
        return Verdict(failed=f"daemonset {name!r}: rollout status is only available for "
                              "the RollingUpdate strategy")
    if _get(obj, "metadata", "generation", default=0) > status.get("observedGeneration", 0):
        return Verdict(progress=f"waiting for daemonset {name!r} spec update to be observed")
    desired = status.get("desiredNumberScheduled", 0)
    updated = status.get("updatedNumberScheduled", 0)
    available = status.get("numberAvailable", 0)
    if updated < desired:
        return Verdict(progress=f"daemonset {name!r}: {updated} of {desired} updated pods "
                                "are scheduled")
    if available < desired:
        return Verdict(progress=f"daemonset {name!r}: {available} of {desired} updated pods "
                                "are available")
    return Verdict(done=True, progress=f"daemonset {name!r} successfully rolled out")


def rollout_status(obj: dict, *, after_rollback: bool = False) -> Verdict:
    kind = obj.get("kind")
    if kind == "Deployment":
        return deployment_status(obj, tolerate_deadline=after_rollback)
    if kind == "StatefulSet":
        return statefulset_status(obj)
    if kind == "DaemonSet":
        return daemonset_status(obj)
    raise ValueError(f"rollout status is for Deployment, StatefulSet and DaemonSet, not {kind}")


def scale_status(obj: dict) -> Verdict:
    """Done when the new replica count is observed, all its pods are ready, none beyond it
    are left (Deployment, StatefulSet, ReplicaSet)."""
    kind = str(obj.get("kind", "")).lower()
    name = _get(obj, "metadata", "name", default="?")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if _get(obj, "metadata", "generation", default=0) > status.get("observedGeneration", 0):
        return Verdict(progress=f"waiting for {kind} {name!r} spec update to be observed")
    want = spec.get("replicas", 1)
    total, ready = status.get("replicas") or 0, status.get("readyReplicas") or 0
    if ready < want:
        return Verdict(progress=f"{kind} {name!r}: {ready} of {want} replicas are ready")
    if total > want:
        return Verdict(progress=f"{kind} {name!r}: {total - want} replicas beyond {want} are "
                                "still running")
    return Verdict(done=True, progress=f"{kind} {name!r}: {want} of {want} replicas are ready")


def condition_status(obj: dict, ctype: str, want: str) -> Verdict:
    """kubectl wait --for=condition=T=V: case-insensitive; stale conditions don't count."""
    generation = _get(obj, "metadata", "generation")
    for cond in _conditions(obj):
        if str(cond.get("type", "")).lower() != ctype.lower():
            continue
        observed = cond.get("observedGeneration", _get(obj, "status", "observedGeneration"))
        if generation is not None and observed is not None and observed < generation:
            return Verdict(progress=f"condition {ctype} is stale (generation {observed} < "
                                    f"{generation})")
        value = str(cond.get("status", ""))
        if value.lower() == want.lower():
            return Verdict(done=True, progress=f"condition {ctype}={value}")
        why = cond.get("reason") or cond.get("message") or ""
        return Verdict(progress=f"condition {ctype}={value}" + (f" ({why})" if why else ""))
    return Verdict(progress=f"condition {ctype} not reported yet")


def jsonpath_status(obj: dict, path: str, want: str | None) -> Verdict:
    """kubectl wait --for=jsonpath: missing = not yet, list/map = error, no value = non-empty."""
    value: Any = obj
    for key in [k for k in path.split(".") if k]:
        index = re.fullmatch(r"(.*)\[(\d+)\]", key)
        name, pos = (index.group(1), int(index.group(2))) if index else (key, None)
        if name:
            if not isinstance(value, dict) or name not in value:
                return Verdict(progress=f"{{.{path}}} is not set yet")
            value = value[name]
        if pos is not None:
            if not isinstance(value, list) or pos >= len(value):
                return Verdict(progress=f"{{.{path}}} is not set yet")
            value = value[pos]
    if isinstance(value, dict | list):
        return Verdict(failed=f"{{.{path}}} is a {type(value).__name__}, not a single value")
    text = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    if want is None:
        ok = text != ""
    else:
        ok = text == want
    return Verdict(done=ok, progress=f"{{.{path}}} = {text!r}")


def pod_ready(pod: dict) -> bool:
    """Running, not terminating, and condition Ready=True."""
    if _get(pod, "status", "phase") != "Running" or _get(pod, "metadata", "deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _conditions(pod))


def job_status(obj: dict) -> Verdict:
    """A Job is complete with Complete=True and failed for good with Failed=True; a
    suspended one (spec.suspend, or Suspended=True) fails at once, as a paused Deployment
    does: no pod runs until someone resumes it."""
    name = _get(obj, "metadata", "name", default="?")
    for cond in _conditions(obj):
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return Verdict(done=True, progress=f"job {name!r} complete")
        if cond.get("type") == "Failed":
            return Verdict(failed=f"job {name!r} failed: {cond.get('reason', '')} "
                                  f"{cond.get('message', '')}".rstrip())
    status = obj.get("status") or {}
    progress = (f"job {name!r}: {status.get('active', 0)} active, "
                f"{status.get('succeeded', 0)} succeeded, {status.get('failed', 0)} failed")
    suspended = any(c.get("type") == "Suspended" and c.get("status") == "True"
                    for c in _conditions(obj))
    if _get(obj, "spec", "suspend") is True or suspended:
        return Verdict(failed=f"job {name!r} is suspended, so it cannot complete (resume it: "
                              "set spec.suspend to false)", progress=progress)
    return Verdict(progress=progress)


def replicaset_status(obj: dict, *, ready_only: bool = False) -> Verdict:
    """A ReplicaSet (which reports no Available or Ready condition) is available when its
    generation is observed and availableReplicas (ready: readyReplicas) reaches
    spec.replicas, as Argo CD's health and `kubectl scale`'s wait read it."""
    name = _get(obj, "metadata", "name", default="?")
    status = obj.get("status") or {}
    if _get(obj, "metadata", "generation", default=0) > status.get("observedGeneration", 0):
        return Verdict(progress=f"waiting for replicaset {name!r} spec update to be observed")
    want = _get(obj, "spec", "replicas", default=1)
    word = "ready" if ready_only else "available"
    have = status.get("readyReplicas" if ready_only else "availableReplicas") or 0
    failure = next((c for c in _conditions(obj) if c.get("type") == "ReplicaFailure"
                    and c.get("status") == "True"), None)
    why = (f" (ReplicaFailure: {str(failure.get('message') or failure.get('reason'))[:300]})"
           if failure else "")
    if have < want:
        return Verdict(progress=f"replicaset {name!r}: {have} of {want} replicas are "
                                f"{word}{why}")
    return Verdict(done=True, progress=f"replicaset {name!r}: {have} of {want} replicas are "
                                       f"{word}")


def pod_ready_status(obj: dict) -> Verdict:
    """Condition Ready=True; a pod that has ended (Failed, or Succeeded) never will, so it
    fails at once, naming the container and exit code that ended it."""
    phase = _get(obj, "status", "phase")
    if phase in ("Failed", "Succeeded"):
        name = _get(obj, "metadata", "name", default="?")
        why = assess(obj, "Pod").message if phase == "Failed" else "it completed"
        return Verdict(failed=f"pod {name!r} has ended ({phase}) and will never be ready: "
                              f"{why}", progress=f"pod phase {phase}")
    return condition_status(obj, "Ready", "true")


def evaluate(obj: dict, cond: WaitCondition) -> Verdict:
    """The verdict of one wait on the current state of its object."""
    kind = obj.get("kind", "")
    if cond.mode == "rollout":
        if kind in WORKLOAD_KINDS:
            return rollout_status(obj, after_rollback=cond.name == AFTER_ROLLBACK)
        if kind == "ReplicaSet":
            return replicaset_status(obj)
        if kind == "Pod":
            return pod_ready_status(obj)
        return condition_status(obj, "Available", "true")
    if cond.mode == SCALED:
        return scale_status(obj)
    if cond.mode == "ready":
        if kind in WORKLOAD_KINDS:
            return rollout_status(obj)
        if kind == "ReplicaSet":
            return replicaset_status(obj, ready_only=True)
        if kind == "Pod":
            return pod_ready_status(obj)
        return condition_status(obj, "Ready", "true")
    if cond.mode == "complete":
        if kind == "Job":
            return job_status(obj)
        if kind == "Pod":
            phase = _get(obj, "status", "phase")
            if phase == "Failed":
                return Verdict(failed=f"pod {_get(obj, 'metadata', 'name')!r} failed")
            return Verdict(done=phase == "Succeeded", progress=f"pod phase {phase}")
        return condition_status(obj, "Complete", "true")
    if cond.mode == "condition":
        return condition_status(obj, cond.name, cond.value or "true")
    if cond.mode == "jsonpath":
        return jsonpath_status(obj, cond.name, cond.value)
    if cond.mode == "deleted":
        return Verdict(progress=f"{kind.lower()} {_get(obj, 'metadata', 'name')!r} still exists")
    raise ValueError(f"unknown wait mode {cond.mode}")


def stuck_pod(pods: list[dict], **rules: bool) -> str | None:
    """Why the first pod that cannot come up is stuck: 'pod P, container C: Reason: msg'."""
    found = stuck_container(pods, **rules)
    return found[0] if found else None


def _exit_code(terminated: Any) -> int:
    code = terminated.get("exitCode") if isinstance(terminated, dict) else None
    return code if isinstance(code, int) else 0


def stuck_container(pods: list[dict], *, final_exits: bool = False,
                    restarts: bool = True) -> tuple[str, dict, dict] | None:
    """The first stuck container: (why, as stuck_pod says it; its pod; its status).

    Stuck: waiting in one of BAD_WAITING_REASONS (CrashLoopBackOff, ImagePullBackOff...);
    with ``final_exits`` (the wait is on the pod itself), a container that exited with an
    error in a pod whose restartPolicy is Never (it will never run again); with
    ``restarts`` (not for a Job's pods: the Job retries), a container that just exited with
    an error and is about to be restarted, or that was restarted after one and is not
    ready: Argo CD counts such a pod Degraded, before the kubelet's back-off shows
    CrashLoopBackOff. ``crash_report`` adds the exit code and the last lines.
    """
    for pod in pods:
        if _get(pod, "metadata", "deletionTimestamp"):
            continue
        policy = _get(pod, "spec", "restartPolicy", default="Always")
        statuses = (_get(pod, "status", "initContainerStatuses", default=[])
                    + _get(pod, "status", "containerStatuses", default=[]))
        where = f"pod {_get(pod, 'metadata', 'name')!r}, container "
        for cs in statuses:
            if not isinstance(cs, dict):
                continue
            waiting = _get(cs, "state", "waiting", default={})
            reason = waiting.get("reason") if isinstance(waiting, dict) else None
            if reason in BAD_WAITING_REASONS:
                message = str(waiting.get("message") or "")[:300]
                return (f"{where}{cs.get('name')!r}: {reason}"
                        + (f": {message}" if message else ""), pod, cs)
            ended = _exit_code(_get(cs, "state", "terminated"))
            if ended and (policy == "Never" and final_exits or restarts and policy != "Never"):
                final = " (restartPolicy Never: it will not run again)" \
                    if policy == "Never" else ""
                return f"{where}{cs.get('name')!r} exited with an error{final}", pod, cs
            if restarts and policy != "Never" and not cs.get("ready") \
                    and (cs.get("restartCount") or 0) >= 1 \
                    and _exit_code(_get(cs, "lastState", "terminated")):
                return (f"{where}{cs.get('name')!r} was restarted after an error and is not "
                        f"ready ({cs.get('restartCount')} restart(s))", pod, cs)
    return None


def selector_string(selector: dict | None) -> str:
    """A label selector dict (matchLabels/matchExpressions) as a selector string."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)
