"""Pure functions from a listed Kubernetes object to what the inventory keeps of it.

What users look at per kind (never a Secret's values: its type and key names only), and the
fields ansflow's server-side applies own (for drift). Every value comes from a cluster, so
strings and lists are bounded; nothing here does I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ansflow.engines.kube_kinds import KIND_ALIASES

MAX_TEXT = 512
MAX_ITEMS = 100
FIELD_MANAGER = "ansflow"
# Field managers whose takeover of a field ansflow applied is not drift: controllers that
# own those fields by design (the HPA, the Deployment controller live in the controller
# manager), and ansflow itself (its scale / restart operations).
CONTROLLER_MANAGERS = frozenset({"kube-controller-manager", "kube-scheduler", FIELD_MANAGER,
                                 "horizontal-pod-autoscaler", "vpa-updater"})
# Scaling (kubectl scale, an HPA, ansflow's own scale operation) goes through /scale.
SCALE_FIELDS = frozenset({"spec.replicas"})


@dataclass(frozen=True)
class Kind:
    """One kind the inventory keeps: its name in the inventory, kind and list path."""

    name: str
    kind: str
    path: str
    namespaced: bool = True


KINDS: tuple[Kind, ...] = (
    Kind("namespaces", "Namespace", "/api/v1/namespaces", namespaced=False),
    Kind("deployments", "Deployment", "/apis/apps/v1/deployments"),
    Kind("services", "Service", "/api/v1/services"),
    Kind("pods", "Pod", "/api/v1/pods"),
    Kind("configmaps", "ConfigMap", "/api/v1/configmaps"),
    Kind("secrets", "Secret", "/api/v1/secrets"),
    # Kept for their health (ansflow.engines.object_health); a cluster that does not serve
    # one of them (404) has it skipped.
    Kind("statefulsets", "StatefulSet", "/apis/apps/v1/statefulsets"),
    Kind("daemonsets", "DaemonSet", "/apis/apps/v1/daemonsets"),
    Kind("replicasets", "ReplicaSet", "/apis/apps/v1/replicasets"),
    Kind("jobs", "Job", "/apis/batch/v1/jobs"),
    Kind("cronjobs", "CronJob", "/apis/batch/v1/cronjobs"),
    Kind("persistentvolumeclaims", "PersistentVolumeClaim", "/api/v1/persistentvolumeclaims"),
    Kind("ingresses", "Ingress", "/apis/networking.k8s.io/v1/ingresses"),
    Kind("horizontalpodautoscalers", "HorizontalPodAutoscaler",
         "/apis/autoscaling/v2/horizontalpodautoscalers"),
)
KIND_NAMES = tuple(k.name for k in KINDS)
def kind_named(name: str) -> str:
    """The inventory's name for a kind a user typed (`pod`, `svc`, `Deployment`...).

    Raises:
        ValueError: not a kind the inventory keeps.
    """
    wanted = name.strip().lower()
    alias = KIND_ALIASES.get(wanted)  # `svc`, `deploy`...: the one table of kind names
    wanted = alias.plural if alias is not None else wanted
    if wanted not in KIND_NAMES:
        raise ValueError(f"unknown kind {name[:40]!r}: the inventory keeps "
                         f"{', '.join(KIND_NAMES)}")
    return wanted


def text(value: Any, limit: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    return str(value)[:limit]


def _strings(mapping: Any) -> dict[str, str]:
    if not isinstance(mapping, dict):
        return {}
    return {text(k, 253): text(v) for k, v in list(mapping.items())[:MAX_ITEMS]}


def _d(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list:
    return value[:MAX_ITEMS] if isinstance(value, list) else []


def _conditions(status: dict) -> list[dict]:
    return [{"type": text(c.get("type"), 64), "status": text(c.get("status"), 16),
             "reason": text(c.get("reason"), 128)}
            for c in _items(status.get("conditions")) if isinstance(c, dict)]


def _namespace(obj: dict) -> dict:
    meta = _d(obj.get("metadata"))
    return {"labels": _strings(meta.get("labels")),
            "status": text(_d(obj.get("status")).get("phase"), 32)}


def _deployment(obj: dict) -> dict:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    pod_spec = _d(_d(spec.get("template")).get("spec"))
    strategy = _d(spec.get("strategy"))
    rolling = _d(strategy.get("rollingUpdate"))
    return {
        "images": [text(c.get("image")) for c in _items(pod_spec.get("containers"))
                   if isinstance(c, dict)],
        "replicas": spec.get("replicas"), "ready": status.get("readyReplicas", 0),
        "available": status.get("availableReplicas", 0),
        "updated": status.get("updatedReplicas", 0),
        "strategy": text(strategy.get("type"), 32),
        "max_surge": text(rolling.get("maxSurge"), 16),
        "max_unavailable": text(rolling.get("maxUnavailable"), 16),
        "paused": bool(spec.get("paused")),
        "conditions": _conditions(status),
        "labels": _strings(_d(obj.get("metadata")).get("labels")),
        "selector": _strings(_d(spec.get("selector")).get("matchLabels")),
    }


def _service(obj: dict) -> dict:
    spec = _d(obj.get("spec"))
    ingress = _d(_d(obj.get("status")).get("loadBalancer")).get("ingress")
    external = [text(i.get("ip") or i.get("hostname"), 253) for i in _items(ingress)
                if isinstance(i, dict)] + [text(ip, 64) for ip in _items(spec.get("externalIPs"))]
    return {
        "type": text(spec.get("type"), 32), "cluster_ip": text(spec.get("clusterIP"), 64),
        "external_ips": external,
        "ports": [{"name": text(p.get("name"), 64), "port": p.get("port"),
                   "target_port": text(p.get("targetPort"), 64),
                   "protocol": text(p.get("protocol"), 8), "node_port": p.get("nodePort")}
                  for p in _items(spec.get("ports")) if isinstance(p, dict)],
        "selector": _strings(spec.get("selector")),
        "session_affinity": text(spec.get("sessionAffinity"), 32),
    }


def waiting_reason(container_status: dict) -> str | None:
    waiting = _d(container_status.get("state")).get("waiting")
    return text(waiting.get("reason"), 64) if isinstance(waiting, dict) else None


def _pod(obj: dict) -> dict:
    meta, spec, status = _d(obj.get("metadata")), _d(obj.get("spec")), _d(obj.get("status"))
    statuses = {s.get("name"): s for s in _items(status.get("containerStatuses"))
                if isinstance(s, dict)}
    containers = []
    for c in _items(spec.get("containers")):
        if not isinstance(c, dict):
            continue
        s = _d(statuses.get(c.get("name")))
        containers.append({"name": text(c.get("name"), 64), "image": text(c.get("image")),
                           "ready": bool(s.get("ready")), "restarts": s.get("restartCount", 0),
                           "waiting": waiting_reason(s)})
    owners = [o for o in _items(meta.get("ownerReferences")) if isinstance(o, dict)]
    ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                for c in _items(status.get("conditions")) if isinstance(c, dict))
    return {
        "phase": text(status.get("phase"), 32), "node": text(spec.get("nodeName"), 253),
        "pod_ip": text(status.get("podIP"), 64), "host_ip": text(status.get("hostIP"), 64),
        "start_time": text(status.get("startTime"), 32), "ready": ready,
        "restarts": sum(int(c["restarts"] or 0) for c in containers
                        if isinstance(c["restarts"], int)),
        "containers": containers,
        "owner": f"{text(owners[0].get('kind'), 64)}/{text(owners[0].get('name'), 253)}"
        if owners else None,
        "labels": _strings(meta.get("labels")),
    }


def _configmap(obj: dict) -> dict:
    keys = list(_d(obj.get("data")).keys()) + list(_d(obj.get("binaryData")).keys())
    return {"keys": sorted(text(k, 253) for k in keys)[:MAX_ITEMS * 10]}


def _secret(obj: dict) -> dict:
    # Key names and the type only: the values are never read into what is kept.
    keys = list(_d(obj.get("data")).keys()) + list(_d(obj.get("stringData")).keys())
    return {"type": text(obj.get("type"), 128),
            "keys": sorted(text(k, 253) for k in keys)[:MAX_ITEMS * 10]}


def _images(template: Any) -> list:
    pod_spec = _d(_d(template).get("spec"))
    return [text(c.get("image")) for c in _items(pod_spec.get("containers"))
            if isinstance(c, dict)]


def _workload(obj: dict) -> dict:
    """StatefulSet, DaemonSet, ReplicaSet: images, replicas and their readiness."""
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    daemon = "desiredNumberScheduled" in status
    return {
        "images": _images(spec.get("template")),
        "replicas": status.get("desiredNumberScheduled", 0) if daemon else spec.get("replicas"),
        "ready": status.get("numberReady" if daemon else "readyReplicas", 0),
        "available": status.get("numberAvailable" if daemon else "availableReplicas", 0),
        "updated": status.get("updatedNumberScheduled" if daemon else "updatedReplicas", 0),
        "strategy": text(_d(spec.get("updateStrategy")).get("type"), 32),
        "conditions": _conditions(status),
        "labels": _strings(_d(obj.get("metadata")).get("labels")),
        "selector": _strings(_d(spec.get("selector")).get("matchLabels")),
        "owner": _owner(obj),
    }


def _owner(obj: dict) -> str | None:
    owners = [o for o in _items(_d(obj.get("metadata")).get("ownerReferences"))
              if isinstance(o, dict)]
    return f"{text(owners[0].get('kind'), 64)}/{text(owners[0].get('name'), 253)}" \
        if owners else None


def _job(obj: dict) -> dict:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    return {"images": _images(spec.get("template")), "completions": spec.get("completions"),
            "active": status.get("active", 0), "succeeded": status.get("succeeded", 0),
            "failed": status.get("failed", 0), "suspend": bool(spec.get("suspend")),
            "conditions": _conditions(status), "owner": _owner(obj),
            "labels": _strings(_d(obj.get("metadata")).get("labels"))}


def _cronjob(obj: dict) -> dict:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    template = _d(_d(spec.get("jobTemplate")).get("spec")).get("template")
    return {"images": _images(template), "schedule": text(spec.get("schedule"), 128),
            "suspend": bool(spec.get("suspend")), "active": len(_items(status.get("active"))),
            "last_schedule": text(status.get("lastScheduleTime"), 32),
            "last_success": text(status.get("lastSuccessfulTime"), 32),
            "labels": _strings(_d(obj.get("metadata")).get("labels"))}


def _pvc(obj: dict) -> dict:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    return {"phase": text(status.get("phase"), 32),
            "storage_class": text(spec.get("storageClassName"), 253),
            "volume": text(spec.get("volumeName"), 253),
            "requested": text(_d(_d(spec.get("resources")).get("requests")).get("storage"), 32),
            "capacity": text(_d(status.get("capacity")).get("storage"), 32),
            "labels": _strings(_d(obj.get("metadata")).get("labels"))}


def _ingress(obj: dict) -> dict:
    spec = _d(obj.get("spec"))
    ingress = _d(_d(obj.get("status")).get("loadBalancer")).get("ingress")
    return {"class": text(spec.get("ingressClassName"), 253),
            "hosts": [text(r.get("host"), 253) for r in _items(spec.get("rules"))
                      if isinstance(r, dict)],
            "addresses": [text(i.get("ip") or i.get("hostname"), 253) for i in _items(ingress)
                          if isinstance(i, dict)],
            "labels": _strings(_d(obj.get("metadata")).get("labels"))}


def _hpa(obj: dict) -> dict:
    spec, status = _d(obj.get("spec")), _d(obj.get("status"))
    target = _d(spec.get("scaleTargetRef"))
    return {"target": f"{text(target.get('kind'), 64)}/{text(target.get('name'), 253)}",
            "min": spec.get("minReplicas"), "max": spec.get("maxReplicas"),
            "replicas": status.get("currentReplicas"), "desired": status.get("desiredReplicas"),
            "conditions": _conditions(status),
            "labels": _strings(_d(obj.get("metadata")).get("labels"))}


_SUMMARIES = {"namespaces": _namespace, "deployments": _deployment, "services": _service,
              "pods": _pod, "configmaps": _configmap, "secrets": _secret,
              "statefulsets": _workload, "daemonsets": _workload, "replicasets": _workload,
              "jobs": _job, "cronjobs": _cronjob, "persistentvolumeclaims": _pvc,
              "ingresses": _ingress, "horizontalpodautoscalers": _hpa}


def summarize(kind: str, obj: dict) -> dict:
    """What the inventory keeps of ``obj`` (a kind of ``KIND_NAMES``), with ``created``
    (its creationTimestamp) when it has one."""
    summary = _SUMMARIES[kind](obj)
    created = _d(obj.get("metadata")).get("creationTimestamp")
    if created is not None:
        summary["created"] = text(created, 32)
    return summary


# ---- what ansflow applied (drift) -----------------------------------------------------------


def _segment(key: str) -> str:
    if key.startswith("f:"):
        return "." + key[2:]
    if key.startswith("k:"):
        try:
            ident = json.loads(key[2:])
            inner = ",".join(f"{k}={v}" for k, v in sorted(ident.items()))
        except (ValueError, AttributeError):
            inner = key[2:]
        return f"[{inner}]"
    if key.startswith("v:"):
        return f"[{key[2:]}]"
    if key.startswith("i:"):
        return f"[{key[2:]}]"
    return "." + key


def field_paths(fields_v1: Any, prefix: str = "") -> set[str]:
    """The leaf field paths of a managedFields ``fieldsV1`` set: ``spec.replicas``,
    ``spec.template.spec.containers[name=web].image``..."""
    paths: set[str] = set()
    if not isinstance(fields_v1, dict):
        return paths
    for key, sub in fields_v1.items():
        if key == ".":
            continue
        path = prefix + _segment(str(key))
        children = {k: v for k, v in sub.items() if k != "."} if isinstance(sub, dict) else {}
        if children:
            paths |= field_paths(children, path)
        else:
            paths.add(path.lstrip("."))
        if len(paths) > 2000:  # bounded: a pathological object
            break
    return paths


@dataclass(frozen=True)
class Ownership:
    """Who owns which fields of one object, from its managedFields."""

    applied_time: str | None  # when ansflow last server-side applied it (None: never)
    applied: frozenset[str]  # the fields that apply owns now
    others: tuple[tuple[str, str, frozenset[str]], ...]  # (manager, subresource, fields)


def ownership(obj: dict) -> Ownership:
    applied_time, applied, others = None, frozenset(), []
    for entry in _items(_d(obj.get("metadata")).get("managedFields")):
        if not isinstance(entry, dict):
            continue
        paths = frozenset(field_paths(entry.get("fieldsV1")))
        manager = text(entry.get("manager"), 128) or ""
        if manager == FIELD_MANAGER and entry.get("operation") == "Apply" \
                and not entry.get("subresource"):
            applied_time, applied = text(entry.get("time"), 64), paths
        else:
            others.append((manager, text(entry.get("subresource"), 32) or "", paths))
    return Ownership(applied_time, applied, tuple(others))


def drifted_fields(baseline: set[str], now: Ownership) -> list[dict]:
    """Fields ansflow applied (``baseline``, at its last apply) that another field manager
    has since taken over, or that are gone: [{"field", "manager"}], controllers' fields
    and scaling left out."""
    drift = []
    for path in sorted(baseline - now.applied):
        owners = [(m, sub) for m, sub, paths in now.others if path in paths]
        if any(m in CONTROLLER_MANAGERS or sub == "status" for m, sub in owners):
            continue
        if path in SCALE_FIELDS and any(sub == "scale" for _, sub in owners):
            continue
        drift.append({"field": path, "manager": owners[0][0] if owners else "(removed)"})
    return drift[:MAX_ITEMS]
