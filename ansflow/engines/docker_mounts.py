"""What a container step may mount: host paths (confined) and named volumes (plain ones).

A docker_run ``volumes`` entry is a host path (``./x``, ``a/b``, ``/abs``: inside the
workspace or under a root of ``ANSFLOW_ALLOWED_HOST_PATHS``) or the name of a Docker volume
(no slash, not starting with a dot, as with ``docker run -v``). Both are checked twice: when
the step starts (``parse_volumes``: a clear error before anything is pulled) and again at
use (``binds_at_use``: right before the container is created, after the image pull), because
a parallel step may have swapped a directory for a symlink meanwhile, or a volume may have
been made since. At use, each host path is resolved again and the resolved path is what the
engine receives.

A named volume is a host path in disguise when it has driver options (``docker volume
create --opt type=none --opt o=bind --opt device=/etc``) or another driver (a plugin
mounting anything). So a step may mount a named volume only when it is a plain volume of
the engine (driver ``local``, no options: a directory Docker made under its own data root;
a missing one is created so) or when the worker's operator names it in
``ANSFLOW_ALLOWED_VOLUMES`` (separated by ``:`` or ``,``). A run form, a step's output or the
pipeline file cannot widen that list.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from ansflow.engines.errors import EngineError
from ansflow.engines.hostpaths import ALLOWED_HOST_PATHS_ENV, confine

ALLOWED_VOLUMES_ENV = "ANSFLOW_ALLOWED_VOLUMES"
# Docker's own rule for volume names (daemon/names: RestrictedNameChars), bounded.
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{1,254}")
_MODES = frozenset({"ro", "rw", "z", "Z"})


@dataclass(frozen=True)
class Mount:
    """One ``volumes`` entry: ``source`` as written (a host path, relative to the workspace,
    or a volume name), ``target`` in the container, the ``mode`` suffix if any."""

    item: str
    source: str
    target: str
    mode: str | None
    volume: bool

    def bind(self, source: str) -> str:
        return ":".join([source, self.target, *([self.mode] if self.mode else [])])


def allowed_volumes() -> frozenset[str]:
    """The named volumes the worker's operator allows whatever their driver and options."""
    raw = os.environ.get(ALLOWED_VOLUMES_ENV, "")
    return frozenset(v.strip() for v in re.split(r"[:,]", raw) if v.strip())


def is_volume_name(source: str) -> bool:
    """True when a ``volumes`` source names a Docker volume rather than a host path."""
    return not source.startswith(".") and "/" not in source


def parse_volumes(volumes: list[str] | dict[str, str], workspace: str) -> list[Mount]:
    """The ``volumes`` entries, each checked on its face: the form, an absolute container
    path, the mode, a valid volume name, a host path inside the workspace or an allowed root
    (symlinks followed; checked again at use).

    Raises:
        EngineError: a malformed entry, or a host path outside.
    """
    items = ([f"{host}:{target}" for host, target in volumes.items()]
             if isinstance(volumes, dict) else list(volumes))
    mounts = []
    for item in items:
        parts = str(item).split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise EngineError(f"volume {item!r} is not 'host:container[:ro|rw]'")
        source, target = parts[0], parts[1]
        if not target.startswith("/"):
            raise EngineError(f"volume {item!r}: the container path must be absolute")
        mode = parts[2] if len(parts) == 3 else None
        if mode is not None and not set(mode.split(",")) <= _MODES:
            raise EngineError(f"volume {item!r}: mode must be ro or rw")
        volume = is_volume_name(source)
        if volume and not _VOLUME_NAME.fullmatch(source):
            raise EngineError(f"volume {item!r}: {source!r} is neither a host path (start it "
                             "with ./ or /) nor a Docker volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)")
        if not volume:
            confine(source, workspace, f"volume {item!r}: host path")
        mounts.append(Mount(item, source, target, mode, volume))
    return mounts


def binds_at_use(client: Any, mounts: list[Mount], workspace: str) -> list[str]:
    """The engine's bind strings for ``mounts``, checked now, just before the container is
    created: each host path resolved again (the resolved path is what is bound), each
    named volume inspected (and created plain when missing).

    Raises:
        EngineError: a host path now outside, or a volume that is not plain and not allowed.
    """
    binds = []
    for mount in mounts:
        if mount.volume:
            check_volume(client, mount)
            binds.append(mount.bind(mount.source))
        else:
            binds.append(mount.bind(confine(mount.source, workspace,
                                            f"volume {mount.item!r}: host path")))
    return binds


def check_volume(client: Any, mount: Mount) -> None:
    """Refuse a named volume that can reach the host or a remote share, unless allowed.

    Raises:
        EngineError: the volume has driver options or a driver other than ``local``.
    """
    import docker.errors  # noqa: PLC0415

    name = mount.source
    if name in allowed_volumes():
        return
    try:
        info = client.api.inspect_volume(name)
    except docker.errors.NotFound:
        # Made here rather than by the container create, so what is judged below is what
        # the container gets (a plain volume, or whatever someone made meanwhile).
        client.api.create_volume(name, driver="local")
        info = client.api.inspect_volume(name)
    driver = str(info.get("Driver") or "")
    options = info.get("Options") or {}
    if driver == "local" and not options:
        return
    what = f"driver {driver!r}" if driver != "local" else \
        f"driver options ({', '.join(sorted(str(k) for k in options))})"
    raise EngineError(
        f"volume {mount.item!r}: the Docker volume {name!r} has {what}, so it may mount a "
        f"host path or a share; steps mount only plain local volumes unless the worker's "
        f"operator allows the volume in {ALLOWED_VOLUMES_ENV} (host paths: "
        f"{ALLOWED_HOST_PATHS_ENV})")
