"""Run one container to completion, safely: create -> attach -> start -> wait -> remove.

The SDK's ``containers.run()`` leaks the container on errors and cancels, and its
``wait(timeout)`` is only an HTTP read timeout. Here the caller's deadline and stop flag are
checked every poll, the container is killed on either, and it is always removed (unless the
caller asked to keep a container that finished by itself). Output is streamed as lines with
bounded memory and a bounded log volume. Nothing here knows about pipelines.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker
import docker.errors
import requests

from ansflow.engines.docker import (
    docker_client,
    encode_auth,
    engine_error,
    stream_engine,
)
from ansflow.engines.docker_mounts import Mount, binds_at_use
from ansflow.engines.docker_streams import (
    LineSplitter,
    registry_of,
    split_image_ref,
)
from ansflow.engines.errors import EngineCancelled, EngineError, EngineTimedOut

POLL_SECONDS = 0.5
DRAIN_SECONDS = 30.0
# A container's argv and environment travel through the engine's JSON, containerd and runc.
# An executable name far past PATH_MAX makes the runtime's error never come back: the start
# call hangs for minutes and leaves a "Created" container that only an engine restart removes.
# These bounds are checked before any request, so a run-form value cannot wedge a shared engine.
MAX_ARGV_ENV_BYTES = 64 * 1024
MAX_EXECUTABLE_BYTES = 4096
PREVIEW_CHARS = 60


@dataclass
class ContainerSpec:
    """What to run; argv already validated by the caller. ``binds`` are ansflow's own (the
    workspace, a step's scratch directory); ``mounts`` are the step's ``volumes``, checked
    again right before the container is created (relative to ``workspace``)."""

    image: str
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    binds: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    workspace: str = "."
    ports: dict[str, object] = field(default_factory=dict)
    working_dir: str | None = None
    network: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    name_hint: str = "step"
    keep: bool = False


@dataclass
class ContainerOutcome:
    """How the container ended. ``stopped`` is "timeout", "cancelled" or None."""

    exit_code: int | None
    container_id: str
    stopped: str | None
    last_lines: list[str]


class _OutputPump(threading.Thread):
    """Reads the attach stream and hands out lines (the caller's emit applies the log cap)."""

    def __init__(self, stream, emit: Callable[[str, str], None], masker: Any = None) -> None:
        super().__init__(daemon=True, name="ansflow-docker-output")
        self._stream = stream
        self._emit = emit
        self._masker = masker
        self.last: collections.deque[str] = collections.deque(maxlen=5)
        self.error: Exception | None = None

    def _out(self, line: str, stream: str) -> None:
        self._emit(line, stream)
        self.last.append(line)

    def run(self) -> None:
        splitters = {name: LineSplitter(masker=self._masker) for name in ("stdout", "stderr")}
        try:
            for out, err in self._stream:
                for data, name in ((out, "stdout"), (err, "stderr")):
                    if data:
                        for line in splitters[name].feed(data):
                            self._out(line, name)
        except Exception as exc:  # noqa: BLE001 - a broken stream must not kill the step
            self.error = exc
        finally:
            for name, splitter in splitters.items():
                for line in splitter.flush():
                    self._out(line, name)


def ensure_image(
    client: docker.DockerClient,
    image: str,
    *,
    deadline: Callable[[], float | None],
    on_stop: Callable[[Callable[[], None]], Callable[[], None]],
) -> str | None:
    """Make sure ``image`` is present; pull it (anonymously) when it names a registry.

    Returns:
        None, or "timeout" / "cancelled" when the pull was stopped.

    Raises:
        EngineError: the image is not here and cannot be pulled.
    """
    try:
        client.api.inspect_image(image)
        return None
    except docker.errors.ImageNotFound:
        pass
    repo, tag = split_image_ref(image)
    if registry_of(repo) is None:
        raise EngineError(
            f"image {image!r} not found on the Docker engine",
            hint="build it first with a docker_build step, or pull it with docker_pull",
        )
    params = {"fromImage": repo, "tag": tag or "latest"} if "@" not in repo else {
        "fromImage": repo}
    try:
        stream_engine(client, "/images/create", what=f"pull of {image}", timeout=deadline(),
                      on_cancel=on_stop, params=params,
                      headers={"X-Registry-Auth": encode_auth(None)},
                      fail=lambda message: EngineError(
                          f"image {image!r} not found locally and the pull failed: {message}"))
    except EngineTimedOut:
        return "timeout"
    except EngineCancelled:
        return "cancelled"
    return None


def _size(text: str) -> int:
    # surrogatepass: a non-UTF-8 byte from argv or the environment is a lone surrogate here.
    return len(text.encode("utf-8", "surrogatepass"))


def _preview(text: str) -> str:
    return repr(text[:PREVIEW_CHARS]) + ("..." if len(text) > PREVIEW_CHARS else "")


def check_spec_size(spec: ContainerSpec) -> None:
    """Refuse a command, entrypoint and environment too large to hand to the engine.

    Raises:
        EngineError: the executable name (the first word of the entrypoint, else of the
            command) is over ``MAX_EXECUTABLE_BYTES``, or argv and environment together
            (``KEY=value`` each) are over ``MAX_ARGV_ENV_BYTES``.
    """
    for name, argv in (("entrypoint", spec.entrypoint), ("command", spec.command)):
        if argv and _size(argv[0]) > MAX_EXECUTABLE_BYTES:
            raise EngineError(
                f"the container's {name} starts with a word of {_size(argv[0])} bytes "
                f"({_preview(argv[0])}), longer than the {MAX_EXECUTABLE_BYTES} bytes an "
                "executable name may have",
                hint="pass long data in a file in the workspace, not on the command line")
        if argv:
            break  # the first non-empty one names the executable
    total = sum(_size(word) + 1 for word in [*(spec.entrypoint or ()), *(spec.command or ())])
    total += sum(_size(key) + _size(value) + 2 for key, value in spec.env.items())
    if total > MAX_ARGV_ENV_BYTES:
        raise EngineError(
            f"the container's command, entrypoint and environment take {total} bytes, more "
            f"than the {MAX_ARGV_ENV_BYTES} bytes allowed",
            hint="pass long data in a file in the workspace, not on the command line or in "
                 "the environment")


def _remove_quietly(container_id: str, base_url: str | None) -> None:
    """Kill and remove a container with a client of its own (called from other threads)."""
    try:
        client = docker_client(base_url, timeout=30)
    except EngineError:
        return
    try:
        client.api.remove_container(container_id, force=True, v=True)
    except docker.errors.APIError:
        pass
    finally:
        client.close()


def _remove_and_confirm(client: docker.DockerClient, container_id: str) -> None:
    """Remove a container and wait until it is gone (a cancel cleanup may be removing it).

    A busy engine can answer "removal already in progress" or time out while another
    thread's removal runs; both mean: ask again until the engine says it is gone (60 s)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.api.remove_container(container_id, force=True, v=True)
        except docker.errors.NotFound:
            return
        except requests.ConnectionError:
            return  # the engine is gone: nothing more to do here (cleanup --docker later)
        except (docker.errors.APIError, requests.RequestException):
            pass  # "removal already in progress": poll until it is done
        try:
            client.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return
        except requests.ConnectionError:
            return
        except (docker.errors.APIError, requests.RequestException):
            pass
        time.sleep(0.1)


def run_container(
    spec: ContainerSpec,
    *,
    emit: Callable[[str, str], None],
    deadline: Callable[[], float | None],
    stopped: Callable[[], bool],
    on_stop: Callable[[Callable[[], None]], Callable[[], None]],
    base_url: str | None = None,
    masker: Any = None,
) -> ContainerOutcome:
    """Run ``spec`` to completion under a deadline, streaming its output.

    Args:
        spec: The container to run.
        emit: Called with (line, "stdout"|"stderr") for every output line.
        deadline: Seconds left (None: no deadline), asked at every poll.
        stopped: True once the caller wants everything stopped (run cancelled).
        on_stop: Registers a cleanup run when the caller stops; returns an unregister function.
        base_url: Engine address (default: DOCKER_HOST / the CLI's context).
        masker: The run's ``Masker``: a long output line is never cut inside a secret.

    Returns:
        The exit code (None when killed), the container id, why it was stopped if it was,
        and its last output lines.

    Raises:
        EngineError: the engine refused to create or start the container (e.g. no such
            executable: exit code 127), or the image is missing; or the command,
            entrypoint and environment are too large (``check_spec_size``, before any
            request to the engine).
        EngineUnreachable: no engine answers.
    """
    check_spec_size(spec)
    client = docker_client(base_url)
    container_id = ""
    unregister: Callable[[], None] = lambda: None  # noqa: E731
    pump: _OutputPump | None = None
    outcome_stop: str | None = None
    exit_code: int | None = None
    try:
        outcome_stop = ensure_image(client, spec.image, deadline=deadline, on_stop=on_stop)
        if outcome_stop is not None:
            return ContainerOutcome(None, "", outcome_stop, [])
        # After the pull, right before the create: what a parallel step changed meanwhile
        # (a directory swapped for a symlink, a volume made) is seen here.
        binds = [*spec.binds, *binds_at_use(client, spec.mounts, spec.workspace)]
        host_config = client.api.create_host_config(
            binds=binds or None, port_bindings=spec.ports or None,
            network_mode=spec.network,
            # A setuid binary in the image cannot gain privileges the container lacks.
            security_opt=["no-new-privileges"],
        )
        created = client.api.create_container(
            spec.image, command=spec.command, entrypoint=spec.entrypoint,
            environment=spec.env or None, working_dir=spec.working_dir, user=spec.user,
            labels=spec.labels, host_config=host_config, ports=list(spec.ports) or None,
            name=f"ansflow-{spec.name_hint}-{uuid.uuid4().hex[:8]}", detach=True, tty=False,
        )
        container_id = created["Id"]
        unregister = on_stop(lambda: _remove_quietly(container_id, base_url))
        stream = client.api.attach(container_id, stream=True, logs=True, demux=True)
        pump = _OutputPump(stream, emit, masker)
        pump.start()
        client.api.start(container_id)
        exit_code, outcome_stop = _wait(client, container_id, deadline, stopped)
        if outcome_stop is None:
            # Exited by itself: let the pump drain what the engine still has buffered
            # before the removal below cuts the stream.
            pump.join(timeout=DRAIN_SECONDS)
    except docker.errors.APIError as exc:
        if stopped():
            outcome_stop = "cancelled"
        else:
            error = engine_error(exc, f"running {spec.image}")
            if "executable file not found" in str(error) or "no such file" in str(error):
                error.exit_code = 127
            raise error from exc
    except requests.RequestException as exc:
        raise engine_error(exc, f"running {spec.image}") from exc
    finally:
        if container_id and (outcome_stop or not spec.keep or exit_code is None):
            _remove_and_confirm(client, container_id)
        unregister()
        if pump is not None:
            pump.join(timeout=5)
        client.close()
    return ContainerOutcome(exit_code, container_id, outcome_stop,
                            list(pump.last) if pump else [])


def _wait(client, container_id: str, deadline, stopped) -> tuple[int | None, str | None]:
    """Poll for the exit; kill on deadline or stop. Returns (exit code, stop reason)."""
    while True:
        if stopped():
            return None, "cancelled"
        left = deadline()
        if left is not None and left <= 0:
            try:
                client.api.kill(container_id)
            except docker.errors.APIError:
                pass
            return None, "timeout"
        poll = POLL_SECONDS if left is None else max(0.05, min(POLL_SECONDS, left))
        try:
            result = client.api.wait(container_id, timeout=poll)
        except (requests.ReadTimeout, requests.ConnectionError) as exc:
            if "timed out" not in str(exc).lower():
                raise
            continue
        except docker.errors.NotFound:
            # Removed under us: only a cancel cleanup does that.
            return None, "cancelled"
        if stopped():
            return None, "cancelled"
        return int(result.get("StatusCode", -1)), None

