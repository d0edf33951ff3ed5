"""The docker_build step: build an image with the engine, streaming every builder line live."""

from __future__ import annotations

import os
from dataclasses import dataclass

from docker.utils.build import match_tag

from ansflow.engines.docker import docker_client, engine_error, json_param, stream_engine
from ansflow.engines.docker_context import ContextFiles, ContextStream, scan_context
from ansflow.engines.docker_streams import StreamEvent
from ansflow.errors import StepFailed
from ansflow.paths import confine
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.docker_access import DockerHost, docker_base_url, standalone_docker
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.spec.steps import DockerBuildConfig

DEFAULT_MAX_CONTEXT_BYTES = 2 * 1024**3
MAX_CONTEXT_ENV = "ANSFLOW_DOCKER_MAX_CONTEXT_BYTES"


@dataclass(frozen=True)
class BuildPlan:
    """A validated build: absolute paths, the Dockerfile's name inside the context, tags."""

    context: str
    dockerfile: str
    dockerfile_in_context: str
    extra_dockerfile: tuple[str, str] | None
    tags: list[str]


def plan_build(config: DockerBuildConfig, workspace: str) -> BuildPlan:
    """Validate paths and names before any I/O with the engine.

    Raises:
        StepFailed: missing context or Dockerfile, or an invalid image name or tag.
    """
    context = confine(config.context, workspace, "build context")
    # Like `docker build`: without `dockerfile:` it is the Dockerfile at the context's root.
    dockerfile_path = config.dockerfile or os.path.normpath(
        os.path.join(config.context, "Dockerfile"))
    dockerfile = confine(dockerfile_path, workspace, "Dockerfile")
    if not os.path.isdir(context):
        what = "is not a directory" if os.path.exists(context) else "does not exist"
        raise StepFailed(f"build context {config.context!r} ({context}) {what}")
    if not os.path.isfile(dockerfile):
        raise StepFailed(
            f"Dockerfile {dockerfile_path!r} not found (looked at {dockerfile})",
            hint="paths are relative to the pipeline workspace; set `dockerfile:`",
        )
    tags = []
    for tag in [config.tag, *config.tags]:
        ref = f"{config.image_name}:{tag}"
        if not match_tag(ref):
            raise StepFailed(
                f"{ref!r} is not a valid image reference",
                hint="image names are lowercase [a-z0-9._-/]; tags are [A-Za-z0-9_.-], max 128",
            )
        tags.append(ref)
    rel = os.path.relpath(dockerfile, context)
    extra = None
    if rel.startswith(".."):
        # Outside the context: sent inside the archive under a private name, as the CLI does.
        with open(dockerfile, encoding="utf-8", errors="replace") as fh:
            rel = ".ansflow.Dockerfile"
            extra = (rel, fh.read())
    return BuildPlan(context, dockerfile, rel, extra, tags)


def check_context(plan: BuildPlan) -> ContextFiles:
    """Every file of the context, checked (size limit, readable) before any engine I/O.

    Raises:
        StepFailed: the context is over the limit or a file in it cannot be read.
    """
    limit = int(os.environ.get(MAX_CONTEXT_ENV, DEFAULT_MAX_CONTEXT_BYTES))
    return scan_context(plan.context, plan.dockerfile_in_context, plan.extra_dockerfile, limit,
                        hint=f"exclude files with a .dockerignore, or raise {MAX_CONTEXT_ENV}")


def build_params(config: DockerBuildConfig, plan: BuildPlan) -> list[tuple[str, str]]:
    """The engine's /build query parameters (one ``t`` per tag)."""
    params: list[tuple[str, str]] = [("t", t) for t in plan.tags]
    params += [
        ("dockerfile", plan.dockerfile_in_context),
        ("rm", "1"),
        ("forcerm", "1"),
        ("nocache", "1" if config.no_cache else "0"),
        ("pull", "1" if config.pull else "0"),
    ]
    if config.build_args:
        params.append(("buildargs", json_param(config.build_args)))
    if config.labels:
        params.append(("labels", json_param(config.labels)))
    if config.target:
        params.append(("target", config.target))
    if config.platform:
        params.append(("platform", config.platform))
    return params


@step_executor
def execute_docker_build(ctx: StepContext, config: DockerBuildConfig) -> StepResult:
    """Build an image, streaming the builder's output into the step log as it comes.

    Returns:
        Outputs ``image`` (first name:tag), ``image_id`` and ``tags`` (comma-separated).

    Raises:
        StepFailed: bad input, or the build failed (with the builder's own message).
        StepTimedOut: the build ran past the step's deadline and was stopped.
        StepCancelled: the run was cancelled during the build.
        EngineUnavailable: no Docker engine answers.
    """
    plan = plan_build(config, ctx.workspace)
    files = check_context(plan)
    base_url = docker_base_url(config.host)
    client = docker_client(base_url)
    context = ContextStream(files)
    image_id = None

    def seen(event: StreamEvent) -> None:
        nonlocal image_id
        image_id = event.image_id or image_id

    def failed(message: str) -> StepFailed:
        if context.error is not None:
            return StepFailed(f"build context unreadable: {context.error}")
        return StepFailed(f"docker build failed: {message}")

    try:
        ctx.emit(f"building {', '.join(plan.tags)} from {plan.context}")
        stream_engine(client, "/build", what="docker build", timeout=ctx.budget(),
                      limit=ctx.timeout, on_cancel=ctx.on_cancel, emit=ctx.emit, fail=failed,
                      on_event=seen, params=build_params(config, plan), data=context.chunks(),
                      headers={"Content-Type": "application/x-tar"})
        if context.error is not None:
            raise StepFailed(f"build context unreadable: {context.error}")
        if image_id is None:
            image_id = _image_id(client, plan.tags[0])
    finally:
        context.close()
        client.close()
    ctx.emit(f"built {image_id} as {', '.join(plan.tags)}")
    record_build(ctx, base_url, image_id)
    return StepResult(outputs={"image": plan.tags[0], "image_id": image_id,
                               "tags": ",".join(plan.tags)})


def engine_key(base_url: str | None) -> str:
    """The name an engine's built images are recorded under: its address, with this
    machine's name for a local socket (machines sharing one store have their own)."""
    address = base_url or os.environ.get("DOCKER_HOST") or "default"
    if address == "default" or address.startswith(("unix:", "npipe:")):
        import socket  # noqa: PLC0415

        return f"{socket.gethostname()}:{address}"[:255]
    return address[:255]


def record_build(ctx: StepContext, base_url: str | None, image_id: str) -> None:
    """Record the image in ansflow's store for `ansflow cleanup --docker` (which keeps each
    pipeline's newest builds); a store that cannot be written only costs a warning."""
    from ansflow.store import Store, StoreError  # noqa: PLC0415

    try:
        store = Store()
        try:
            store.record_image(engine_key(base_url), image_id, ctx.pipeline, ctx.build_number,
                               ctx.run_id)
        finally:
            store.close()
    except StoreError as exc:
        ctx.emit(f"[ansflow] the image was not recorded for cleanup: {exc}", stream="stderr")


def _image_id(client, reference: str) -> str:  # noqa: ANN001
    try:
        return client.api.inspect_image(reference)["Id"]
    except Exception as exc:  # noqa: BLE001 - translated into the step error tree
        raise engine_error(exc, "docker build") from exc


@step_task("docker_build", execute_docker_build)
def docker_build(
    *,
    image_name: str,
    dockerfile: str | None = None,
    context: str = ".",
    tag: str = "latest",
    tags: list[str] | None = None,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
    labels: dict[str, str] | None = None,
    no_cache: bool = False,
    pull: bool = False,
    platform: str | None = None,
    host: str | DockerHost | None = None,
    workspace: str | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Build an image with the Docker engine, streaming every builder line into the log.

    Args:
        image_name: Repository name of the image, e.g. ``my-app`` or ``reg:5000/team/app``.
        dockerfile: Dockerfile path relative to ``workspace`` (default: the context's
            ``Dockerfile``, as ``docker build`` does).
        context: Build context directory, relative to ``workspace``.
        tag: Tag of the built image.
        tags: Extra tags.
        build_args: ``--build-arg`` values.
        target: Build stage to stop at.
        labels: Image labels.
        no_cache: Build without the cache.
        pull: Always pull newer base images.
        platform: Target platform, e.g. ``linux/amd64``.
        host: The Docker engine: a URL (``unix://``, ``tcp://``, ``ssh://``), a DockerHost
            block or its name (default: ``DOCKER_HOST`` / the docker CLI's context).
        workspace: The directory relative paths start from (default: the current directory).
        timeout: Seconds before the step is stopped and what it started is removed.

    Returns:
        ``exit_code`` (None) and ``outputs``: ``image`` (the first ``name:tag``),
        ``image_id`` and ``tags`` (comma-separated).

    Raises:
        StepFailed: a missing context or Dockerfile, a bad name, or the build failed (with
            the builder's message). StepTimedOut / StepCancelled: the build was stopped.
        EngineUnavailable: no Docker engine answers.

    Example:
        ```python
        from prefect import flow
        from ansflow.tasks import docker_build

        @flow
        def image():
            built = docker_build(image_name="my-app", tag="1.0", context="app")
            return built["outputs"]["image_id"]
        ```
    """
    host, _, _ = standalone_docker(host)
    return run_standalone("docker_build", execute_docker_build,
                          config_of(DockerBuildConfig, locals()), timeout=timeout,
                          workspace=workspace)
