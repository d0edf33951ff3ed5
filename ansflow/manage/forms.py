"""The create-or-update operations `namespace`, `configmap`, `secret`, `deployment` and
`service`: one object from form fields, applied with server-side apply (field manager
`ansflow`); the result says whether it was created, updated or unchanged, with the fields
before and after (a Secret's key names only, never its values)."""

from __future__ import annotations

import json
from typing import Any

from ansflow.engines.kube_kinds import (
    CONFIGMAPS,
    DEPLOYMENTS,
    NAMESPACES,
    QUOTAS,
    SECRETS,
    SERVICES,
)
from ansflow.engines.kube_objects import Resource, apply_object, get_object
from ansflow.errors import StepCancelled, StepFailed
from ansflow.manage import ObjectRef, OperationResult, register
from ansflow.manage.builders import (
    PullPolicy,
    SecretType,
    ServicePort,
    ServiceType,
    Strategy,
    check_secret_form,
    configmap_object,
    deployment_object,
    namespace_objects,
    secret_object,
    service_object,
)
from ansflow.manage.present import fenced, object_diff
from ansflow.manage.secret_blocks import check_allowed
from ansflow.manage.validation import require_namespace
from ansflow.masking import mask_checked
from ansflow.runtime.base import step_deadline
from ansflow.runtime.k8s_rollout import evaluate
from ansflow.runtime.k8s_session import api_errors
from ansflow.runtime.k8s_watch import wait_for
from ansflow.spec.conditions import WaitCondition

MAX_SHOWN_VALUE = 200


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_SHOWN_VALUE:
        return value[:MAX_SHOWN_VALUE] + f"... ({len(value)} characters)"
    return value


def fields_of(obj: dict | None) -> dict[str, Any] | None:
    """The fields users look at in an object of one of the form kinds (a Secret's key names
    only); None when there is no object."""
    if obj is None:
        return None
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    kind = obj.get("kind")
    out: dict[str, Any] = {"labels": dict(meta.get("labels") or {})}
    if kind == "ConfigMap":
        out["data"] = {k: _short(v) for k, v in (obj.get("data") or {}).items()}
    elif kind == "Secret":
        out["type"] = obj.get("type")
        out["keys"] = sorted((obj.get("data") or {}).keys())
    elif kind == "ResourceQuota":
        out = {"hard": dict(spec.get("hard") or {})}
    elif kind == "Service":
        out.update(type=spec.get("type"), cluster_ip=spec.get("clusterIP"),
                   selector=dict(spec.get("selector") or {}),
                   ports=[{k: p.get(k) for k in ("name", "port", "targetPort", "protocol",
                                                  "nodePort") if p.get(k) is not None}
                          for p in spec.get("ports") or []])
    elif kind == "Deployment":
        pod = (spec.get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or [{}]
        main = containers[0]
        strategy = spec.get("strategy") or {}
        out.update(image=main.get("image"), replicas=spec.get("replicas"),
                   ports=[p.get("containerPort") for p in main.get("ports") or []],
                   env={e.get("name"): _short(e.get("value", "(from a reference)"))
                        for e in main.get("env") or []},
                   resources=main.get("resources") or {}, strategy=strategy.get("type"),
                   rolling_update=strategy.get("rollingUpdate") or {})
    return out


def _where(res: Resource, name: str, namespace: str | None) -> str:
    return f"{res.plural} {name!r}" + (f" in namespace {namespace}" if namespace else "")


def upsert(ctx, session, res: Resource, obj: dict, *, force: bool
           ) -> tuple[str, dict | None, dict]:
    """Server-side apply ``obj``: ("created" | "updated" | "unchanged", live before, after).

    Raises:
        StepFailed: refused by the API server (naming the verb, object, namespace and
            cluster), or a conflict with another field manager (each field and manager named).
    """
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace")
    with api_errors(session.name, f"get {_where(res, name, namespace)}"):
        live = get_object(session.api, res, name, namespace)
    with api_errors(session.name, f"apply (patch) {_where(res, name, namespace)}"):
        after = apply_object(session.api, res, obj, force=force)
    old = (live or {}).get("metadata", {}).get("resourceVersion")
    state = "created" if live is None else (
        "unchanged" if after.get("metadata", {}).get("resourceVersion") == old else "updated")
    ctx.emit(f"{res.ref(name, namespace)} {state} on cluster {session.name!r}")
    return state, live, after


def _result(ctx, session, res: Resource, state: str, live: dict | None, after: dict,
            *, extra: dict[str, str] | None = None, markdown: str = "") -> OperationResult:
    meta = after.get("metadata") or {}
    name, namespace = meta.get("name", "?"), meta.get("namespace")
    diff = object_diff(live, after, label=f"{res.kind.lower()}/{name}")
    body = (fenced(diff, "diff") if diff else "No field changed.\n") + markdown
    return OperationResult(
        target=ObjectRef(session.name, res.kind, name, namespace if res.namespaced else None),
        summary=ctx.masker(f"{state} {res.ref(name, namespace)} on cluster {session.name!r}"),
        outputs={key: ctx.masker(value) for key, value in
                 {"state": state, "name": name, **(extra or {})}.items()},
        before=fields_of(live), after=fields_of(after), markdown=ctx.masker(body),
        changed=state != "unchanged")


def _namespaced(obj: dict, session) -> dict:
    obj["metadata"]["namespace"] = require_namespace(obj["kind"].lower(), session.namespace)
    return obj


@register("namespace")
def namespace(ctx, session, *, name: str, labels: dict[str, str] | None = None,
              quota_cpu: str = "", quota_memory: str = "", quota_pods: int | None = None,
              force_conflicts: bool = False) -> OperationResult:
    """Create or update a namespace, its labels and its resource quota.

    Args:
        name: The namespace's name (lower-case letters, digits and '-', at most 63).
        labels: Labels of the namespace (key: value). Labels set here earlier and left out
            now are removed; labels others set are kept.
        quota_cpu: The quota's limits.cpu, e.g. 4 or 2500m (empty: no CPU limit).
        quota_memory: The quota's limits.memory, e.g. 8Gi (empty: no memory limit).
        quota_pods: At most this many pods in the namespace (empty: no limit).
        force_conflicts: Take over fields other field managers own.

    Returns:
        Outputs ``state`` (created / updated / unchanged), ``name`` and ``quota`` (the
        ResourceQuota's state, or "none" without quota fields).
    """
    ns_obj, quota = namespace_objects(name, labels, quota_cpu, quota_memory, quota_pods)
    state, live, after = upsert(ctx, session, NAMESPACES, ns_obj, force=force_conflicts)
    quota_state, extra = "none", ""
    before_fields, after_fields = fields_of(live), fields_of(after)
    if quota is not None:
        quota_state, quota_live, quota_after = upsert(ctx, session, QUOTAS, quota,
                                                      force=force_conflicts)
        diff = object_diff(quota_live, quota_after,
                           label=f"resourcequota/{quota['metadata']['name']}")
        extra = f"\nResourceQuota {quota['metadata']['name']}: {quota_state}\n\n" + (
            fenced(diff, "diff") if diff else "")
        if before_fields is not None:
            before_fields["quota"] = (fields_of(quota_live) or {}).get("hard")
        after_fields["quota"] = (fields_of(quota_after) or {}).get("hard")
    result = _result(ctx, session, NAMESPACES, state, live, after,
                     extra={"quota": quota_state}, markdown=extra)
    result.before, result.after = before_fields, after_fields
    result.changed = result.changed or quota_state in ("created", "updated")
    return result


@register("configmap")
def configmap(ctx, session, *, name: str, data: dict[str, str] | None = None,
              labels: dict[str, str] | None = None, force_conflicts: bool = False
              ) -> OperationResult:
    """Create or update a ConfigMap.

    Args:
        name: The ConfigMap's name.
        data: Its keys and text values (keys: letters, digits, '-', '_' and '.'). Keys set
            here earlier and left out now are removed.
        labels: Labels of the ConfigMap.
        force_conflicts: Take over fields other field managers own.

    Returns:
        Outputs ``state`` (created / updated / unchanged) and ``name``.
    """
    obj = _namespaced(configmap_object(name, data, labels), session)
    state, live, after = upsert(ctx, session, CONFIGMAPS, obj, force=force_conflicts)
    return _result(ctx, session, CONFIGMAPS, state, live, after)


def load_secret_values(ctx, keys: dict[str, str]) -> dict[str, str]:
    """Each key's value from the Prefect Secret block it names; every value is added to the
    run's masker at once.

    Raises:
        StepFailed: a block the operator did not allow (ANSFLOW_MANAGE_SECRET_BLOCKS), not
            saved or unreadable, or a value too short to mask.
    """
    from prefect.blocks.system import Secret  # noqa: PLC0415 - only this operation needs it

    check_allowed(keys)
    values: dict[str, str] = {}
    for key, block in keys.items():
        try:
            value = Secret.load(block.strip(), _sync=True).get()
        except ValueError:
            raise StepFailed(f"secret: key {key!r}: no saved Prefect Secret block named "
                             f"{block.strip()!r}; nothing was changed",
                             hint="save the value as a Secret block first (Prefect UI: "
                                  "Blocks > Secret, or `prefect block create secret`)") from None
        except Exception as exc:  # noqa: BLE001 - the server's error, without any value
            raise StepFailed(f"secret: key {key!r}: the Prefect Secret block {block.strip()!r} "
                             f"could not be loaded ({type(exc).__name__}); nothing was "
                             "changed") from None
        value = value if isinstance(value, str) else json.dumps(value)
        mask_checked(ctx.masker, [(f"secret: the value of key {key!r} (block "
                                   f"{block.strip()!r})", value)], "; nothing was changed")
        values[key] = value
    return values


@register("secret")
def secret(ctx, session, *, name: str, keys: dict[str, str] | None = None,
           type: SecretType = "Opaque", labels: dict[str, str] | None = None,
           force_conflicts: bool = False) -> OperationResult:
    """Create or update a Secret whose values come from saved Prefect Secret blocks (never
    from the form: run parameters are stored in clear on the Prefect server). Only the blocks
    the operator allows (ANSFLOW_MANAGE_SECRET_BLOCKS, glob patterns; none by default).

    Args:
        name: The Secret's name.
        keys: Each key of the Secret and the name of the Prefect Secret block holding its
            value (key: block name). Keys set here earlier and left out now are removed.
        type: The Secret's type (it cannot change once the Secret exists).
        labels: Labels of the Secret.
        force_conflicts: Take over fields other field managers own.

    Returns:
        Outputs ``state`` (created / updated / unchanged), ``name`` and ``keys`` (the key
        names, comma-separated); never a value.
    """
    checked, checked_labels = check_secret_form(name, type, keys, labels)
    values = load_secret_values(ctx, checked)
    obj = _namespaced(secret_object(name, type, values, checked_labels), session)
    state, live, after = upsert(ctx, session, SECRETS, obj, force=force_conflicts)
    return _result(ctx, session, SECRETS, state, live, after,
                   extra={"keys": ",".join(sorted(checked))})


@register("deployment")
def deployment(ctx, session, *, name: str, image: str, replicas: int = 1,
               ports: list[int] | None = None, env: dict[str, str] | None = None,
               requests_cpu: str = "", requests_memory: str = "", limits_cpu: str = "",
               limits_memory: str = "", strategy: Strategy = "RollingUpdate",
               max_surge: str = "25%", max_unavailable: str = "25%",
               labels: dict[str, str] | None = None,
               image_pull_policy: PullPolicy | None = None, wait: bool = True,
               timeout: float = 300.0, force_conflicts: bool = False) -> OperationResult:
    """Create or update a Deployment of one container, then wait for its rollout.

    Args:
        name: The Deployment's name (also its container's name and its selector app=<name>).
        image: The container image, e.g. nginx:1.27.
        replicas: How many pods.
        ports: Container ports (TCP), e.g. [8080].
        env: Environment variables (name: value). Never put a secret here: run parameters
            are stored in clear; use a Secret and a manifest for that.
        requests_cpu: CPU request, e.g. 250m (empty: none).
        requests_memory: Memory request, e.g. 128Mi (empty: none).
        limits_cpu: CPU limit, e.g. 1 (empty: none).
        limits_memory: Memory limit, e.g. 512Mi (empty: none).
        strategy: RollingUpdate (pods replaced a few at a time) or Recreate (all stopped
            first).
        max_surge: RollingUpdate: pods above replicas during the update (a count or a %).
        max_unavailable: RollingUpdate: pods that may be unavailable (a count or a %).
        labels: Labels of the Deployment and its pods (app is always the name).
        image_pull_policy: IfNotPresent, Always or Never (empty: the cluster's default).
        wait: Wait until the rollout is done.
        timeout: Seconds the rollout may take.
        force_conflicts: Take over fields other field managers own.

    Returns:
        Outputs ``state`` (created / updated / unchanged), ``name``, ``image`` and
        ``replicas``.

    Raises:
        StepFailed: bad fields (nothing changed), refused, or a failed rollout.
        StepTimedOut / StepCancelled: the rollout did not finish in time / the run was
            cancelled (the Deployment stays applied).
    """
    obj = _namespaced(deployment_object(
        name=name, image=image, replicas=replicas, ports=ports, env=env,
        requests_cpu=requests_cpu, requests_memory=requests_memory, limits_cpu=limits_cpu,
        limits_memory=limits_memory, strategy=strategy, max_surge=max_surge,
        max_unavailable=max_unavailable, labels=labels,
        image_pull_policy=image_pull_policy), session)
    deadline = step_deadline(ctx, timeout)
    state, live, after = upsert(ctx, session, DEPLOYMENTS, obj, force=force_conflicts)
    rollout = ""
    if wait:
        ref = DEPLOYMENTS.ref(name, session.namespace)
        cond = WaitCondition("rollout")
        try:
            with api_errors(session.name, f"wait for the rollout of {ref}"):
                done = wait_for(session.api, ctx, DEPLOYMENTS, name, session.namespace, cond,
                                deadline=deadline, what="a finished rollout")
        except StepCancelled:
            raise
        except StepFailed as exc:
            raise type(exc)(f"{exc} (the Deployment was {state}; it is left as applied)",
                            exit_code=exc.exit_code) from exc
        rollout = evaluate(done, cond).progress if done is not None else ""
        ctx.emit(rollout)
        after = done or after
    return _result(ctx, session, DEPLOYMENTS, state, live, after,
                   extra={"image": image.strip(), "replicas": str(replicas)},
                   markdown=f"\nRollout: {rollout}\n" if rollout else "")


@register("service")
def service(ctx, session, *, name: str, ports: list[ServicePort] | None = None,
            type: ServiceType = "ClusterIP", selector: dict[str, str] | None = None,
            labels: dict[str, str] | None = None, force_conflicts: bool = False
            ) -> OperationResult:
    """Create or update a Service.

    Args:
        name: The Service's name (lower-case letters, digits and '-', starting with a letter).
        ports: Its ports: port, target_port (default: port; a number or a container port's
            name), protocol (TCP, UDP, SCTP), node_port (NodePort / LoadBalancer; empty: the
            cluster picks one), name (required when there are several ports).
        type: ClusterIP (inside the cluster), NodePort (on every node's IP) or LoadBalancer.
        selector: The pods it sends traffic to (label: value; default app=<name>).
        labels: Labels of the Service.
        force_conflicts: Take over fields other field managers own.

    Returns:
        Outputs ``state`` (created / updated / unchanged), ``name``, ``type`` and
        ``cluster_ip``.
    """
    obj = _namespaced(service_object(name=name, service_type=type, ports=ports,
                                     selector=selector, labels=labels), session)
    state, live, after = upsert(ctx, session, SERVICES, obj, force=force_conflicts)
    cluster_ip = str((after.get("spec") or {}).get("clusterIP") or "")
    return _result(ctx, session, SERVICES, state, live, after,
                   extra={"type": type, "cluster_ip": cluster_ip})
