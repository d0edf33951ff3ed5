"""The docker_run step, and `runs_on: docker` for command and script steps.

Both run a labelled container under the step's deadline with live logs, kill it on timeout
or cancel, and always remove it (see ``ansflow.engines.docker_container``).
"""

from __future__ import annotations

import time

from ansflow.engines.docker_container import ContainerOutcome, ContainerSpec, run_container
from ansflow.engines.docker_mounts import parse_volumes
from ansflow.engines.docker_streams import command_argv, port_bindings
from ansflow.errors import StepCancelled, StepFailed, StepTimedOut
from ansflow.runtime.base import StepContext, StepResult, step_executor
from ansflow.runtime.docker_access import DockerHost, docker_base_url, standalone_docker
from ansflow.runtime.public import StepOutput, config_of, run_standalone, step_task
from ansflow.spec.steps import DockerRunConfig


def _deadline(ctx: StepContext, own_timeout: float | None):
    """A function giving the seconds left under ``ctx.budget(own_timeout)``, from now."""
    budget = ctx.budget(own_timeout)
    end = None if budget is None else time.monotonic() + budget
    return lambda: None if end is None else end - time.monotonic()


def _limit(ctx: StepContext, own_timeout: float | None) -> str:
    limits = [x for x in (ctx.timeout, own_timeout) if x is not None]
    return f"{min(limits):g} s" if limits else "?"


def _run(ctx: StepContext, spec: ContainerSpec, own_timeout: float | None,
         host: str | None) -> ContainerOutcome:
    outcome = run_container(
        spec,
        emit=lambda line, stream: ctx.emit(line, stream=stream),
        deadline=_deadline(ctx, own_timeout),
        stopped=lambda: ctx.cancelled,
        on_stop=ctx.on_cancel,
        base_url=docker_base_url(host),
        masker=ctx.masker,
    )
    short = outcome.container_id[:12]
    if outcome.stopped and not short:
        what = "timed out" if outcome.stopped == "timeout" else "was cancelled"
        error = StepTimedOut if outcome.stopped == "timeout" else StepCancelled
        raise error(f"the step {what} while pulling {spec.image}; no container was started")
    if outcome.stopped == "timeout":
        raise StepTimedOut(
            f"container {short} ({spec.image}) still running after {_limit(ctx, own_timeout)}: "
            "killed and removed"
        )
    if outcome.stopped == "cancelled":
        raise StepCancelled(f"container {short} ({spec.image}) stopped: the run was cancelled")
    return outcome


def build_spec(ctx: StepContext, config: DockerRunConfig) -> ContainerSpec:
    """Validate a docker_run config into a container spec (no engine I/O; host paths and
    volumes are checked again right before the container is created).

    Raises:
        StepFailed: an unsplittable command, or a malformed volume or port.
    """
    return ContainerSpec(
        image=config.image,
        command=command_argv(config.command),
        entrypoint=command_argv(config.entrypoint, "entrypoint"),
        env={**config.env},
        mounts=parse_volumes(config.volumes, ctx.workspace),
        workspace=ctx.workspace,
        ports=port_bindings(config.ports),
        working_dir=config.working_dir,
        network=config.network,
        user=config.user,
        labels=ctx.labels,
        name_hint=ctx.labels["ansflow.dev/step"][:40],
        keep=not config.remove,
    )


@step_executor
def execute_docker_run(ctx: StepContext, config: DockerRunConfig) -> StepResult:
    """Run a container to completion with live logs; its exit code is the step's.

    Returns:
        Outputs ``exit_code`` and ``container_id``.

    Raises:
        StepFailed: bad input, a missing image, or a non-zero exit (``exit_code`` set).
        StepTimedOut: the container outlived the step or config timeout (killed, removed).
        StepCancelled: the run was cancelled (container killed and removed).
        EngineUnavailable: no Docker engine answers.
    """
    spec = build_spec(ctx, config)
    ctx.emit(f"running {spec.image}" + (f" {' '.join(spec.command)}" if spec.command else ""))
    outcome = _run(ctx, spec, config.timeout, config.host)
    outputs = {"exit_code": str(outcome.exit_code), "container_id": outcome.container_id}
    if outcome.exit_code != 0:
        tail = "; last output: " + " | ".join(outcome.last_lines[-3:]) if outcome.last_lines else ""
        raise StepFailed(f"container exited with code {outcome.exit_code}{ctx.masker(tail)}",
                         exit_code=outcome.exit_code)
    return StepResult(exit_code=outcome.exit_code, outputs=outputs)


def run_in_container(
    ctx: StepContext, *, image: str, argv: list[str], working_dir: str, env: dict[str, str],
    host: str | None = None, extra_binds: list[str] | None = None,
) -> int:
    """Run ``argv`` in a container of ``image`` with the workspace mounted at the same path.

    Used by command and script steps with ``runs_on: docker``.

    Args:
        ctx: The step's context; its deadline, cancellation and labels apply.
        image: The container image (must exist on the engine or name a registry).
        argv: The command to run (no shell unless argv starts one).
        working_dir: Directory inside the container (absolute; usually under the workspace).
        env: Environment of the process.
        host: The engine: an address or a DockerHost block name (None: DOCKER_HOST).
        extra_binds: More ``host:container`` binds (the step's private scratch directory).

    Returns:
        The container's exit code.

    Raises:
        StepTimedOut: past the step's deadline (container killed and removed).
        StepCancelled: the run was cancelled (container killed and removed).
        StepFailed: a missing image, or the engine refused to run the command.
        EngineUnavailable: no Docker engine answers.
    """
    if not argv:
        raise StepFailed("nothing to run: the command is empty")
    spec = ContainerSpec(
        image=image,
        command=list(argv),
        entrypoint=[],
        env=dict(env),
        binds=[f"{ctx.workspace}:{ctx.workspace}", *(extra_binds or [])],
        working_dir=working_dir,
        labels=ctx.labels,
        name_hint=ctx.labels["ansflow.dev/step"][:40],
    )
    return int(_run(ctx, spec, None, host).exit_code or 0)


@step_task("docker_run", execute_docker_run)
def docker_run(
    *,
    image: str,
    command: str | list[str] | None = None,
    entrypoint: str | list[str] | None = None,
    env: dict[str, str] | None = None,
    volumes: list[str] | dict[str, str] | None = None,
    ports: list[str] | dict[str, int | str] | None = None,
    working_dir: str | None = None,
    network: str | None = None,
    user: str | None = None,
    timeout: float | None = None,
    remove: bool = True,
    host: str | DockerHost | None = None,
    workspace: str | None = None,
) -> StepOutput:
    """Run a container to completion with live logs; it is always removed afterwards.

    Args:
        image: The image (pulled when missing and the name includes a registry).
        command: The command: a string (split as a shell would) or an argv list.
        entrypoint: Override the image's entrypoint.
        env: Environment variables of the container.
        volumes: ``host:container[:ro]`` strings or ``{host: container}``; relative host
            paths start at ``workspace``.
        ports: ``host:container`` port mappings.
        working_dir: Working directory inside the container.
        network: Network to attach to.
        user: User to run as.
        timeout: Seconds before the container is killed and removed.
        remove: Remove the container at the end (always done on timeout and cancel).
        host: The Docker engine: a URL, a DockerHost block or its name (default:
            ``DOCKER_HOST``).
        workspace: The directory relative paths start from (default: the current directory).

    Returns:
        ``exit_code`` (0) and ``outputs``: ``exit_code`` and ``container_id``.

    Raises:
        StepFailed: a missing image, bad input, or a non-zero exit (``exit_code`` set).
        StepTimedOut / StepCancelled: the container was killed and removed.
        EngineUnavailable: no Docker engine answers.

    Example:
        ```python
        from ansflow.tasks import docker_run

        docker_run(image="my-app:1.0", command=["./run-tests", "--fast"], timeout=600)
        ```
    """
    host, _, _ = standalone_docker(host)
    return run_standalone("docker_run", execute_docker_run, config_of(DockerRunConfig, locals()),
                          workspace=workspace)
