"""Pure helpers for the Docker engine: stream parsing, image references, run options.

Nothing here touches a socket; every function is a plain computation with unit tests.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ansflow.engines.errors import EngineError
from ansflow.engines.hostpaths import confine
from ansflow.engines.lines import LineSplitter, clean_line

__all__ = ["LineSplitter", "clean_line"]  # also used from here by the container code


@dataclass(frozen=True)
class StreamEvent:
    """One decoded event of a build / push / pull JSON stream."""

    line: str | None = None
    error: str | None = None
    image_id: str | None = None
    digest: str | None = None


def parse_stream_event(event: dict) -> StreamEvent:
    """Decode one JSON object of the engine's build, push or pull stream.

    ``error`` / ``errorDetail`` are failures (the SDK does not raise on them);
    ``aux.ID`` is the built image id; ``aux.Digest`` the pushed manifest digest.
    Progress-bar events (``progressDetail`` with numbers) are dropped: they are noise in a log.
    """
    if not isinstance(event, dict):
        return StreamEvent(line=clean_line(str(event)))
    if "error" in event or "errorDetail" in event:
        detail = event.get("errorDetail") or {}
        message = event.get("error") or detail.get("message") or "unknown error"
        return StreamEvent(error=clean_line(str(message)).strip())
    aux = event.get("aux")
    if isinstance(aux, dict):
        return StreamEvent(image_id=aux.get("ID"), digest=aux.get("Digest"))
    if "stream" in event:
        text = clean_line(str(event["stream"]))
        return StreamEvent(line=text) if text.strip() else StreamEvent()
    status = event.get("status")
    if status:
        if event.get("progressDetail", {}).get("current") is not None:
            return StreamEvent()
        ident = event.get("id")
        text = f"{ident}: {status}" if ident else str(status)
        digest = None
        match = re.search(r"digest: (sha256:[0-9a-f]{64})", str(status))
        if match:
            digest = match.group(1)
        return StreamEvent(line=clean_line(text), digest=digest)
    return StreamEvent()


def looks_like_registry(component: str) -> bool:
    """Whether the first path component of an image reference is a registry host."""
    return "." in component or ":" in component or component == "localhost"


def split_image_ref(ref: str) -> tuple[str, str | None]:
    """``repo[:tag][@digest]`` -> (repository, tag or None). A digest stays in the repository."""
    ref = ref.strip()
    if not ref or any(c.isspace() for c in ref):
        raise EngineError(f"{ref!r} is not an image reference")
    if "@" in ref:
        return ref, None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1 :] or None
    return ref, None


def image_ref(image: str, tag: str | None) -> tuple[str, str]:
    """(repository, tag) of ``image`` with ``tag`` overriding its own; tag defaults to latest."""
    repo, own_tag = split_image_ref(image)
    if "@" in repo:
        raise EngineError(f"{image!r} names a digest; give a tagged reference instead")
    return repo, tag or own_tag or "latest"


def registry_of(repository: str) -> str | None:
    """The registry host of a repository name, None for Docker Hub short names."""
    first, _, rest = repository.partition("/")
    return first if rest and looks_like_registry(first) else None


# Names of Docker Hub: what an image without a registry, `docker login` without one, and a
# credentials block saved for Docker Hub may each call it.
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io",
                          "registry.hub.docker.com", "hub.docker.com"})


def normal_registry(value: str | None) -> str:
    """A registry as one comparable host[:port]: scheme and path dropped, lower case, the
    default port (443; 80 with http://) dropped, Docker Hub's names (and no name) as
    ``docker.io``. ``https://Index.Docker.io/v1/`` and ``docker.io`` are one registry;
    ``reg.example.com:443`` and ``reg.example.com`` too; ``localhost`` and ``127.0.0.1`` not."""
    text = (value or "").strip().lower()
    default_ports = (":443",)
    for scheme, ports in (("https://", (":443",)), ("http://", (":80",))):
        if text.startswith(scheme):
            text, default_ports = text[len(scheme):], ports
    text = text.split("/", 1)[0]
    for port in default_ports:
        if text.endswith(port):
            text = text[: -len(port)]
    if not text or text in _HUB_ALIASES:
        return DOCKER_HUB
    return text


def registry_of_image(repository: str) -> str:
    """The normalized registry an image reference is pushed to / pulled from (Docker Hub for
    a short name)."""
    return normal_registry(registry_of(repository.split("@", 1)[0]))


def retarget(repository: str, registry: str) -> str:
    """The repository name under ``registry`` (its own registry, if any, replaced)."""
    registry = registry.strip().rstrip("/")
    for scheme in ("https://", "http://"):
        if registry.startswith(scheme):
            registry = registry[len(scheme) :]
    if not registry or "/" in registry.split(":")[0]:
        raise EngineError(f"{registry!r} is not a registry host[:port]")
    own = registry_of(repository)
    path = repository[len(own) + 1 :] if own else repository
    return f"{registry}/{path}"


def command_argv(command: str | list[str] | None, what: str = "command") -> list[str] | None:
    """A container command as argv: a string is split like a shell would (no shell runs)."""
    if command is None:
        return None
    if isinstance(command, list):
        return [str(c) for c in command]
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise EngineError(f"{what} {command!r} cannot be split into arguments: {exc}") from exc
    if not argv:
        raise EngineError(f"{what} is empty")
    return argv


def volume_binds(volumes: list[str] | dict[str, str], workspace: str) -> list[str]:
    """Docker bind strings as they stand now; relative host paths (./x, ../x, a/b) resolve
    against the workspace (see ``ansflow.engines.docker_mounts``, which a container step
    uses to check them again at use).

    A host part without a slash and not starting with a dot is a named volume, as with
    ``docker run -v``. A host path must lie inside the workspace (symlinks followed) or
    under a root of the worker's ANSFLOW_ALLOWED_HOST_PATHS (``ansflow.paths``).
    """
    from ansflow.engines.docker_mounts import parse_volumes  # noqa: PLC0415

    return [m.bind(m.source if m.volume else confine(m.source, workspace, "host path"))
            for m in parse_volumes(volumes, workspace)]


def port_bindings(ports: list[str] | dict[str, int | str]) -> dict[str, object]:
    """docker-py ``ports`` from "8080:80", "127.0.0.1:8080:80/tcp", "80" or {container: host}."""
    result: dict[str, object] = {}
    if isinstance(ports, dict):
        for container, host in ports.items():
            try:
                result[_port_key(str(container))] = int(host) if str(host).isdigit() else host
            except ValueError:
                raise EngineError(f"port {container!r} is not 'number[/tcp|udp]'") from None
        return result
    for item in ports:
        parts = str(item).split(":")
        try:
            if len(parts) == 1:
                result[_port_key(parts[0])] = None
            elif len(parts) == 2:
                result[_port_key(parts[1])] = int(parts[0]) if parts[0] else None
            elif len(parts) == 3:
                result[_port_key(parts[2])] = (parts[0], int(parts[1]) if parts[1] else None)
            else:
                raise ValueError
        except ValueError:
            raise EngineError(
                f"port {item!r} is not '[ip:]host:container[/proto]' or 'container'"
            ) from None
    return result


def _port_key(container: str) -> str:
    number, _, proto = container.partition("/")
    if not number.isdigit() or proto not in ("", "tcp", "udp", "sctp"):
        raise ValueError(container)
    return f"{number}/{proto or 'tcp'}"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
