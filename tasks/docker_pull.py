"""The docker_pull step: pull an image (anonymously or with a credentials block)."""

from __future__ import annotations

from ansflow.engines.docker import docker_client, engine_error
from ansflow.engines.docker_streams import image_ref, registry_of, retarget
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.docker_access import (
    DockerHost,
    DockerRegistryCredentials,
    docker_base_url,
    resolve_registry,
    standalone_docker,
)
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.spec.steps import DockerPullConfig
from ansflow.tasks.docker_push import registry_stream


@step_executor
def execute_docker_pull(ctx: StepContext, config: DockerPullConfig) -> StepResult:
    """Pull an image; with ``registry:`` a short name is pulled from that registry.

    Returns:
        Outputs ``image`` (the pulled reference), ``image_id`` and ``digest``.

    Raises:
        StepFailed: the image does not exist, the registry refused access, or the credentials
            were saved for another registry than the one pulled from.
        StepTransient: the registry could not be reached.
        StepTimedOut / StepCancelled: stopped by the deadline or a cancel.
        EngineUnavailable: no Docker engine answers.
    """
    repo, tag = image_ref(config.image, config.tag)
    access = resolve_registry(config.registry, config.credentials, ctx.blocks.get("credentials"),
                              masker=ctx.masker)
    if access.host and registry_of(repo) != access.host:
        repo = retarget(repo, access.host)
    reference = f"{repo}:{tag}"
    auth = access.auth_config(repo)  # another registry than the block's: refused here
    client = docker_client(docker_base_url(config.host))
    what = f"pull of {reference}"
    try:
        ctx.emit(f"pulling {reference} ({access.source} access)")
        digest = registry_stream(ctx, client, "/images/create", what, access, auth,
                                 {"fromImage": repo, "tag": tag})
        try:
            info = client.api.inspect_image(reference)
        except Exception as exc:  # noqa: BLE001 - translated into the step error tree
            raise engine_error(exc, what) from exc
    finally:
        client.close()
    for repo_digest in info.get("RepoDigests") or []:
        name, _, value = repo_digest.partition("@")
        if name == repo:
            digest = value
    return StepResult(outputs={"image": reference, "image_id": info["Id"],
                               "digest": digest or ""})


@step_task("docker_pull", execute_docker_pull)
def docker_pull(
    *,
    image: str,
    tag: str | None = None,
    registry: str | None = None,
    credentials: str | DockerRegistryCredentials | None = None,
    host: str | DockerHost | None = None,
    timeout: float | None = None,
) -> StepOutput:
    """Pull an image from a registry.

    Args:
        image: The image reference (``name[:tag]``).
        tag: The tag, when ``image`` has none (default ``latest``).
        registry: A registry ``host[:port]``, or the name of a saved registry credentials
            block.
        credentials: A DockerRegistryCredentials block, or its name (default: anonymous).
        host: The Docker engine: a URL, a DockerHost block or its name (default:
            ``DOCKER_HOST``).
        timeout: Seconds before the pull is stopped.

    Returns:
        ``exit_code`` (None) and ``outputs``: ``image`` (the pulled reference),
        ``image_id`` and ``digest``.

    Raises:
        StepFailed: a missing image, or the registry refused access (its message).
        StepTransient: the registry could not be reached (worth a retry).
        StepTimedOut / StepCancelled: stopped at the deadline / on cancel.
        EngineUnavailable: no Docker engine answers.

    Example:
        ```python
        from prefect_docker import DockerRegistryCredentials
        from ansflow.tasks import docker_pull

        docker_pull(image="my-app:1.0", registry="registry.example.com",
                    credentials=DockerRegistryCredentials.load("prod-registry"))
        ```
    """
    host, blocks, credentials = standalone_docker(host, credentials)
    return run_standalone("docker_pull", execute_docker_pull, config_of(DockerPullConfig, locals()),
                          timeout=timeout, blocks=blocks)
