"""The `config` model of every step type. Each model is strict: unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from ansflow.spec.common import Duration, EnvMap, StrictModel, StrOrArgv
from ansflow.spec.conditions import parse_condition


class CommandConfig(StrictModel):
    """Run a command: a string through the shell, or an argv list without one."""

    command: StrOrArgv = Field(description="Shell command line, or an argv list (no shell).")
    working_dir: str | None = Field(None, description="Directory to run in (default: workspace).")
    shell: str = Field("sh", description="Shell for string commands: sh, bash, or a path.")
    image: str | None = Field(None, description="Container image when the step runs on docker "
                                                "(default: defaults.docker.image).")
    host: str | None = Field(
        None, description="Docker engine when the step runs on docker (default: "
                          "defaults.docker.host, else DOCKER_HOST); on remote, the SshHost "
                          "block to run on (default: defaults.remote.host).")
    upload_workspace: bool = Field(
        False, description="runs_on remote: upload the workspace to the run's directory on "
                           "the host first.")
    download: list[str] = Field(
        default_factory=list, description="runs_on remote: paths (relative to the workspace) "
                                          "copied back from the host after success.")


class ScriptConfig(StrictModel):
    """Run an inline script or a script file with an interpreter."""

    script: str | None = Field(None, description="Inline script text.")
    file: str | None = Field(None, description="Path of a script file (relative to workspace).")
    interpreter: str = Field("sh", description="Interpreter: sh, bash, python3, node, ...")
    args: list[str] = Field(default_factory=list, description="Arguments passed to the script.")
    working_dir: str | None = None
    image: str | None = Field(None, description="Container image when the step runs on docker "
                                                "(default: defaults.docker.image).")
    host: str | None = Field(
        None, description="Docker engine when the step runs on docker (default: "
                          "defaults.docker.host, else DOCKER_HOST); on remote, the SshHost "
                          "block to run on (default: defaults.remote.host).")
    upload_workspace: bool = Field(
        False, description="runs_on remote: upload the workspace to the run's directory on "
                           "the host first.")
    download: list[str] = Field(
        default_factory=list, description="runs_on remote: paths (relative to the workspace) "
                                          "copied back from the host after success.")

    @model_validator(mode="after")
    def _one_source(self) -> ScriptConfig:
        if (self.script is None) == (self.file is None):
            raise ValueError("give exactly one of 'script' (inline) or 'file'")
        return self


class AnsibleConfig(StrictModel):
    """Run an Ansible playbook."""

    playbook: str = Field(description="Playbook file, relative to the workspace.")
    inventory: str | None = Field(
        None, description="Inventory file, relative to the workspace (or give `hosts`).")
    hosts: list[str] = Field(
        default_factory=list, description="SshHost block names: the inventory is generated "
                                          "from them (host keys checked, keys never on argv).")
    groups: dict[str, list[str]] = Field(
        default_factory=dict, description="With `hosts`: inventory groups, {group: [host]}.")
    extra_vars: dict[str, Any] = Field(
        default_factory=dict, description="Extra variables, passed as a file (never on argv).")
    limit: str | None = None
    tags: str | list[str] | None = None
    skip_tags: str | list[str] | None = None
    check: bool = Field(False, description="Dry run (--check): change nothing.")
    diff: bool = Field(False, description="Show the changes to files (--diff).")
    become: bool = Field(False, description="Run tasks with privilege escalation (--become).")
    forks: int | None = Field(None, ge=1, le=500)
    vault_password: str | None = Field(
        None, description="Name of a Prefect Secret block holding the vault password.")
    ansible_cfg: dict[str, dict[str, str | int | float | bool]] = Field(
        default_factory=dict, description="ansible.cfg settings: {section: {key: value}}.")
    working_dir: str | None = None

    @model_validator(mode="after")
    def _one_inventory(self) -> AnsibleConfig:
        if self.inventory is not None and self.hosts:
            raise ValueError("give 'inventory' (a file) or 'hosts' (SshHost blocks), not both")
        unknown = sorted({h for members in self.groups.values() for h in members}
                         - set(self.hosts))
        if unknown and not any("{{" in h for h in unknown):
            raise ValueError(f"groups name hosts not in 'hosts': {', '.join(unknown)}")
        return self


class DockerBuildConfig(StrictModel):
    """Build an image with the Docker engine."""

    image_name: str = Field(description="Repository name of the image, e.g. my-app.")
    dockerfile: str | None = Field(
        None, description="Dockerfile path, relative to the workspace (default: Dockerfile in "
                          "the context, as `docker build` does).")
    context: str = Field(".", description="Build context directory, relative to the workspace.")
    tag: str = Field("latest", description="Tag of the built image.")
    tags: list[str] = Field(default_factory=list, description="Extra tags.")
    build_args: dict[str, str] = Field(default_factory=dict)
    target: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    no_cache: bool = False
    pull: bool = False
    platform: str | None = None
    host: str | None = Field(
        None, description="Docker engine: a unix:// / tcp:// / ssh:// address or the name of a "
                          "DockerHost block (default: defaults.docker.host, else DOCKER_HOST).")


class DockerRunConfig(StrictModel):
    """Run a container to completion."""

    image: str
    command: StrOrArgv | None = None
    entrypoint: StrOrArgv | None = None
    env: EnvMap = Field(default_factory=dict)
    volumes: list[str] | dict[str, str] = Field(
        default_factory=list, description="'host:container[:ro]' strings or {host: container}."
    )
    ports: list[str] | dict[str, int | str] = Field(default_factory=list)
    working_dir: str | None = None
    network: str | None = None
    user: str | None = None
    timeout: Duration | None = None
    remove: bool = True
    host: str | None = Field(
        None, description="Docker engine: a unix:// / tcp:// / ssh:// address or the name of a "
                          "DockerHost block (default: defaults.docker.host, else DOCKER_HOST).")


class DockerPushConfig(StrictModel):
    """Push an image to a registry."""

    image: str
    tag: str | None = None
    registry: str | None = Field(
        None, description="A registry host[:port], or the name of a saved registry block."
    )
    credentials: str | None = Field(None, description="Name of a registry credentials block.")
    host: str | None = Field(
        None, description="Docker engine: a unix:// / tcp:// / ssh:// address or the name of a "
                          "DockerHost block (default: defaults.docker.host, else DOCKER_HOST).")


class DockerPullConfig(StrictModel):
    """Pull an image from a registry."""

    image: str
    tag: str | None = None
    registry: str | None = None
    credentials: str | None = None
    host: str | None = Field(
        None, description="Docker engine: a unix:// / tcp:// / ssh:// address or the name of a "
                          "DockerHost block (default: defaults.docker.host, else DOCKER_HOST).")


class K8sTarget(StrictModel):
    """Where a Kubernetes step acts: a saved cluster block and a namespace."""

    cluster: str | None = Field(None, description="Name of a saved KubernetesCluster block.")
    namespace: str | None = None


class DeploymentSpec(StrictModel):
    name: str
    image: str
    replicas: int = Field(1, ge=0)
    ports: list[int | dict[str, Any]] = Field(default_factory=list)
    env: EnvMap = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    command: list[str] | None = None
    args: list[str] | None = None


class HelmSpec(StrictModel):
    chart: str
    release: str
    repo: str | None = None
    version: str | None = None
    values_file: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)


_EXPIRY = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_EXPIRY_DAYS = 3650


def expiry_seconds(value: str | int) -> int:
    """Seconds of an ``expire_after`` such as ``2d``, ``12h``, ``1d12h``, ``90m`` or 3600.

    Raises:
        ValueError: not such a duration, zero, or longer than ten years.
    """
    text = str(value).strip()
    text = text + "s" if text.isdigit() else text  # a bare number means seconds
    match = _EXPIRY.match(text.replace(" ", "")) if not isinstance(value, bool) else None
    if not text or match is None or not any(match.groups()):
        raise ValueError(f"expire_after {str(value)[:40]!r} is not a duration: use days, "
                         "hours, minutes or seconds such as '2d', '12h', '1d12h', '30m'")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError("expire_after must be longer than 0")
    if total > MAX_EXPIRY_DAYS * 86400:
        raise ValueError(f"expire_after must be at most {MAX_EXPIRY_DAYS}d")
    return total


def _expiry_text(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}s"  # a number means seconds
    return value


class K8sDeployConfig(K8sTarget):
    """Apply a Deployment, manifests or a Helm chart, then wait for the rollout."""

    deployment_spec: DeploymentSpec | None = None
    manifest: str | list[dict[str, Any]] | dict[str, Any] | None = None
    manifest_path: str | None = None
    helm: HelmSpec | None = None
    wait: bool = True
    timeout: Duration = 300.0
    rollback_on_failure: bool = True
    dry_run: bool = False
    create_namespace: bool = False
    allow_cluster_scoped: bool = Field(
        False, description="Allow cluster-scoped objects (ClusterRole, CRD, Namespace...).")
    force_conflicts: bool = Field(
        False, description="Take over fields other field managers own (apply force=true).")
    expire_after: Annotated[str | None, BeforeValidator(_expiry_text)] = Field(
        None, description="Remove what this step applies once this long has passed since its "
                          "last deploy, e.g. '2d', '12h', '1d12h' (review apps; every deploy "
                          "starts the time again). `ansflow cleanup` and the ansflow-cleanup "
                          "flow remove expired objects.",
        json_schema_extra={"pattern": r"^\s*(\d+d)?(\d+h)?(\d+m)?(\d+s)?\s*$|\{\{"})

    @field_validator("expire_after")
    @classmethod
    def _valid_expiry(cls, value: str | None) -> str | None:
        if value is not None and "{{" not in value and "{%" not in value:
            expiry_seconds(value)  # templated: checked once rendered
        return value

    @model_validator(mode="after")
    def _at_most_one_source(self) -> K8sDeployConfig:
        given = [k for k in ("deployment_spec", "manifest", "manifest_path", "helm")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of deployment_spec, manifest, manifest_path, helm "
                             f"(got {', '.join(given)})")
        if self.helm is not None and self.expire_after is not None:
            raise ValueError("expire_after applies to deployment_spec, manifest and "
                             "manifest_path, not to helm (uninstall the release instead)")
        return self


class K8sWaitConfig(K8sTarget):
    """Wait until an object reaches a condition (kubectl rollout status / kubectl wait)."""

    resource_type: str
    resource_name: str
    condition: str = Field(
        "available",
        description="available|rollout, ready, complete, deleted, condition=T[=V], "
                    "jsonpath={expr}[=V]",
    )
    timeout: Duration = 300.0
    fail_fast: bool = Field(True, description="Fail early on CrashLoopBackOff/ImagePullBackOff.")

    @field_validator("condition")
    @classmethod
    def _known_condition(cls, value: str) -> str:
        if "{{" not in value and "{%" not in value:  # templated: checked once rendered
            parse_condition(value)
        return value


class K8sExecConfig(K8sTarget):
    """Run a command in a pod chosen by name or label selector."""

    command: StrOrArgv
    pod: str | None = None
    pod_selector: str | None = None
    container: str | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _one_pod(self) -> K8sExecConfig:
        if (self.pod is None) == (self.pod_selector is None):
            raise ValueError("give exactly one of 'pod' or 'pod_selector'")
        return self


class K8sScaleConfig(K8sTarget):
    """Scale a Deployment, StatefulSet or ReplicaSet (its /scale subresource)."""

    resource_name: str
    replicas: int = Field(ge=0)
    resource_type: str = Field("deployment", description="deployment, statefulset or "
                                                          "replicaset (or deploy, sts, rs).")
    wait: bool = Field(True, description="Wait until the new count of replicas is ready.")
    timeout: Duration = 300.0
    fail_fast: bool = Field(True, description="Fail early on CrashLoopBackOff/ImagePullBackOff.")

    @field_validator("resource_type")
    @classmethod
    def _scalable(cls, value: str) -> str:
        return _workload_type(value, SCALABLE_TYPES)


class K8sRestartConfig(K8sTarget):
    """Restart a workload's pods as `kubectl rollout restart` does, then await the rollout."""

    resource_name: str
    resource_type: str = Field("deployment", description="deployment, statefulset or "
                                                          "daemonset (or deploy, sts, ds).")
    wait: bool = Field(True, description="Wait for the rollout of the restarted pods.")
    timeout: Duration = 300.0
    fail_fast: bool = Field(True, description="Fail early on CrashLoopBackOff/ImagePullBackOff.")

    @field_validator("resource_type")
    @classmethod
    def _restartable(cls, value: str) -> str:
        return _workload_type(value, ROLLOUT_TYPES)


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
        if (self.resource_name is None) == (self.label_selector is None):
            raise ValueError("give exactly one of 'resource_name' or 'label_selector'")
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
        if (self.pod is None) == (self.pod_selector is None):
            raise ValueError("give exactly one of 'pod' or 'pod_selector'")
        if self.since is not None:
            if self.since_seconds is not None:
                raise ValueError("give only one of 'since_seconds' or 'since' (the same "
                                 "setting)")
            self.since_seconds = self.since
        return self


class K8sRollbackConfig(K8sTarget):
    """Roll a workload back to the previous or a given revision (kubectl rollout undo)."""

    resource_name: str
    resource_type: str = Field("deployment", description="deployment, statefulset or "
                                                          "daemonset (or deploy, sts, ds).")
    revision: int | None = Field(None, ge=1,
                                 description="Revision to go back to (default: previous).")
    wait: bool = True
    timeout: Duration = 300.0
    fail_fast: bool = Field(True, description="Fail early on CrashLoopBackOff/ImagePullBackOff.")

    @field_validator("resource_type")
    @classmethod
    def _rollbackable(cls, value: str) -> str:
        return _workload_type(value, ROLLOUT_TYPES)


# What k8s_scale / k8s_restart / k8s_rollback accept as resource_type -> the kind it means.
SCALABLE_TYPES = {n: k for k, names in (
    ("Deployment", ("deployment", "deployments", "deploy")),
    ("StatefulSet", ("statefulset", "statefulsets", "sts")),
    ("ReplicaSet", ("replicaset", "replicasets", "rs"))) for n in names}
ROLLOUT_TYPES = {n: k for k, names in (
    ("Deployment", ("deployment", "deployments", "deploy")),
    ("StatefulSet", ("statefulset", "statefulsets", "sts")),
    ("DaemonSet", ("daemonset", "daemonsets", "ds"))) for n in names}


def _workload_type(value: str, accepted: dict[str, str]) -> str:
    if "{{" in value or "{%" in value:  # templated: checked once rendered
        return value
    if value.strip().lower() not in accepted:
        kinds = ", ".join(sorted({k.lower() for k in accepted.values()}))
        raise ValueError(f"resource_type {value!r} is not one of {kinds}")
    return value


APPROVAL_RESERVED = ("approve", "approved", "comment")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_APPROVAL_FIELDS = 20


class ApprovalField(StrictModel):
    """A value the approver fills in, declared as a pipeline variable is."""

    type: Literal["string", "integer", "number", "boolean"] | None = None
    description: str | None = None
    default: str | int | float | bool | None = None
    enum: list[str | int | float | bool] | None = Field(
        None, min_length=1, description="The only values allowed (a dropdown in the form).")
    pattern: str | None = None
    minLength: int | None = Field(None, ge=0)  # noqa: N815 - JSON Schema's name
    maxLength: int | None = Field(None, ge=0)  # noqa: N815 - JSON Schema's name
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _constraints(self) -> ApprovalField:
        from ansflow.variables import check_declaration  # noqa: PLC0415 - no import cycle

        check_declaration(self.model_dump())
        return self


class ApprovalConfig(StrictModel):
    """Pause the run until someone approves or rejects it (Prefect UI or `ansflow approve`)."""

    message: str = Field("Approve to let the run go on.",
                         description="What the approver is asked (shown on the form).")
    timeout: Duration = Field(3600.0, description="How long to wait for an answer; then the "
                                                  "step fails.")
    fields: dict[str, ApprovalField] = Field(
        default_factory=dict, description="Values the approver fills in (besides approve and "
                                          "comment): {name: {type, description, default, "
                                          "enum, ...}}; later steps read them as "
                                          "steps.<id>.outputs.<name>.")

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, ApprovalField]) -> dict[str, ApprovalField]:
        if len(value) > MAX_APPROVAL_FIELDS:
            raise ValueError(f"at most {MAX_APPROVAL_FIELDS} fields")
        for name in value:
            if not FIELD_NAME.match(name):
                raise ValueError(f"field name {name!r} must be letters, digits and _ "
                                 "(not starting with a digit)")
            if name in APPROVAL_RESERVED:
                raise ValueError(f"field name {name!r} is reserved ("
                                 f"{', '.join(APPROVAL_RESERVED)})")
        return value
