"""The docker_push step: tag for the target registry, push, fail on any error in the stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker.errors

from ansflow.engines.docker import docker_client, encode_auth, engine_error, stream_engine
from ansflow.engines.docker_streams import StreamEvent, image_ref, retarget
from ansflow.errors import StepFailed, StepTransient
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.docker_access import (
    DockerHost,
    DockerRegistryCredentials,
    RegistryAccess,
    docker_base_url,
    resolve_registry,
    standalone_docker,
)
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.spec.steps import DockerPushConfig

# Engine messages meaning "the registry could not be reached": worth a retry.
TRANSIENT_MARKERS = (
    "connection refused", "connection reset", "no such host", "i/o timeout", "eof",
    "broken pipe", "tls handshake timeout", "service unavailable", "bad gateway",
    "timeout exceeded", "502", "503", "504",
)
AUTH_MARKERS = ("no basic auth credentials", "unauthorized", "authentication required",
                "denied", "forbidden")


@dataclass(frozen=True)
class PushPlan:
    """A validated push: the local image, and the repository and tag it is pushed as."""

    source: str
    repository: str
    tag: str
    access: RegistryAccess

    @property
    def target(self) -> str:
        return f"{self.repository}:{self.tag}"


def plan_push(config: DockerPushConfig, block: Any = None, masker: Any = None) -> PushPlan:
    """Validate names and resolve the registry / credentials before talking to the engine.

    Raises:
        StepFailed: a bad image reference, a registry / credentials name that is neither
            a host nor a saved block, or credentials saved for another registry than the
            one pushed to.
    """
    repo, tag = image_ref(config.image, config.tag)
    access = resolve_registry(config.registry, config.credentials, block, masker=masker)
    target_repo = retarget(repo, access.host) if access.host else repo
    access.auth_config(target_repo)  # another registry than the block's: refused here
    return PushPlan(source=f"{repo}:{tag}", repository=target_repo, tag=tag, access=access)


def registry_failure(message: str, what: str, access: RegistryAccess) -> StepFailed:
    """The step error for an ``error`` event of a push / pull stream."""
    lowered = message.lower()
    if any(marker in lowered for marker in AUTH_MARKERS):
        hint = ("give `credentials:` naming a Docker Registry Credentials block"
                if access.username is None
                else f"check the username / password of {access.source}")
        return StepFailed(f"{what} refused by the registry: {message}", hint=hint)
    if any(marker in lowered for marker in TRANSIENT_MARKERS):
        return StepTransient(f"{what} failed, registry unreachable: {message}")
    return StepFailed(f"{what} failed: {message}")


def registry_stream(ctx: StepContext, client: Any, path: str, what: str, access: RegistryAccess,
                    auth: dict[str, str] | None, params: dict[str, str]) -> str | None:
    """A push or pull through the engine: its progress to the step's log, an ``error``
    event failing the step (:func:`registry_failure`); the last digest the stream reported."""
    digest = None

    def seen(event: StreamEvent) -> None:
        nonlocal digest
        digest = event.digest or digest

    stream_engine(client, path, what=what, timeout=ctx.budget(), limit=ctx.timeout,
                  on_cancel=ctx.on_cancel, emit=ctx.emit,
                  fail=lambda message: registry_failure(message, what, access),
                  on_event=seen, params=params, headers={"X-Registry-Auth": encode_auth(auth)})
    return digest


@step_executor
def execute_docker_push(ctx: StepContext, config: DockerPushConfig) -> StepResult:
    """Push an image, tagging it for the target registry first.

    The SDK reports success even when the push failed; here every ``error`` event in the
    stream fails the step with the registry's message, and the digest comes from the
    engine's final ``aux`` event.

    Returns:
        Outputs ``image`` (the pushed reference) and ``digest``.

    Raises:
        StepFailed: a missing image, or the registry refused the push (auth, ...).
        StepTransient: the registry could not be reached (retried per the step's retries).
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel.
        EngineUnavailable: no Docker engine answers.
    """
    plan = plan_push(config, ctx.blocks.get("credentials"), masker=ctx.masker)
    client = docker_client(docker_base_url(config.host))
    what = f"push of {plan.target}"
    try:
        try:
            if plan.target != plan.source:
                client.api.tag(plan.source, plan.repository, plan.tag)
            else:
                client.api.inspect_image(plan.source)
        except docker.errors.ImageNotFound as exc:
            raise StepFailed(f"image {plan.source!r} not found on the Docker engine",
                             hint="build it first with a docker_build step") from exc
        except Exception as exc:  # noqa: BLE001 - translated into the step error tree
            raise engine_error(exc, what) from exc
        ctx.emit(f"pushing {plan.target} ({plan.access.source} access)")
        digest = registry_stream(ctx, client, f"/images/{plan.repository}/push", what,
                                 plan.access, plan.access.auth_config(plan.repository),
                                 {"tag": plan.tag})
    finally:
        client.close()
    if not digest:
        raise StepFailed(f"push of {plan.target}: the engine reported no digest")
    ctx.emit(f"pushed {plan.target}@{digest}")
    return StepResult(outputs={"image": plan.target, "digest": digest})


@step_task("docker_push", execute_docker_push)
def docker_push(
    *,
    image: str,
    tag: str | None = None,
    registry: str | None = None,
    credentials: str | DockerRegistryCredentials | None = None,
    host: str | DockerHost | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Push an image to a registry, tagging it for that registry first.

    Args:
        image: The image reference (``name[:tag]``).
        tag: The tag, when ``image`` has none (default ``latest``).
        registry: A registry ``host[:port]``, or the name of a saved registry credentials
            block.
        credentials: A DockerRegistryCredentials block, or its name (default: anonymous).
        host: The Docker engine: a URL, a DockerHost block or its name (default:
            ``DOCKER_HOST``).
        timeout: Seconds before the push is stopped.

    Returns:
        ``exit_code`` (None) and ``outputs``: ``image`` (the pushed reference) and ``digest``.

    Raises:
        StepFailed: a missing image, or the registry refused access (its message).
        StepTransient: the registry could not be reached (worth a retry).
        StepTimedOut / StepCancelled: stopped at the deadline / on cancel.
        EngineUnavailable: no Docker engine answers.

    Example:
        ```python
        from prefect_docker import DockerRegistryCredentials
        from ansflow.tasks import docker_push

        docker_push(image="my-app:1.0", registry="registry.example.com",
                    credentials=DockerRegistryCredentials.load("prod-registry"))
        ```
    """
    host, blocks, credentials = standalone_docker(host, credentials)
    return run_standalone("docker_push", execute_docker_push, config_of(DockerPushConfig, locals()),
                          timeout=timeout, blocks=blocks)
