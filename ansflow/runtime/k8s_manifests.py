"""Pure helpers of k8s_deploy: build, load, label and diff manifests; plan a rollback."""

from __future__ import annotations

import copy
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ansflow.errors import StepFailed
from ansflow.paths import confine
from ansflow.runtime.base import LABEL_PREFIX
from ansflow.runtime.k8s_rollout import REVISION_ANNOTATION
from ansflow.spec.steps import DeploymentSpec, K8sDeployConfig, expiry_seconds

# kubectl rollback.go: annotations a rollback never copies from the ReplicaSet.
ROLLBACK_SKIPPED_ANNOTATIONS = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})
# Fields the server owns: never part of a "what would change" diff.
_SERVER_FIELDS = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                  "selfLink")

_RUN_LABELS = (f"metadata.labels.{LABEL_PREFIX}", f"metadata.annotations.{LABEL_PREFIX}")
EXPIRES_LABEL = f"{LABEL_PREFIX}expires"  # seconds since the epoch: cleanup selects by it
EXPIRES_ANNOTATION = f"{LABEL_PREFIX}expires-at"  # the same time in RFC 3339, for people


def deployment_manifest(spec: DeploymentSpec) -> dict:
    """The Deployment a `deployment_spec` describes (selector app=<name>)."""
    labels = {"app": spec.name, **spec.labels}
    container: dict[str, Any] = {"name": spec.name, "image": spec.image}
    ports = []
    for port in spec.ports:
        ports.append({"containerPort": port} if isinstance(port, int) else dict(port))
    if ports:
        container["ports"] = ports
    if spec.env:
        container["env"] = [{"name": k, "value": str(v)} for k, v in spec.env.items()]
    if spec.resources:
        container["resources"] = spec.resources
    if spec.command is not None:
        container["command"] = list(spec.command)
    if spec.args is not None:
        container["args"] = list(spec.args)
    pod_spec: dict[str, Any] = {"containers": [container]}
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": dict(labels)},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "template": {"metadata": {"labels": dict(labels)},
                         "spec": pod_spec},
        },
    }


def load_documents(config: K8sDeployConfig, workspace: str) -> list[dict]:
    """The objects to apply, from deployment_spec, manifest or manifest_path (in order).

    Raises:
        StepFailed: unreadable file, invalid YAML, or a document that is not an object with
            apiVersion, kind and metadata.name.
    """
    where = "manifest"
    if config.deployment_spec is not None:
        return [deployment_manifest(config.deployment_spec)]
    if config.manifest_path is not None:
        path = Path(confine(config.manifest_path, workspace, "manifest_path"))
        where = str(config.manifest_path)
        try:
            raw: Any = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StepFailed(f"cannot read manifest_path {where}: {exc.strerror}") from None
    else:
        raw = config.manifest
    if isinstance(raw, str):
        try:
            docs = [d for d in yaml.safe_load_all(raw) if d is not None]
        except yaml.YAMLError as exc:
            # Only the position and the problem: the exception's text quotes the file's lines.
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or "a syntax error"
            raise StepFailed(f"{where} is not valid YAML{at}: {problem}") from None
    else:
        docs = copy.deepcopy(raw if isinstance(raw, list) else [raw])
    objects: list[dict] = []
    for index, doc in enumerate(docs, 1):
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") \
                and isinstance(doc.get("items"), list):
            objects.extend(doc["items"])
        else:
            objects.append(doc)
    for index, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise StepFailed(f"{where}: document {index} is not a mapping")
        missing = [k for k in ("apiVersion", "kind") if not obj.get(k)]
        if not (obj.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise StepFailed(f"{where}: document {index} ({obj.get('kind', 'no kind')}) has no "
                             f"{', '.join(missing)}")
    if not objects:
        raise StepFailed(f"{where} holds no objects")
    return objects


def add_labels(obj: dict, labels: dict[str, str]) -> dict:
    """`obj` with `labels` added to its metadata (never to pod templates: that would start a
    new rollout on every run)."""
    meta = obj.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    return obj


def add_expiry(objects: list[dict], expire_after: str, now: float | None = None) -> str:
    """Mark ``objects`` as expiring ``expire_after`` from ``now`` (default: now): the label
    ``ansflow.dev/expires`` (epoch seconds) and the annotation ``ansflow.dev/expires-at``
    (RFC 3339); returns that time as text. Each deploy sets them again (the time restarts).

    Raises:
        StepFailed: ``expire_after`` (rendered) is not a duration.
    """
    try:
        seconds = expiry_seconds(expire_after)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    at = int(now if now is not None else time.time()) + seconds
    when = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        meta["labels"] = {**(meta.get("labels") or {}), EXPIRES_LABEL: str(at)}
        meta["annotations"] = {**(meta.get("annotations") or {}), EXPIRES_ANNOTATION: when}
    return when


def object_ref(obj: dict) -> str:
    return f"{obj['kind'].lower()}/{obj['metadata']['name']}"


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value:
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)
    else:
        out[prefix] = value


def diff_objects(live: dict | None, planned: dict, limit: int = 40) -> list[str]:
    """What applying would change, one `path: old -> new` line each (status ignored)."""
    def flat(obj: dict) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj.pop("status", None)
        meta = obj.get("metadata") or {}
        for key in _SERVER_FIELDS:
            meta.pop(key, None)
        out: dict[str, Any] = {}
        _flatten(obj, "", out)
        return out

    if live is None:
        return ["(new object)"]
    before, after = flat(live), flat(planned)
    lines = []
    for path in sorted(set(before) | set(after)):
        if path.startswith(_RUN_LABELS):
            continue  # every run relabels its objects: not a change worth showing
        old, new = before.get(path, "<unset>"), after.get(path, "<unset>")
        if old == new:
            continue
        if planned.get("kind") == "Secret" and path.startswith(("data.", "stringData.")):
            lines.append(f"{path}: (secret value changed)")  # never log secret values
        else:
            lines.append(f"{path}: {old!r} -> {new!r}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more changes"]
    return lines


def rollback_patch(deployment: dict, replica_set: dict) -> list[dict] | None:
    """The JSON patch kubectl's rollback.go sends to go back to `replica_set`'s template;
    None when the Deployment already runs that template."""
    template = copy.deepcopy((replica_set.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    if template == (deployment.get("spec") or {}).get("template"):
        return None
    current = (deployment.get("metadata") or {}).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in ROLLBACK_SKIPPED_ANNOTATIONS}
    for key, value in ((replica_set.get("metadata") or {}).get("annotations") or {}).items():
        if key not in ROLLBACK_SKIPPED_ANNOTATIONS:
            annotations[key] = value
    return [{"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations}]
