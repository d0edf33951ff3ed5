"""The `config` model of every step type. Each model is strict: unknown keys are errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

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
                          "defaults.docker.host, else DOCKER_HOST).")


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
                          "defaults.docker.host, else DOCKER_HOST).")

    @model_validator(mode="after")
    def _one_source(self) -> ScriptConfig:
        if (self.script is None) == (self.file is None):
            raise ValueError("give exactly one of 'script' (inline) or 'file'")
        return self


class AnsibleConfig(StrictModel):
    """Run an Ansible playbook."""

    playbook: str
    inventory: str | None = None
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    limit: str | None = None
    tags: str | list[str] | None = None
    check: bool = False
    working_dir: str | None = None


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

    @model_validator(mode="after")
    def _at_most_one_source(self) -> K8sDeployConfig:
        given = [k for k in ("deployment_spec", "manifest", "manifest_path", "helm")
                 if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give only one of deployment_spec, manifest, manifest_path, helm "
                             f"(got {', '.join(given)})")
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
    """Scale a Deployment, StatefulSet or ReplicaSet."""

    resource_name: str
    replicas: int = Field(ge=0)
    resource_type: str = "deployment"
    wait: bool = True
    timeout: Duration = 300.0


class K8sDeleteConfig(K8sTarget):
    """Delete objects by name or label selector."""

    resource_type: str
    resource_name: str | None = None
    label_selector: str | None = None
    wait: bool = True
    timeout: Duration = 120.0
    ignore_not_found: bool = True

    @model_validator(mode="after")
    def _one_target(self) -> K8sDeleteConfig:
        if (self.resource_name is None) == (self.label_selector is None):
            raise ValueError("give exactly one of 'resource_name' or 'label_selector'")
        return self


class K8sLogsConfig(K8sTarget):
    """Read the logs of a pod or of the pods a selector matches."""

    pod: str | None = None
    pod_selector: str | None = None
    container: str | None = None
    tail_lines: int | None = Field(None, ge=0)
    since_seconds: int | None = Field(None, ge=0)
    previous: bool = False

    @model_validator(mode="after")
    def _one_pod(self) -> K8sLogsConfig:
        if (self.pod is None) == (self.pod_selector is None):
            raise ValueError("give exactly one of 'pod' or 'pod_selector'")
        return self


class K8sRollbackConfig(K8sTarget):
    """Roll a workload back to the previous or a given revision."""

    resource_name: str
    resource_type: Literal["deployment", "statefulset", "daemonset"] = "deployment"
    revision: int | None = Field(None, ge=1, description="Revision to go back to (default: previous).")
    wait: bool = True
    timeout: Duration = 300.0
