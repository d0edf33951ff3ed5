"""The real node's images, built here (nothing can be pulled): FROM-scratch images holding
Debian's static BusyBox, as docker-archive tars that `ctr images import` reads.

- ``localhost/ansflow/pause:1``: the pod sandbox ("pause") image. Its process sleeps until
  TERM or INT and then exits at once.
- ``localhost/ansflow/busybox:1``: a small image for steps and tests (sh and the usual tools
  under /bin).
- ``localhost/ansflow/netprobe:1``: the busybox image plus ``/bin/netprobe`` (built with the
  cluster's binaries from tools/netprobe), an HTTP(S) client that can authenticate with the
  pod's service account and trust only its CA (busybox's wget checks no certificate).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

from ansflow.devcluster.errors import DevClusterError

BUSYBOX = "/bin/busybox"
PAUSE_IMAGE = "localhost/ansflow/pause:1"
BUSYBOX_IMAGE = "localhost/ansflow/busybox:1"
NETPROBE_IMAGE = "localhost/ansflow/netprobe:1"
PAUSE_SCRIPT = 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait; done'


def _add(tar: tarfile.TarFile, name: str, *, data: bytes = b"", mode: int = 0o755,
         kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.mode, info.type = 0, 0, 0, mode, kind
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _layer(busybox: bytes, applets: list[str], extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "var/run"):
            _add(tar, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        _add(tar, "bin/busybox", data=busybox)
        for applet in sorted(set(applets) - {"busybox"}):
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        _add(tar, "etc/passwd", mode=0o644, data=b"root:x:0:0:root:/root:/bin/sh\n"
                                                 b"nobody:x:65534:65534:nobody:/:/bin/false\n")
        _add(tar, "etc/group", mode=0o644, data=b"root:x:0:\nnogroup:x:65534:\n")
        for name, data in sorted((extra or {}).items()):
            _add(tar, name, data=data)
    return buf.getvalue()


def _archive(out: Path, ref: str, layer: bytes, entrypoint: list[str] | None,
             cmd: list[str] | None) -> None:
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Entrypoint": entrypoint, "Cmd": cmd,
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z",
                     "created_by": "ansflow: Debian's busybox-static"}],
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": [layer_name]}]).encode()
    tmp = out.with_suffix(".partial")
    with tarfile.open(tmp, "w") as tar:
        _add(tar, diff_id[7:], kind=tarfile.DIRTYPE)
        _add(tar, layer_name, data=layer, mode=0o644)
        _add(tar, config_name, data=config, mode=0o644)
        _add(tar, "manifest.json", data=manifest, mode=0o644)
    tmp.replace(out)


def build_images(directory: Path, netprobe: Path | None = None) -> dict[str, Path]:
    """The pause and busybox image archives in ``directory`` (built when missing or when
    the host's BusyBox changed), and the netprobe image when its binary is given. Returns
    image reference -> archive path."""
    try:
        busybox = Path(BUSYBOX).read_bytes()
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DevClusterError(f"the real node's images need Debian's busybox-static "
                              f"({BUSYBOX}): {exc}") from None
    key = hashlib.sha256(busybox).hexdigest()[:12]
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {PAUSE_IMAGE: directory / f"pause-{key}.tar",
              BUSYBOX_IMAGE: directory / f"busybox-{key}.tar"}
    probe = b""
    if netprobe is not None:
        try:
            probe = netprobe.read_bytes()
        except OSError as exc:
            raise DevClusterError(f"the netprobe image needs {netprobe}: {exc}") from None
        probe_key = hashlib.sha256(busybox + probe).hexdigest()[:12]
        wanted[NETPROBE_IMAGE] = directory / f"netprobe-{probe_key}.tar"
    if all(p.is_file() for p in wanted.values()):
        return wanted
    layer = _layer(busybox, applets)
    _archive(wanted[PAUSE_IMAGE], PAUSE_IMAGE, layer, ["/bin/sh", "-c", PAUSE_SCRIPT], None)
    _archive(wanted[BUSYBOX_IMAGE], BUSYBOX_IMAGE, layer, None, ["/bin/sh"])
    if netprobe is not None:
        _archive(wanted[NETPROBE_IMAGE], NETPROBE_IMAGE,
                 _layer(busybox, applets, {"bin/netprobe": probe}), ["/bin/netprobe"], None)
    for old in directory.glob("*.tar"):
        if old not in wanted.values():
            os.unlink(old)
    return wanted
