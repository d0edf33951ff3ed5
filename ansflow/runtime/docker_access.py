"""How a step's values name Docker hosts and registry credentials, resolved for its engine.

ansflow defines no Docker block: it uses prefect-docker's ``DockerHost`` and
``DockerRegistryCredentials`` blocks (the password is a ``SecretStr``). A step's
``registry:`` or ``credentials:`` value is either the name of a saved
``DockerRegistryCredentials`` block, or a plain registry host (``registry.example.com``,
``127.0.0.1:5000``) for anonymous access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect_docker import DockerHost, DockerRegistryCredentials
from pydantic import SecretStr

from ansflow.blocknames import check_block_name
from ansflow.engines.docker_streams import looks_like_registry, normal_registry, registry_of_image
from ansflow.errors import StepFailed
from ansflow.masking import mask_checked

__all__ = ["DockerHost", "DockerRegistryCredentials", "RegistryAccess", "resolve_registry",
           "docker_base_url", "standalone_docker"]


@dataclass(frozen=True)
class RegistryAccess:
    """Where to push / pull and with which credentials (None: anonymous). ``home`` is the
    registry the credentials were saved for (their block's ``registry_url``, normalized):
    they are only ever sent there."""

    host: str | None
    username: str | None = None
    password: SecretStr | None = None
    source: str = "anonymous"
    home: str | None = None

    def auth_config(self, repository: str | None = None) -> dict[str, str] | None:
        """The engine's X-Registry-Auth payload for a push / pull of ``repository`` (default:
        to ``host``); None for anonymous access.

        Raises:
            StepFailed: the credentials belong to another registry than the one the image
                goes to / comes from (a templated ``registry:`` must not carry a block's
                password to a host the run starter names).
        """
        if self.username is None or self.password is None:
            return None
        target = registry_of_image(repository) if repository else normal_registry(self.host)
        if self.home is None or target != self.home:
            raise StepFailed(
                f"the credentials of {self.source} are saved for registry "
                f"{self.home or '(none)'}, not for {target}, where "
                f"{repository or 'the image'} goes; refused: they are sent only to their "
                "own registry",
                hint="name a credentials block saved for that registry (its registry_url), "
                     "or leave credentials out for anonymous access")
        return {
            "username": self.username,
            "password": self.password.get_secret_value(),
            "serveraddress": self.host or "",
        }


def _host_of(url: str) -> str:
    for scheme in ("https://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    return url.rstrip("/")


def _load_credentials(name: str, what: str) -> DockerRegistryCredentials:
    check_block_name(name, what)
    try:
        return DockerRegistryCredentials.load(name)
    except ValueError as exc:
        raise StepFailed(
            f"{what} {name!r}: no saved Docker Registry Credentials block has that name",
            hint="save one (ansflow docs/docker.md shows how), or give a registry host with a "
                 "dot or a port (e.g. registry.example.com, 127.0.0.1:5000) for anonymous access",
        ) from exc


def resolve_registry(registry: str | None, credentials: str | None,
                     block: DockerRegistryCredentials | None = None,
                     masker: Any = None) -> RegistryAccess:
    """Turn a step's ``registry`` / ``credentials`` values into a :class:`RegistryAccess`.

    Args:
        registry: A registry host, or the name of a saved credentials block, or None.
        credentials: The name of a saved credentials block, or a plain host (anonymous).
        block: A credentials block object (a task called with one); it wins over names.
        masker: The run's ``Masker``; the password is added to it.

    Returns:
        The target host (None: keep the image's own) and the credentials, if any.

    Raises:
        StepFailed: a name that is neither a host nor a saved block, or a password shorter
            than 4 characters.
    """
    access = _resolve(registry, credentials, block)
    password = access.password.get_secret_value() if access.password is not None else None
    mask_checked(masker, [(f"the password of {access.source}", password)])
    return access


def _resolve(registry: str | None, credentials: str | None,
             block: DockerRegistryCredentials | None) -> RegistryAccess:
    host: str | None = None
    access = RegistryAccess(host=None)
    if block is not None:
        host = _host_of(registry) if registry and looks_like_registry(registry) else None
        block_host = _host_of(block.registry_url)
        return RegistryAccess(host=host or block_host, username=block.username,
                              password=block.password, source="the given credentials block",
                              home=normal_registry(block.registry_url))
    for value, what in ((registry, "registry"), (credentials, "credentials")):
        if not value:
            continue
        value = value.strip()
        if looks_like_registry(value):
            host = host or _host_of(value)
            continue
        block = _load_credentials(value, what)
        block_host = _host_of(block.registry_url)
        access = RegistryAccess(
            host=block_host, username=block.username, password=block.password,
            source=f"block {value!r}", home=normal_registry(block.registry_url),
        )
        host = host or block_host
    return RegistryAccess(host=host, username=access.username, password=access.password,
                          source=access.source, home=access.home)


def docker_base_url(host: str | None) -> str | None:
    """The engine address a ``defaults.docker.host`` value means: a URL, or a DockerHost block.

    Args:
        host: ``unix://...`` / ``tcp://...`` / ``ssh://...``, the name of a saved DockerHost
            block, or None (DOCKER_HOST / the docker CLI's context).

    Returns:
        The base URL to connect to, None for the environment's default.
    """
    if not host or "://" in host:
        return host or None
    check_block_name(host, "docker host")
    try:
        return DockerHost.load(host).base_url
    except ValueError as exc:
        raise StepFailed(f"docker host {host!r}: no saved Docker Host block has that name") from exc


def standalone_docker(host: str | DockerHost | None, credentials: Any = None
                      ) -> tuple[str | None, dict, str | None]:
    """For a task called in a user's flow: the engine as a config value (a DockerHost block
    object becomes its address), a credentials block object set aside for the step, and the
    credentials value left for the config."""
    url = host.base_url if isinstance(host, DockerHost) else host
    if isinstance(credentials, DockerRegistryCredentials):
        return url, {"credentials": credentials}, None
    return url, {}, credentials

