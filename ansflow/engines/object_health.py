"""The health of one Kubernetes object, as Argo CD assesses it (pure: no I/O).

``assess(obj)`` gives a ``Health``: one of Healthy, Progressing, Degraded, Suspended, Missing,
Unknown, with a one-line message. The rules per kind follow Argo CD's health assessment
(gitops-engine ``pkg/health``, and Argo CD's ``resource_customizations/batch/CronJob``
health script); where this module deliberately differs, docs/upkeep.md ("Health of every
object") says where and why. It lives among the engines (the lowest layer) so that the
inventory, the step tasks and the waits can all use it.

Every value comes from a cluster: messages are made printable, one line and bounded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

HEALTHY = "Healthy"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
SUSPENDED = "Suspended"
MISSING = "Missing"
UNKNOWN = "Unknown"
# Argo CD's order, best first: an application is as healthy as its worst object.
STATUSES = (HEALTHY, SUSPENDED, PROGRESSING, MISSING, DEGRADED, UNKNOWN)
_RANK = {s: i for i, s in enumerate(STATUSES)}
MAX_MESSAGE = 500
MAX_PART = 200

# Which API groups each kind is assessed in (Argo CD dispatches on group and kind).
GROUPS = {
    "Deployment": ("apps",), "StatefulSet": ("apps",), "DaemonSet": ("apps",),
    "ReplicaSet": ("apps",), "Pod": ("",), "Service": ("",), "PersistentVolumeClaim": ("",),
    "Namespace": ("",), "ConfigMap": ("",), "Secret": ("",), "Job": ("batch",),
    "CronJob": ("batch",), "Ingress": ("networking.k8s.io", "extensions"),
    "HorizontalPodAutoscaler": ("autoscaling",),
}
HPA_CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
_HPA_DEGRADED = frozenset({("AbleToScale", "FailedGetScale"), ("AbleToScale", "FailedUpdateScale"),
                           ("ScalingActive", "FailedGetResourceMetric"),
                           ("ScalingActive", "InvalidSelector")})
_HPA_HEALTHY = frozenset({"AbleToScale", "ScalingLimited"})


@dataclass(frozen=True, slots=True)
class Health:
    """An object's health: ``status`` (one of ``STATUSES``) and why, in one line."""

    status: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status, "message": self.message}


def worse(current: str, new: str) -> bool:
    """Whether ``new`` is a worse status than ``current`` (Argo CD's ``IsWorse``)."""
    return _RANK.get(new, 0) > _RANK.get(current, 0)


def worst(statuses: Any) -> str:
    """The worst of ``statuses`` (Healthy for none)."""
    result = HEALTHY
    for status in statuses:
        if worse(result, status):
            result = status
    return result


def clean(value: Any, limit: int = MAX_PART) -> str:
    """A value from a cluster as printable one-line text, at most ``limit`` characters."""
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    text = text[:limit]
    if not text.isprintable():
        text = "".join(c if c.isprintable() else " " for c in text)
    return text


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _l(value: Any) -> list:
    return value if isinstance(value, list) else []


def _i(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _h(status: str, message: str) -> Health:
    return Health(status, clean(message, MAX_MESSAGE))


def _group(api_version: Any) -> str | None:
    if not isinstance(api_version, str) or not api_version:
        return None  # an item of a List carries no apiVersion: any group of its kind
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def assess(obj: dict | None, kind: str | None = None) -> Health:
    """The health of ``obj`` (as the API server returns it); ``kind`` for list items, which
    carry none. ``None`` (the object does not exist) is Missing.

    Never raises: an object of an unexpected shape is Unknown, saying why.
    """
    kind = kind or (obj.get("kind") if isinstance(obj, dict) else None) or ""
    if obj is None:
        return Health(MISSING, f"{clean(kind, 64).lower() or 'object'} not found")
    if not isinstance(obj, dict):
        return Health(UNKNOWN, "not an object")
    check = _CHECKS.get(kind)
    if check is None:
        return Health(UNKNOWN, f"no health assessment for kind {clean(kind, 64) or '(none)'}")
    group = _group(obj.get("apiVersion"))
    if group is not None and group not in GROUPS[kind]:
        return Health(UNKNOWN, f"no health assessment for {clean(kind, 64)} of API group "
                               f"{clean(group, 64)!r}")
    if _d(obj.get("metadata")).get("deletionTimestamp"):
        return Health(PROGRESSING, "Pending deletion")
    try:
        return check(obj)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        return Health(UNKNOWN, f"cannot assess this {kind}: {clean(exc)}")


# ---- workloads ------------------------------------------------------------------------------


def _deployment(obj: dict) -> Health:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    if spec.get("paused") is True:
        return Health(SUSPENDED, "Deployment is paused")
    if _i(meta.get("generation")) > _i(status.get("observedGeneration")):
        return Health(PROGRESSING, "Waiting for rollout to finish: observed deployment "
                                   "generation less than desired generation")
    progressing = next((c for c in _l(status.get("conditions"))
                        if isinstance(c, dict) and c.get("type") == "Progressing"), None)
    replicas, updated = spec.get("replicas"), _i(status.get("updatedReplicas"))
    total, available = _i(status.get("replicas")), _i(status.get("availableReplicas"))
    if progressing is not None and progressing.get("reason") == "ProgressDeadlineExceeded":
        return _h(DEGRADED, f"Deployment {clean(meta.get('name'), 253)!r} exceeded its "
                            "progress deadline")
    if replicas is not None and updated < _i(replicas):
        return Health(PROGRESSING, f"Waiting for rollout to finish: {updated} out of "
                                   f"{_i(replicas)} new replicas have been updated...")
    if total > updated:
        return Health(PROGRESSING, f"Waiting for rollout to finish: {total - updated} old "
                                   "replicas are pending termination...")
    if available < updated:
        return Health(PROGRESSING, f"Waiting for rollout to finish: {available} of {updated} "
                                   "updated replicas are available...")
    return Health(HEALTHY, f"{available} of {_i(replicas) if replicas is not None else total} "
                           "replicas available")


def _statefulset(obj: dict) -> Health:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    observed = _i(status.get("observedGeneration"))
    if observed == 0 or _i(meta.get("generation")) > observed:
        return Health(PROGRESSING, "Waiting for statefulset spec update to be observed...")
    replicas, ready = spec.get("replicas"), _i(status.get("readyReplicas"))
    if replicas is not None and ready < _i(replicas):
        return Health(PROGRESSING, f"Waiting for {_i(replicas) - ready} pods to be ready...")
    strategy = _d(spec.get("updateStrategy"))
    updated = _i(status.get("updatedReplicas"))
    if strategy.get("type") == "RollingUpdate" and isinstance(strategy.get("rollingUpdate"),
                                                             dict):
        partition = strategy["rollingUpdate"].get("partition")
        if replicas is not None and partition is not None \
                and updated < _i(replicas) - _i(partition):
            return Health(PROGRESSING, f"Waiting for partitioned roll out to finish: {updated} "
                                       f"out of {_i(replicas) - _i(partition)} new pods have "
                                       "been updated...")
        return Health(HEALTHY, f"partitioned roll out complete: {updated} new pods have been "
                               "updated...")
    if strategy.get("type") == "OnDelete":
        return Health(HEALTHY, f"statefulset has {ready} ready pods")
    if status.get("updateRevision") != status.get("currentRevision"):
        return _h(PROGRESSING, f"waiting for statefulset rolling update to complete {updated} "
                               f"pods at revision {clean(status.get('updateRevision'), 128)}...")
    return _h(HEALTHY, f"statefulset rolling update complete "
                       f"{_i(status.get('currentReplicas'))} pods at revision "
                       f"{clean(status.get('currentRevision'), 128)}...")


def _daemonset(obj: dict) -> Health:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    if _i(meta.get("generation")) > _i(status.get("observedGeneration")):
        return Health(PROGRESSING, "Waiting for rollout to finish: observed daemon set "
                                   "generation less than desired generation")
    desired = _i(status.get("desiredNumberScheduled"))
    updated, available = _i(status.get("updatedNumberScheduled")), _i(status.get("numberAvailable"))
    name = clean(meta.get("name"), 253)
    if _d(spec.get("updateStrategy")).get("type") == "OnDelete":
        return Health(HEALTHY, f"daemon set {updated} out of {desired} new pods have been "
                               "updated")
    if updated < desired:
        return _h(PROGRESSING, f"Waiting for daemon set {name!r} rollout to finish: {updated} "
                               f"out of {desired} new pods have been updated...")
    if available < desired:
        return _h(PROGRESSING, f"Waiting for daemon set {name!r} rollout to finish: "
                               f"{available} of {desired} updated pods are available...")
    return Health(HEALTHY, f"{available} of {desired} pods available")


def _replicaset(obj: dict) -> Health:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    if _i(meta.get("generation")) > _i(status.get("observedGeneration")):
        return Health(PROGRESSING, "Waiting for rollout to finish: observed replica set "
                                   "generation less than desired generation")
    failure = next((c for c in _l(status.get("conditions"))
                    if isinstance(c, dict) and c.get("type") == "ReplicaFailure"), None)
    replicas, available = spec.get("replicas"), _i(status.get("availableReplicas"))
    if failure is not None and failure.get("status") == "True":
        return _h(DEGRADED, clean(failure.get("message")) or clean(failure.get("reason"))
                  or "ReplicaFailure")
    if replicas is not None and available < _i(replicas):
        return Health(PROGRESSING, f"Waiting for rollout to finish: {available} out of "
                                   f"{_i(replicas)} new replicas are available...")
    return Health(HEALTHY, f"{available} of {_i(replicas) if replicas is not None else available}"
                           " replicas available")


# ---- pods -----------------------------------------------------------------------------------


def _bad_waiting(reason: str) -> bool:
    return reason.startswith("Err") or reason.endswith("Error") or reason.endswith("BackOff")


def _fail_message(cs: dict) -> str:
    terminated = _d(_d(cs.get("state")).get("terminated"))
    if not terminated:
        return ""
    name = clean(cs.get("name"), 64)
    if terminated.get("message"):
        return f"container {name!r}: {clean(terminated.get('message'))}"
    if terminated.get("reason") == "OOMKilled":
        return f"container {name!r}: OOMKilled"
    if _i(terminated.get("exitCode")):
        return f"container {name!r} failed with exit code {_i(terminated.get('exitCode'))}"
    return ""


def _pod_conditions_message(status: dict) -> str:
    for cond in _l(status.get("conditions")):
        if isinstance(cond, dict) and cond.get("status") == "False" and cond.get("message"):
            return f"{clean(cond.get('reason'), 64)}: {clean(cond.get('message'))}"
    return ""


def _pod(obj: dict) -> Health:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    policy = spec.get("restartPolicy")
    containers = [c for c in _l(status.get("containerStatuses")) if isinstance(c, dict)]
    inits = [c for c in _l(status.get("initContainerStatuses")) if isinstance(c, dict)]
    pod_message = clean(status.get("message"))
    if policy == "Always":
        # Argo CD looks at the app containers only; a crash-looping init container (the pod
        # stays Pending) is Degraded here too.
        bad = []
        for cs in inits + containers:
            waiting = _d(_d(cs.get("state")).get("waiting"))
            reason = waiting.get("reason")
            if isinstance(reason, str) and _bad_waiting(reason):
                text = f"container {clean(cs.get('name'), 64)!r}: {clean(reason, 64)}"
                if waiting.get("message"):
                    text += f": {clean(waiting.get('message'))}"
                bad.append(text)
        if bad:
            return _h(DEGRADED, ", ".join(bad))
    phase = status.get("phase")
    if phase == "Pending":
        return _h(PROGRESSING, pod_message or _pod_conditions_message(status) or "Pending")
    if phase == "Succeeded":
        return _h(HEALTHY, pod_message or "Succeeded")
    if phase == "Failed":
        if pod_message:
            return _h(DEGRADED, pod_message)
        for cs in inits + containers:
            message = _fail_message(cs)
            if message:
                return _h(DEGRADED, message)
        return Health(DEGRADED, "Failed")
    if phase == "Running":
        if policy == "Always":
            ready = any(isinstance(c, dict) and c.get("type") == "Ready"
                        and c.get("status") == "True" for c in _l(status.get("conditions")))
            if ready:
                return _h(HEALTHY, pod_message or "Running and ready")
            for cs in containers:
                last = _d(_d(cs.get("lastState")).get("terminated"))
                if last:
                    return _h(DEGRADED, pod_message or (
                        f"container {clean(cs.get('name'), 64)!r} restarted "
                        f"{_i(cs.get('restartCount'))} time(s), last exit code "
                        f"{_i(last.get('exitCode'))}"
                        + (f" ({clean(last.get('reason'), 64)})" if last.get("reason") else "")))
            return _h(PROGRESSING, pod_message or _pod_conditions_message(status)
                      or "Running, not ready")
        if policy in ("OnFailure", "Never"):
            return _h(PROGRESSING, pod_message or "Running")
    return _h(UNKNOWN, pod_message or f"phase {clean(phase, 32) or '(none)'}")


# ---- batch ----------------------------------------------------------------------------------


def _job(obj: dict) -> Health:
    # Argo CD counts Complete / Failed / Suspended conditions whatever their status; only
    # the ones that hold (status True) count here: a resumed Job is still running.
    failed = complete = suspended = False
    fail_message = message = ""
    for cond in _l(_d(obj.get("status")).get("conditions")):
        if not isinstance(cond, dict) or cond.get("status") != "True":
            continue
        ctype = cond.get("type")
        if ctype == "Failed":
            failed, fail_message = True, clean(cond.get("message")) or clean(cond.get("reason"))
        elif ctype == "Complete":
            complete, message = True, clean(cond.get("message"))
        elif ctype == "Suspended":
            suspended, message = True, clean(cond.get("message"))
    if failed:
        return _h(DEGRADED, fail_message or "Job failed")
    if suspended:
        return _h(SUSPENDED, message or "Job suspended")
    if complete:
        return _h(HEALTHY, message or "Job completed")
    status = _d(obj.get("status"))
    return Health(PROGRESSING, f"{_i(status.get('active'))} active, "
                               f"{_i(status.get('succeeded'))} succeeded, "
                               f"{_i(status.get('failed'))} failed")


def _cronjob(obj: dict) -> Health:
    # Argo CD's batch/CronJob health script, rule by rule.
    if _d(obj.get("spec")).get("suspend") is True:
        return Health(SUSPENDED, "CronJob is Suspended")
    status = obj.get("status")
    if not isinstance(status, dict):
        return Health(PROGRESSING, "Waiting for CronJob")
    scheduled, succeeded = status.get("lastScheduleTime"), status.get("lastSuccessfulTime")
    if scheduled is None:
        return Health(HEALTHY, "CronJob has not been scheduled yet")
    if succeeded is None:
        return Health(HEALTHY, "The Cronjob never completed succesfully. It may not be healthy")
    if _l(status.get("active")):
        return Health(HEALTHY, "The job is running. Its last execution may not have been "
                               "successful")
    if str(succeeded) < str(scheduled):
        return Health(DEGRADED, "CronJob has not completed its last execution successfully")
    return Health(HEALTHY, "CronJob has completed its last execution successfully")


# ---- storage, network, autoscaling, namespaces ------------------------------------------------


def _pvc(obj: dict) -> Health:
    phase = _d(obj.get("status")).get("phase")
    status = {"Lost": DEGRADED, "Pending": PROGRESSING, "Bound": HEALTHY}.get(phase, UNKNOWN)
    return _h(status, f"claim {clean(phase, 32) or 'has no phase'}")


def _load_balancer(obj: dict) -> list:
    return _l(_d(_d(obj.get("status")).get("loadBalancer")).get("ingress"))


def _service(obj: dict) -> Health:
    stype = _d(obj.get("spec")).get("type") or "ClusterIP"
    if stype == "LoadBalancer":
        if _load_balancer(obj):
            return Health(HEALTHY, "load balancer assigned")
        return Health(PROGRESSING, "Waiting for a load balancer to be assigned")
    return _h(HEALTHY, f"{clean(stype, 32)} service")


def _ingress(obj: dict) -> Health:
    if _load_balancer(obj):
        return Health(HEALTHY, "load balancer assigned")
    return Health(PROGRESSING, "Waiting for a load balancer to be assigned")


def _hpa(obj: dict) -> Health:
    waiting = Health(PROGRESSING, "Waiting to Autoscale")
    conditions = _d(obj.get("status")).get("conditions")
    api_version = str(obj.get("apiVersion") or "")
    if api_version == "autoscaling/v1" or (not api_version and conditions is None):
        annotation = _d(_d(obj.get("metadata")).get("annotations")).get(
            HPA_CONDITIONS_ANNOTATION)
        if annotation is None:
            return waiting
        try:
            conditions = json.loads(annotation)
        except (TypeError, ValueError):
            return Health(UNKNOWN, "failed to read the conditions annotation")
    for cond in _l(conditions):
        if not isinstance(cond, dict):
            continue
        if (cond.get("type"), cond.get("reason")) in _HPA_DEGRADED:
            return _h(DEGRADED, clean(cond.get("message")) or clean(cond.get("reason")))
        if cond.get("type") in _HPA_HEALTHY and cond.get("status") == "True":
            return _h(HEALTHY, clean(cond.get("message")) or clean(cond.get("type")))
    return waiting


def _namespace(obj: dict) -> Health:
    phase = _d(obj.get("status")).get("phase")
    if phase in (None, "Active"):
        return Health(HEALTHY, "Active")
    if phase == "Terminating":
        return Health(PROGRESSING, "Terminating")
    return _h(UNKNOWN, f"phase {clean(phase, 32)}")


def _exists(obj: dict) -> Health:
    return Health(HEALTHY, "exists")


_CHECKS = {
    "Deployment": _deployment, "StatefulSet": _statefulset, "DaemonSet": _daemonset,
    "ReplicaSet": _replicaset, "Pod": _pod, "Job": _job, "CronJob": _cronjob,
    "PersistentVolumeClaim": _pvc, "Service": _service, "Ingress": _ingress,
    "HorizontalPodAutoscaler": _hpa, "Namespace": _namespace, "ConfigMap": _exists,
    "Secret": _exists,
}
KINDS = tuple(_CHECKS)
