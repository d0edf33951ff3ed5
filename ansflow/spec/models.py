"""The pipeline file's models: pipeline, stages, steps (one step model per step type)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ansflow.spec.common import Duration, EnvMap, StrictModel, require_exactly_one
from ansflow.spec.matrix import Matrix
from ansflow.spec.source import GitSource, parameter_clash
from ansflow.spec.steps_k8s import KubeNamespace
from ansflow.spec.triggers import On
from ansflow.stepenv import check_pattern
from ansflow.steptypes import CONFIG_MODELS

PipelineType = Literal["local", "remote", "docker", "kubernetes", "hybrid"]
RunsOn = Literal["local", "docker", "kubernetes", "remote"]
ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class StepCommon(StrictModel):
    """Options every step accepts, whatever its type."""

    name: str | None = Field(None, description="Display name (any language); the task run name.")
    id: str | None = Field(
        None, pattern=ID_PATTERN,
        description="Identifier used in references (steps.<id>...); derived when absent.",
    )
    needs: list[str] = Field(default_factory=list, description="Step ids this step waits for.")
    when: bool | str | None = Field(
        None, description="Condition (a template expression); false -> the step is Skipped.")
    retries: int = Field(0, ge=0, le=100)
    retry_delay: Duration = 0.0
    retry_on_exit_codes: list[int] | None = Field(
        None, description="Retry only when the step failed with one of these exit codes.")
    timeout: Duration | None = None
    allow_failure: bool = Field(False, description="A failure does not fail the pipeline.")
    env: EnvMap = Field(default_factory=dict)
    runs_on: RunsOn | None = Field(None, description="Where a command/script runs.")
    matrix: Matrix | None = Field(
        None, description="Run the step once per combination: axes such as "
                          "{python: ['3.11', '3.12']}, include, exclude, max_parallel, "
                          "fail_fast (docs/matrix.md).")

    _needs_list = field_validator("needs", mode="before")(_as_list)


def _step_model(step_type: str) -> type[StepCommon]:
    config_model = CONFIG_MODELS[step_type]
    return create_model(
        f"{config_model.__name__.removesuffix('Config')}Step",
        __base__=StepCommon,
        __doc__=f"A `{step_type}` step. {config_model.__doc__ or ''}".strip(),
        type=(Literal[step_type], Field(description="The step type.")),  # type: ignore[valid-type]
        config=(config_model, ...),
    )


STEP_MODELS: dict[str, type[StepCommon]] = {t: _step_model(t) for t in CONFIG_MODELS}
Step = Annotated[Union[tuple(STEP_MODELS.values())], Field(discriminator="type")]  # noqa: UP007


class Stage(StrictModel):
    name: str
    steps: list[Step] = Field(min_length=1)
    needs: list[str] | None = Field(
        None, description="Stage names; without it a stage follows the one before it.")
    parallel: bool = Field(False, description="Run this stage's steps concurrently.")
    env: EnvMap = Field(default_factory=dict)

    _needs_list = field_validator("needs", mode="before")(_as_list)


class Variable(StrictModel):
    default: Any = None
    description: str | None = None
    type: Literal["string", "integer", "number", "boolean"] | None = None
    # Constraints of the run form (JSON Schema's names), checked again at run start.
    pattern: str | None = Field(None, description="A regular expression a string value must "
                                                  "contain a match of (anchor it with ^...$).")
    enum: list[str | int | float | bool] | None = Field(
        None, min_length=1, description="The only values allowed.")
    minLength: int | None = Field(None, ge=0)  # noqa: N815 - JSON Schema's name
    maxLength: int | None = Field(None, ge=0)  # noqa: N815 - JSON Schema's name
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _constraints(self) -> Variable:
        from ansflow.variables import check_declaration  # noqa: PLC0415 - no import cycle

        check_declaration(self.model_dump())
        return self


def _variable_kind(value: Any) -> str:
    return "declared" if isinstance(value, (dict, Variable)) else "default"


# `name: {default, ...}` or just `name: default` (one error, not one per union member).
VariableOrDefault = Annotated[
    Union[Annotated[Variable, Tag("declared")],
          Annotated[Union[str, int, float, bool, None], Tag("default")]],
    Discriminator(_variable_kind),
]


class Schedule(StrictModel):
    cron: str
    timezone: str = "UTC"


class K8sDefaults(StrictModel):
    cluster: str | None = None
    namespace: KubeNamespace = None


class DockerDefaults(StrictModel):
    image: str | None = Field(None, description="Image for command/script steps run on docker.")
    registry: str | None = None
    credentials: str | None = None
    host: str | None = Field(
        None, description="Docker engine: unix:// or tcp:// address, or a Docker Host block name."
    )


class RemoteDefaults(StrictModel):
    host: str | None = Field(None, description="SshHost block of steps that run on remote.")


class KubernetesDefaults(StrictModel):
    """What command and script steps that run on kubernetes (in pods) take by default."""

    image: str | None = Field(None, description="Image of the step's pod (else "
                                                "defaults.docker.image).")
    cluster: str | None = Field(None, description="KubernetesCluster block (else "
                                                  "defaults.k8s.cluster).")
    namespace: KubeNamespace = Field(None, description="Namespace (else "
                                                       "defaults.k8s.namespace).")
    service_account: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, dict[str, str | int | float]] = Field(default_factory=dict)


class StepDefaults(StrictModel):
    retries: int | None = Field(None, ge=0)
    retry_delay: Duration | None = None
    timeout: Duration | None = None


class Defaults(StrictModel):
    k8s: K8sDefaults = Field(default_factory=K8sDefaults)
    docker: DockerDefaults = Field(default_factory=DockerDefaults)
    remote: RemoteDefaults = Field(default_factory=RemoteDefaults)
    kubernetes: KubernetesDefaults = Field(default_factory=KubernetesDefaults)
    step: StepDefaults = Field(default_factory=StepDefaults)


class Pipeline(StrictModel):
    """A hybrid pipeline: stages of steps, compiled into one Prefect flow run per run."""

    name: str = Field(min_length=1)
    type: PipelineType = "local"
    description: str | None = None
    source: GitSource | None = Field(
        None, description="Check this repository's commit out into each run's workspace "
                          "(docs/git-sources.md).")
    variables: dict[str, VariableOrDefault] = Field(default_factory=dict)
    schedule: Schedule | str | None = None
    on: On | None = Field(
        None, description="The pushes that start the pipeline when served: "
                          "{push: {branches, tags, paths, ..._ignore}} with GitHub's filter "
                          "patterns (docs/triggers.md).")
    env: EnvMap = Field(default_factory=dict)
    env_passthrough: list[str] = Field(
        default_factory=list,
        description="Worker environment variables (names or globs like LC_*) that steps "
                    "inherit beyond the clean base (PATH, HOME, LANG, LC_*, TZ, TMPDIR, USER, "
                    "LOGNAME, SHELL, TERM).")
    defaults: Defaults = Field(default_factory=Defaults)
    timeout: Duration | None = None
    max_parallel: int | None = Field(
        None, ge=1, le=4096,
        description="At most this many steps run at once (within the worker's "
                    "ANSFLOW_MAX_PARALLEL, default 64); more ready steps wait their turn.")
    workspace: str | None = Field(
        None, description="The folder each run's workspace is copied from, relative to the "
                          "file (default: the file's folder); see docs/workspaces.md.")
    stages: list[Stage] | None = None
    steps: list[Step] | None = None
    finally_: list[Step] = Field(default_factory=list, alias="finally")

    @field_validator("env_passthrough")
    @classmethod
    def _passthrough_names(cls, value: list[str]) -> list[str]:
        for pattern in value:
            problem = check_pattern(pattern)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("variables")
    @classmethod
    def _not_run_parameters(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        problem = parameter_clash(value) if info.data.get("source") is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _stages_or_steps(self) -> Pipeline:
        require_exactly_one(self, "stages", "steps")
        return self

    @model_validator(mode="after")
    def _push_has_a_repository(self) -> Pipeline:
        push = self.on.push if self.on else None
        if push is not None and self.source is None:
            raise ValueError("`on.push` needs `source: {git: URL}`: a pushed commit is "
                             "checked out from that repository")
        return self

    def variable_defaults(self) -> dict[str, Any]:
        return {k: (v.default if isinstance(v, Variable) else v) for k, v in self.variables.items()}

    def variable_specs(self) -> dict[str, Variable]:
        return {k: v if isinstance(v, Variable) else Variable(default=v)
                for k, v in self.variables.items()}


class PipelineFile(StrictModel):
    pipeline: Pipeline
