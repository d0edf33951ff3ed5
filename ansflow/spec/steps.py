"""The `config` model of every step type. Each model is strict: unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from ansflow.spec.ansible_cfg import host_pattern, static_settings
from ansflow.spec.common import Duration, EnvMap, StrictModel, StrOrArgv, require_exactly_one
from ansflow.spec.conditions import parse_condition
from ansflow.spec.steps_k8s import (  # noqa: F401 - the management steps' models live there
    ROLLOUT_TYPES,
    SCALABLE_TYPES,
    K8sDeleteConfig,
    K8sLogsConfig,
    K8sRestartConfig,
    K8sRollbackConfig,
    K8sScaleConfig,
    K8sTarget,
    KubeNamespace,
)


class PodSettings(StrictModel):
    """Where and how a command or script step runs when it runs on kubernetes (in a pod)."""

    cluster: str | None = Field(
        None, description="runs_on kubernetes: the KubernetesCluster block to run the pod in "
                          "(default: defaults.kubernetes.cluster, else defaults.k8s.cluster).")
    namespace: KubeNamespace = Field(
        None, description="runs_on kubernetes: the pod's namespace (default: "
                          "defaults.kubernetes.namespace, else defaults.k8s.namespace, else "
                          "the cluster block's).")
    service_account: str | None = Field(
        None, description="runs_on kubernetes: the pod's service account (its token is "
                          "mounted only when one is named).")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="runs_on kubernetes: the pod's nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="runs_on kubernetes: the pod's tolerations "
                                          "(Kubernetes' own form).")
    resources: dict[str, dict[str, str | int | float]] = Field(
        default_factory=dict, description="runs_on kubernetes: the container's "
                                          "{requests: {...}, limits: {...}}.")

    @field_validator("resources")
    @classmethod
    def _resource_sections(cls, value: dict) -> dict:
        unknown = sorted(set(value) - {"requests", "limits"})
        if unknown:
            raise ValueError(f"resources takes 'requests' and 'limits', not {', '.join(unknown)}")
        return value


class RunsOnSettings(PodSettings):
    """Where a command or script step runs beyond this process: the container image (docker,
    kubernetes), the Docker engine or SSH host, and what is copied in and back."""

    image: str | None = Field(None, description="Container image when the step runs on docker "
                                                "(default: defaults.docker.image) or on "
                                                "kubernetes (default: "
                                                "defaults.kubernetes.image, else "
                                                "defaults.docker.image).")
    host: str | None = Field(
        None, description="Docker engine when the step runs on docker (default: "
                          "defaults.docker.host, else DOCKER_HOST); on remote, the SshHost "
                          "block to run on (default: defaults.remote.host).")
    upload_workspace: bool | None = Field(
        None, description="Copy the workspace in first: on remote to the run's directory on "
                          "the host (default: false); on kubernetes into the pod's /workspace "
                          "(default: true).")
    download: list[str] = Field(
        default_factory=list, description="runs_on remote or kubernetes: paths (relative to "
                                          "the workspace) copied back after success.")


class CommandConfig(RunsOnSettings):
    """Run a command: a string through the shell, or an argv list without one."""

    command: StrOrArgv = Field(description="Shell command line, or an argv list (no shell).")
    working_dir: str | None = Field(None, description="Directory to run in (default: workspace).")
    shell: str = Field("sh", description="Shell for string commands: sh, bash, or a path.")


class ScriptConfig(RunsOnSettings):
    """Run an inline script or a script file with an interpreter."""

    script: str | None = Field(None, description="Inline script text.")
    file: str | None = Field(None, description="Path of a script file (relative to workspace).")
    interpreter: str = Field("sh", description="Interpreter: sh, bash, python3, node, ...")
    args: list[str] = Field(default_factory=list, description="Arguments passed to the script.")
    working_dir: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ScriptConfig:
        require_exactly_one(self, "script", "file",
                            "give exactly one of 'script' (inline) or 'file'")
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
    limit: Annotated[str | None, AfterValidator(host_pattern)] = None
    tags: str | list[str] | None = None
    skip_tags: str | list[str] | None = None
    check: bool = Field(False, description="Dry run (--check): change nothing.")
    diff: bool = Field(False, description="Show the changes to files (--diff).")
    become: bool = Field(False, description="Run tasks with privilege escalation (--become).")
    forks: int | None = Field(None, ge=1, le=500)
    vault_password: str | None = Field(
        None, description="Name of a Prefect Secret block holding the vault password.")
    ansible_cfg: Annotated[dict[str, dict[str, str | int | float | bool]],
                           AfterValidator(static_settings)] = Field(
        default_factory=dict, description="ansible.cfg settings a step may change (those that "
                                          "load code, touch files or weaken host checking are "
                                          "ansflow's): {section: {key: value}}.")
    working_dir: str | None = None

    @model_validator(mode="after")
    def _one_inventory(self) -> AnsibleConfig:
        if self.inventory is not None and self.hosts:
            raise ValueError("give 'inventory' (a file) or 'hosts' (SshHost blocks), not both")
        unknown = sorted({h for members in self.groups.values() for h in members}
                         - set(self.hosts))
        if unknown and not any("{{" in h for h in unknown):
            # repr: a lone surrogate (a non-UTF-8 byte) in the raw name would make the
            # message itself unencodable for pydantic-core.
            raise ValueError(f"groups name hosts not in 'hosts': {', '.join(map(repr, unknown))}")
        return self


# The `host` of every docker_* step.
DockerEngine = Annotated[str | None, Field(
    description="Docker engine: a unix:// / tcp:// / ssh:// address or the name of a "
                "DockerHost block (default: defaults.docker.host, else DOCKER_HOST).")]


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
    host: DockerEngine = None


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
    host: DockerEngine = None


class DockerPushConfig(StrictModel):
    """Push an image to a registry."""

    image: str
    tag: str | None = None
    registry: str | None = Field(
        None, description="A registry host[:port], or the name of a saved registry block."
    )
    credentials: str | None = Field(None, description="Name of a registry credentials block.")
    host: DockerEngine = None


class DockerPullConfig(StrictModel):
    """Pull an image from a registry."""

    image: str
    tag: str | None = None
    registry: str | None = None
    credentials: str | None = None
    host: DockerEngine = None


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
    node_selector: dict[str, str] = Field(default_factory=dict,
                                          description="The pods' nodeSelector.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, description="The pods' tolerations (Kubernetes' own form).")


class HelmSpec(StrictModel):
    chart: str
    release: str
    repo: str | None = None
    version: str | None = None
    values_file: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)


_EXPIRY = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
MAX_EXPIRY_DAYS = 3650
_EXPIRY_MAX_TEXT = 40  # longer is no duration a person writes (and no huge int to parse)


def expiry_seconds(value: str | int) -> int:
    """Seconds of an ``expire_after`` such as ``2w``, ``2d``, ``12h``, ``1d12h``, ``90m`` or
    3600 (units largest first, as kube-janitor's TTLs: w, d, h, m, s; a bare number is
    seconds).

    Raises:
        ValueError: not such a duration, zero, or longer than ten years.
    """
    text = "" if isinstance(value, bool) else str(value).strip().replace(" ", "")
    text = text + "s" if text.isascii() and text.isdigit() else text  # a number: seconds
    match = _EXPIRY.fullmatch(text) if 0 < len(text) <= _EXPIRY_MAX_TEXT else None
    if match is None or not any(match.groups()):
        raise ValueError(f"expire_after {str(value)[:40]!r} is not a duration: use weeks, "
                         "days, hours, minutes or seconds such as '2w', '2d', '12h', "
                         "'1d12h', '30m'")
    weeks, days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    total = (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds
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
                          "last deploy, e.g. '2w', '2d', '12h', '1d12h' (review apps; every deploy "
                          "starts the time again). `ansflow cleanup` and the ansflow-cleanup "
                          "flow remove expired objects.",
        json_schema_extra={"pattern": r"^\s*(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?\s*$|\{\{"})

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
        require_exactly_one(self, "pod", "pod_selector")
        return self


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
