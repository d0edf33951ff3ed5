"""The `config` models of the Kubernetes steps' target (cluster, namespace) and of the
management steps: k8s_scale, k8s_restart, k8s_rollback, k8s_delete, k8s_logs, k8s_list,
k8s_get."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from ansflow.engines.kube_errors import KubeNameError
from ansflow.engines.kube_kinds import names_of
from ansflow.engines.kube_names import (
    check_container,
    check_name,
    check_namespace,
    check_selector,
    path_segment_problem,
)
from ansflow.spec.common import Duration, StrictModel, require_exactly_one

# How each field naming something in the cluster is checked once its value is known (a
# literal at validation, a template once rendered): the API server's rules, so a name never
# reaches a URL path that would leave its namespace or kind. The kind a resource_name
# belongs to is known only at run time; the adapter checks it by that kind's rule then.
_NAME_CHECKS = {
    "namespace": check_namespace,
    "pod": lambda value, field: check_name(value, "Pod", field),
    "container": check_container,
    "label_selector": check_selector,
    "pod_selector": check_selector,
}


def _check_resource_name(value: str, field: str) -> str:
    problem = path_segment_problem(value)
    if problem:
        raise KubeNameError(f"{field} {value!r:.80} is not a valid Kubernetes name: {problem}")
    return value


def check_kube_field(value: str | None, field: str) -> str | None:
    """`value` of the cluster-naming `field` (namespace, resource_name, pod, container,
    label_selector, pod_selector) if the API server's rules allow it; a template as is.

    Raises:
        ValueError: they do not (the message names the field, the value and the rule).
    """
    if value is None or not isinstance(value, str) or "{{" in value or "{%" in value:
        return value  # templated: checked once rendered
    check = _NAME_CHECKS.get(field, _check_resource_name)
    try:
        return check(value, field)
    except KubeNameError as exc:
        raise ValueError(str(exc)) from None


# A namespace field outside the k8s steps' models (pod steps, defaults).
KubeNamespace = Annotated[str | None,
                          AfterValidator(lambda value: check_kube_field(value, "namespace"))]


class K8sTarget(StrictModel):
    """Where a Kubernetes step acts: a saved cluster block and a namespace."""

    cluster: str | None = Field(None, description="Name of a saved KubernetesCluster block.")
    namespace: str | None = None

    # Inherited by every Kubernetes step's model: each checks the fields of these it has.
    @field_validator("namespace", "resource_name", "pod", "container", "label_selector",
                     "pod_selector", check_fields=False)
    @classmethod
    def _kube_names(cls, value: str | None, info: ValidationInfo) -> str | None:
        return check_kube_field(value, info.field_name)


class _WorkloadOperation(K8sTarget):
    """What k8s_scale, k8s_restart and k8s_rollback share: one named workload, a wait."""

    resource_name: str
    timeout: Duration = 300.0
    fail_fast: bool = Field(True, description="Fail early on CrashLoopBackOff/ImagePullBackOff.")


# What k8s_scale / k8s_restart / k8s_rollback accept as resource_type -> the kind it means.
SCALABLE_TYPES = names_of("Deployment", "StatefulSet", "ReplicaSet")
ROLLOUT_TYPES = names_of("Deployment", "StatefulSet", "DaemonSet")


def _workload_type(value: str, accepted: dict[str, str]) -> str:
    if "{{" in value or "{%" in value:  # templated: checked once rendered
        return value
    if value.strip().lower() not in accepted:
        kinds = ", ".join(sorted({k.lower() for k in accepted.values()}))
        raise ValueError(f"resource_type {value!r} is not one of {kinds}")
    return value


# A workload's resource_type, checked against what its operation accepts.
ScalableType = Annotated[str, AfterValidator(lambda v: _workload_type(v, SCALABLE_TYPES))]
RolloutType = Annotated[str, AfterValidator(lambda v: _workload_type(v, ROLLOUT_TYPES))]


class K8sScaleConfig(_WorkloadOperation):
    """Scale a Deployment, StatefulSet or ReplicaSet (its /scale subresource)."""

    replicas: int = Field(ge=0)
    resource_type: ScalableType = Field("deployment", description="deployment, statefulset "
                                                                   "or replicaset (or deploy, "
                                                                   "sts, rs).")
    wait: bool = Field(True, description="Wait until the new count of replicas is ready.")


class K8sRestartConfig(_WorkloadOperation):
    """Restart a workload's pods as `kubectl rollout restart` does, then await the rollout."""

    resource_type: RolloutType = Field("deployment", description="deployment, statefulset "
                                                                  "or daemonset (or deploy, "
                                                                  "sts, ds).")
    wait: bool = Field(True, description="Wait for the rollout of the restarted pods.")


class K8sDeleteConfig(K8sTarget):
    """Delete objects by name or label selector, then wait until they are gone."""

    resource_type: str = Field(description="deployment, service, pod, configmap, secret, "
                                           "namespace, statefulset, job, ingress... or any "
                                           "kind / short name the cluster serves.")
    resource_name: str | None = None
    label_selector: str | None = None
    propagation: Literal["background", "foreground", "orphan"] = Field(
        "background", description="What happens to dependents (the ReplicaSets and pods of a "
                                  "Deployment): background, foreground or orphan.")
    wait: bool = Field(True, description="Wait until every deleted object is gone.")
    timeout: Duration = 120.0
    ignore_not_found: bool = Field(
        False, description="A missing object, or a selector matching nothing, is not an error.")
    ignore_missing: bool | None = Field(
        None, description="The same as ignore_not_found (give one of them).")
    allow_cluster_scoped: bool = Field(
        False, description="Allow deleting a Namespace (and all in it) or another "
                           "cluster-scoped object.")

    @model_validator(mode="after")
    def _one_target(self) -> K8sDeleteConfig:
        require_exactly_one(self, "resource_name", "label_selector")
        if self.ignore_missing is not None:
            if "ignore_not_found" in self.model_fields_set:
                raise ValueError("give only one of 'ignore_not_found' or 'ignore_missing' "
                                 "(the same setting)")
            self.ignore_not_found = self.ignore_missing
        return self


class K8sLogsConfig(K8sTarget):
    """Read the logs of a pod or of the pods a selector matches."""

    pod: str | None = None
    pod_selector: str | None = None
    container: str | None = None
    tail_lines: int | None = Field(None, ge=0, description="Only the last N lines of each pod.")
    since_seconds: Duration | None = Field(
        None, description="Only lines newer than this: seconds, or '10m', '1h'.")
    since: Duration | None = Field(
        None, description="The same as since_seconds (give one of them), e.g. '10m', '1h'.")
    previous: bool = Field(False, description="The previous (crashed) container's log.")
    follow: bool = Field(False, description="Keep streaming until the pods end or the timeout.")
    timeout: Duration | None = Field(
        None, description="How long to follow (default 300 s); the step succeeds when it ends.")

    @model_validator(mode="after")
    def _one_pod(self) -> K8sLogsConfig:
        require_exactly_one(self, "pod", "pod_selector")
        if self.since is not None:
            if self.since_seconds is not None:
                raise ValueError("give only one of 'since_seconds' or 'since' (the same "
                                 "setting)")
            self.since_seconds = self.since
        return self


class K8sRollbackConfig(_WorkloadOperation):
    """Roll a workload back to the previous or a given revision (kubectl rollout undo)."""

    resource_type: RolloutType = Field("deployment", description="deployment, statefulset "
                                                                  "or daemonset (or deploy, "
                                                                  "sts, ds).")
    revision: int | None = Field(None, ge=1,
                                 description="Revision to go back to (default: previous).")
    wait: bool = True


MAX_LIST = 5000  # objects one k8s_list returns at most


class K8sListConfig(K8sTarget):
    """List objects of any kind the cluster serves (as `kubectl get`), small summaries with
    their health; a Secret's values are never read into them."""

    resource_type: str = Field(description="pod, deployment, service, configmap, secret, "
                                           "namespace, node, jobs.batch... or any kind / short "
                                           "name / plural the cluster serves.")
    label_selector: str | None = Field(None, description="Only objects matching it, e.g. "
                                                         "app=web,tier!=db.")
    all_namespaces: bool = Field(False, description="List in every namespace (kubectl -A).")
    limit: int = Field(500, ge=1, le=MAX_LIST,
                       description=f"Return at most this many objects (1 to {MAX_LIST}).")

    @field_validator("resource_type")
    @classmethod
    def _type(cls, value: str) -> str:
        return check_resource_type(value)


class K8sGetConfig(K8sTarget):
    """Read one object of any kind (as `kubectl get -o json`): the object without its
    managedFields, its health; of a Secret, its key names only (never a value)."""

    resource_type: str = Field(description="pod, deployment, service, configmap, secret, "
                                           "namespace, node... or any kind / short name / "
                                           "plural the cluster serves.")
    resource_name: str
    ignore_not_found: bool = Field(False, description="A missing object is not an error "
                                                      "(output found=false).")

    @field_validator("resource_type")
    @classmethod
    def _type(cls, value: str) -> str:
        return check_resource_type(value)


def check_resource_type(value: str) -> str:
    """A resource type as users write it (`deploy`, `jobs.batch`, a CRD's plural): a
    template as is; otherwise 1 to 253 characters without control characters or '/'."""
    if "{{" in value or "{%" in value:
        return value
    stripped = value.strip()
    if not stripped or len(stripped) > 253 or path_segment_problem(stripped):
        raise ValueError(f"resource_type {value[:80]!r} is not a resource type (a kind, "
                         "short name or plural such as deployment, svc, jobs.batch)")
    return value
