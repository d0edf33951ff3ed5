"""The k8s_deploy step: server-side apply a Deployment or manifests, await the rollout,
roll back to the recorded revision when it fails."""

from __future__ import annotations

import time

from kubernetes import client as k8s

from ansflow.blocks.kubernetes import KubernetesCluster
from ansflow.engines.kube_drift import with_applied
from ansflow.engines.kube_kinds import NAMESPACES, REPLICASETS
from ansflow.engines.kube_objects import (
    CLUSTER_SCOPED_KINDS,
    KubeError,
    KubeNotFound,
    Resource,
    apply_object,
    get_object,
    list_objects,
    request,
    resolve_kind,
    served_scopes,
)
from ansflow.errors import StepCancelled, StepFailed
from ansflow.runtime.base import StepContext, StepResult, step_deadline, step_executor
from ansflow.runtime.k8s_manifests import (
    add_expiry,
    add_labels,
    diff_objects,
    load_documents,
    object_ref,
    rollback_patch,
)
from ansflow.runtime.k8s_rollout import (
    AFTER_ROLLBACK,
    REVISION_ANNOTATION,
    WORKLOAD_KINDS,
    WaitCondition,
    selector_string,
)
from ansflow.runtime.k8s_session import WRONG_TYPE_HINT, api_errors, cluster_session, wrong_types
from ansflow.runtime.k8s_watch import wait_for
from ansflow.runtime.public import (
    StepOutput,
    cluster_argument,
    config_of,
    run_standalone,
    step_task,
)
from ansflow.spec.steps import DeploymentSpec, HelmSpec, K8sDeployConfig

ROLLOUT = WaitCondition("rollout")
# In a manifest template a `{{ }}` string value is a string scalar (ansflow.yamltemplate).
TEMPLATE_TYPE_HINT = (f"{WRONG_TYPE_HINT}; a `{{{{ }}}}` value that is a string stays text "
                      "in a manifest (step outputs are strings): `{{ x | int }}` makes it a "
                      "number")


def _revision(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)


def _ensure_namespace(api: k8s.ApiClient, ctx: StepContext, namespace: str,
                      dry_run: bool) -> None:
    if get_object(api, NAMESPACES, namespace, None) is not None:
        return
    if dry_run:
        ctx.emit(f"would create namespace {namespace}")
        return
    body = {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": dict(ctx.labels)}}
    apply_object(api, NAMESPACES, body)
    ctx.emit(f"created namespace {namespace}")


def _rollback(api: k8s.ApiClient, ctx: StepContext, res: Resource, name: str, namespace: str,
              revision: str) -> str:
    """Undo to `revision` the way kubectl's rollback.go does; returns what was done."""
    deployment = get_object(api, res, name, namespace)
    if deployment is None:
        return "it was deleted, nothing to roll back"
    if (deployment.get("spec") or {}).get("paused"):
        return "it is paused, so it was not rolled back"
    selector = selector_string((deployment.get("spec") or {}).get("selector"))
    uid = deployment["metadata"]["uid"]
    target = None
    for rs in list_objects(api, REPLICASETS, namespace, label_selector=selector).get("items", []):
        owners = rs["metadata"].get("ownerReferences") or []
        if any(o.get("uid") == uid for o in owners) and _revision(rs) == revision:
            target = rs
    if target is None:
        return f"revision {revision} is no longer in its history, so it was not rolled back"
    patch = rollback_patch(deployment, target)
    if patch is None:
        return f"it already runs the template of revision {revision}"
    request(api, "PATCH", res.path(namespace, name), body=patch,
            query=[("fieldManager", "ansflow")], content_type="application/json-patch+json")
    ctx.emit(f"rolled deployment/{name} back to the template of revision {revision}")
    return f"rolled back to revision {revision}"


def _batch_crd_scope(objects: list[dict], api_version: str, kind: str) -> bool | None:
    """Whether a CRD among `objects` defines (api_version, kind) as namespaced (None: none)."""
    group, _, version = api_version.rpartition("/")
    for crd in objects:
        if crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        versions = [v.get("name") for v in spec.get("versions") or [] if isinstance(v, dict)]
        if spec.get("group") == group and names.get("kind") == kind and version in versions:
            return spec.get("scope", "Namespaced") == "Namespaced"
    return None


def object_scopes(api: k8s.ApiClient, cluster: str, objects: list[dict],
            kinds: dict[tuple[str, str], Resource]) -> list[bool]:
    """Whether each object is namespaced: from discovery (resolved kinds cached in `kinds`),
    else a CRD applied in the same step, else the list of well-known cluster-scoped kinds."""
    scopes = []
    for obj in objects:
        key = (str(obj["apiVersion"]), str(obj["kind"]))
        if key not in kinds:
            with api_errors(cluster, f"look up kind {key[1]} ({key[0]})"):
                try:
                    kinds[key] = resolve_kind(api, *key)
                except KubeNotFound:
                    if _batch_crd_scope(objects, *key) is None:
                        raise
                except KubeError:
                    pass  # discovery refused or failing: decided by the list below
        if key in kinds:
            scopes.append(kinds[key].namespaced)
        else:
            batch = _batch_crd_scope(objects, *key)
            scopes.append(batch if batch is not None else key[1] not in CLUSTER_SCOPED_KINDS)
    return scopes


def _check_scopes(config: K8sDeployConfig, objects: list[dict], scopes: list[bool],
                  namespace: str) -> None:
    """Refuse, before anything is applied, objects in another namespace than the step's and
    cluster-scoped objects the step did not allow; every offending object is named."""
    source = (f"manifest_path {config.manifest_path}" if config.manifest_path is not None
              else "deployment_spec" if config.deployment_spec is not None else "manifest")
    refuse_out_of_scope(
        objects, scopes, [f"{source}: object {index} ({object_ref(obj)})"
                          for index, obj in enumerate(objects, 1)],
        namespace, config.allow_cluster_scoped, target="the step deploys to",
        fix="deploy it with a step of that namespace", setting="allow_cluster_scoped: true",
        prefix="nothing applied: ")


def refuse_out_of_scope(objects: list[dict], scopes: list[bool], names: list[str],
                        namespace: str, allow_cluster_scoped: bool, *, target: str, fix: str,
                        setting: str, prefix: str) -> None:
    """The one scope rule of a k8s_deploy step and the manage apply operation: an object
    naming another namespace than ``namespace``, or a cluster-scoped one not allowed, is
    refused; each is named (``names``), the message worded for the caller.

    Args:
        objects: The objects, with ``scopes``: whether each one's kind is namespaced.
        names: How the messages name each object.
        target: What applies to ``namespace`` ("the step deploys to").
        fix: The other way out than dropping metadata.namespace.
        setting: The setting that allows cluster-scoped objects.
        prefix: The start of the error's message.

    Raises:
        StepFailed: one or more objects refused (at most ten listed).
    """
    problems = []
    for obj, namespaced, what in zip(objects, scopes, names, strict=True):
        own = obj["metadata"].get("namespace")
        if namespaced and own is not None and str(own) != namespace:
            problems.append(f"{what} is in namespace {str(own)!r}, but {target} namespace "
                            f"{namespace!r} (drop metadata.namespace, or {fix})")
        elif not namespaced and not allow_cluster_scoped:
            problems.append(f"{what} is cluster-scoped (kind {obj['kind']}); set {setting} to "
                            "apply cluster-scoped objects")
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"]
                                 if len(problems) > 10 else [])
        raise StepFailed(prefix + "; ".join(shown))


def _await_rollouts(api: k8s.ApiClient, ctx: StepContext, config: K8sDeployConfig,
                    applied: list[tuple[Resource, dict]], previous: dict[str, str | None],
                    namespace: str) -> None:
    deadline = step_deadline(ctx, config.timeout)
    for res, obj in applied:
        if res.kind not in WORKLOAD_KINDS:
            continue
        name, ns = obj["metadata"]["name"], obj["metadata"].get("namespace", namespace)
        try:
            wait_for(api, ctx, res, name, ns, ROLLOUT, deadline=deadline, what="a rollout")
        except StepCancelled:
            raise
        except StepFailed as exc:
            before = previous.get(object_ref(obj))
            if res.kind != "Deployment" or not config.rollback_on_failure:
                raise
            if before is None:
                raise type(exc)(f"{exc}; no earlier revision to roll back to (this step "
                                "created it)", exit_code=exc.exit_code) from exc
            done = _rollback(api, ctx, res, name, ns, before)
            if done.startswith("rolled back"):
                again = step_deadline(ctx, config.timeout)
                try:
                    wait_for(api, ctx, res, name, ns, WaitCondition("rollout", AFTER_ROLLBACK),
                             deadline=again,
                             fail_fast=False, what="the rollback's rollout")
                    done += " (rolled out)"
                except StepCancelled:
                    raise
                except StepFailed as second:
                    done += f", but the rollback did not finish either: {second}"
            raise type(exc)(f"{exc}; {done}", exit_code=exc.exit_code) from exc


def _revision_after_apply(api: k8s.ApiClient, res: Resource, name: str, namespace: str,
                          deadline: float) -> str:
    # The controller writes the revision annotation when it observes the new generation.
    while True:
        obj = get_object(api, res, name, namespace) or {}
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        seen = status.get("observedGeneration", 0) >= meta.get("generation", 0)
        if (seen and _revision(obj)) or time.monotonic() >= deadline:
            return _revision(obj) or ""
        time.sleep(0.2)


@step_executor
def execute_k8s_deploy(ctx: StepContext, config: K8sDeployConfig) -> StepResult:
    """Apply a Deployment (deployment_spec) or manifests with server-side apply, then wait.

    Returns:
        Outputs ``objects`` (comma-separated kind/name applied) and ``revision`` (the first
        Deployment's deployment.kubernetes.io/revision after the apply; "" without one).

    Raises:
        StepFailed: invalid manifest, API refusal, failed rollout (after rolling back to the
            revision recorded before the apply, when rollback_on_failure).
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel.
    """
    if config.helm is not None:
        from ansflow.runtime.k8s_helm import deploy_with_helm

        known = None
        with cluster_session(ctx, config.cluster, config.namespace) as session:
            try:
                known = served_scopes(session.api)
            except KubeError:
                pass  # the post-renderer falls back to the well-known cluster-scoped kinds
        return deploy_with_helm(ctx, config, session.block, session.namespace, known)
    objects = [add_labels(obj, ctx.labels) for obj in load_documents(config, ctx.workspace)]
    if config.expire_after is not None:
        expires = add_expiry(objects, config.expire_after)
        ctx.emit(f"these objects expire at {expires} unless deployed again (expire_after "
                 f"{config.expire_after})")
    applied: list[tuple[Resource, dict]] = []
    previous: dict[str, str | None] = {}
    with cluster_session(ctx, config.cluster, config.namespace) as session:
        api, namespace, cluster = session.api, session.namespace, session.name
        mode = "dry run of " if config.dry_run else ""
        ctx.emit(f"{mode}applying {len(objects)} object(s) to cluster {cluster!r}, namespace "
                 f"{namespace}")
        if config.create_namespace:
            with api_errors(cluster, f"create namespace {namespace}"):
                _ensure_namespace(api, ctx, namespace, config.dry_run)
        kinds: dict[tuple[str, str], Resource] = {}
        _check_scopes(config, objects, object_scopes(api, cluster, objects, kinds), namespace)
        for obj in objects:
            key = (obj["apiVersion"], obj["kind"])
            with api_errors(cluster, f"look up kind {obj['kind']} ({obj['apiVersion']})"):
                res = kinds.get(key) or kinds.setdefault(key, resolve_kind(api, *key))
            meta = obj["metadata"]
            if res.namespaced:
                meta["namespace"] = meta.get("namespace") or namespace
            else:
                meta.pop("namespace", None)
            ref = res.ref(meta["name"], meta.get("namespace"))
            with wrong_types(TEMPLATE_TYPE_HINT), api_errors(cluster, f"apply {ref}"):
                live = get_object(api, res, meta["name"], meta.get("namespace"))
                if res.kind == "Deployment":
                    previous[object_ref(obj)] = _revision(live)
                # What was applied stays on the object, for drift and revert.
                body = obj if config.dry_run else with_applied(obj)
                result = apply_object(api, res, body, dry_run=config.dry_run,
                                      force=config.force_conflicts)
            if config.dry_run:
                changes = diff_objects(live, result)
                verb = "would create" if live is None else (
                    "would change" if changes else "unchanged:")
                ctx.emit(f"{verb} {ref}")
                for line in changes if live is not None else []:
                    ctx.emit(f"  {line}")
            else:
                old_rv = (live or {}).get("metadata", {}).get("resourceVersion")
                state = "created" if live is None else (
                    "unchanged" if result["metadata"].get("resourceVersion") == old_rv
                    else "configured")
                ctx.emit(f"{ref} {state}")
            applied.append((res, result))
        names = ",".join(object_ref(obj) for _, obj in applied)
        deployments = [(res, obj) for res, obj in applied if res.kind == "Deployment"]
        if config.dry_run:
            first = deployments[0][1] if deployments else None
            return StepResult(outputs={"objects": names,
                                       "revision": _revision(first) or ""})
        if config.wait:
            with api_errors(cluster, f"wait for the rollout in namespace {namespace}"):
                _await_rollouts(api, ctx, config, applied, previous, namespace)
        revision = ""
        if deployments:
            res, obj = deployments[0]
            with api_errors(cluster, f"read {object_ref(obj)}"):
                revision = _revision_after_apply(
                    api, res, obj["metadata"]["name"], obj["metadata"]["namespace"],
                    time.monotonic() + ctx.budget(10.0))
    if ctx.cancelled:
        raise StepCancelled("the run was cancelled")
    return StepResult(outputs={"objects": names, "revision": revision})



@step_task("k8s_deploy", execute_k8s_deploy)
def k8s_deploy(
    *,
    cluster: str | KubernetesCluster | None = None,
    namespace: str | None = None,
    deployment_spec: DeploymentSpec | dict | None = None,
    manifest: str | list[dict] | dict | None = None,
    manifest_path: str | None = None,
    helm: HelmSpec | dict | None = None,
    wait: bool = True,
    timeout: float = 300.0,
    rollback_on_failure: bool = True,
    dry_run: bool = False,
    create_namespace: bool = False,
    allow_cluster_scoped: bool = False,
    force_conflicts: bool = False,
    expire_after: str | int | None = None,
    workspace: str | None = None,
) -> StepOutput:
    """Apply a Deployment, manifests or a Helm chart (server-side apply), then wait for the
    rollout; on a failed rollout, roll back to the revision recorded before the apply.

    Args:
        cluster: A KubernetesCluster block, or the name of a saved one (required).
        namespace: The namespace (default: the block's namespace).
        deployment_spec: A Deployment to generate: ``name``, ``image``, ``replicas``,
            ``ports``, ``env``, ``resources``, ``labels``, ``command``, ``args``.
        manifest: Manifests: YAML text (several documents) or objects.
        manifest_path: A manifest file, relative to ``workspace``.
        helm: A chart: ``chart``, ``release``, ``repo``, ``version``, ``values_file``,
            ``values`` (``helm upgrade --install``).
        wait: Wait for the rollouts of what was applied.
        timeout: Seconds the rollout may take.
        rollback_on_failure: Undo a failed rollout to the revision recorded before.
        dry_run: A server-side dry run: shows the diff, changes nothing.
        create_namespace: Create the namespace when it is missing.
        allow_cluster_scoped: Allow cluster-scoped objects (ClusterRole, CRD, Namespace...);
            without it they are refused before anything is applied.
        force_conflicts: Take over fields other field managers own; without it such a
            conflict fails the step, naming each field and its manager.
        expire_after: Remove what is applied once this long has passed since this deploy,
            e.g. ``"2d"`` or ``"12h"`` (review apps; `ansflow cleanup` removes it).
        workspace: The directory relative paths start from (default: the current directory).

    Returns:
        ``exit_code`` (None) and ``outputs``: ``objects`` (comma-separated ``kind/name``)
        and ``revision`` (the first Deployment's revision after the apply).

    Raises:
        StepFailed: a bad manifest, the API refused, or the rollout failed (after the
            rollback). StepTimedOut / StepCancelled: stopped at the deadline / on cancel.

    Example:
        ```python
        from ansflow.tasks import k8s_deploy

        k8s_deploy(cluster="prod", namespace="shop",
                   deployment_spec={"name": "web", "image": "reg/web:1.4", "replicas": 3})
        ```
    """
    cluster, blocks = cluster_argument(cluster)
    if isinstance(deployment_spec, DeploymentSpec):
        deployment_spec = deployment_spec.model_dump()
    if isinstance(helm, HelmSpec):
        helm = helm.model_dump()
    return run_standalone("k8s_deploy", execute_k8s_deploy, config_of(K8sDeployConfig, locals()),
                          workspace=workspace, blocks=blocks)
