"""Removing what a real node left: its shims and every process in its cgroups, the mounts
under its directories, its bridge, its CNI results, its container log links, its cgroups and
its runtime state (nothing of another node's)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from ansflow.devcluster.errors import DevClusterError
from ansflow.devcluster.realnode_files import NodeSettings, node_dir, runtime_dir, socket_path
from ansflow.devcluster.state import ClusterPaths


def hierarchies() -> list[Path]:
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():  # cgroup v2: one tree
        return [base]
    return [p for p in base.iterdir()
            if p.is_dir() and not p.is_symlink() and p.name != "unified"]


def mounts_under(prefixes: list[Path]) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            target = line.split()[4].replace("\\040", " ")
            if any(target == str(p) or target.startswith(f"{p}/") for p in prefixes):
                found.append(target)
    return found


def shims(key: str) -> list[int]:
    """The containerd shims of this node's containerd (their argv names its socket)."""
    needle = f"\0-address\0{socket_path(key)}\0".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in cmdline.split(b"\0")[0] and needle in cmdline:
                    pids.append(int(entry.name))
    return pids


def _shim_sockets(pids: list[int]) -> list[str]:
    """The /run/containerd/s/... sockets the shims listen on (removed with them)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        inodes[link[8:-1]] = pid
    found = []
    with contextlib.suppress(OSError), open("/proc/net/unix") as fh:
        for line in fh.readlines()[1:]:
            parts = line.split()
            if len(parts) >= 8 and parts[6] in inodes and parts[7].startswith("/run/containerd/s/"):
                found.append(parts[7])
    return found


def cleanup(paths: ClusterPaths, node: NodeSettings) -> None:
    """Remove what a real node left running or mounted (nothing of another node's)."""
    pids = shims(node.key)
    sockets = _shim_sockets(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for hierarchy in hierarchies():
        for procs in (hierarchy / node.cgroup).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                for pid in procs.read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    for sock in sockets:
        with contextlib.suppress(OSError):
            os.unlink(sock)
    prefixes = [node_dir(paths), runtime_dir(node.key)]
    for target in sorted(mounts_under(prefixes), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    if subprocess.run(["ip", "link", "show", node.bridge], capture_output=True).returncode == 0:
        subprocess.run(["ip", "link", "delete", node.bridge], capture_output=True)
    # libcni's result cache, /var/lib/cni/results/<network>-<sandbox id>-<interface>: this
    # node's network, and containerd's loopback network of this node's sandboxes.
    sandboxes = {d.name for base in (runtime_dir(node.key) / "state", node_dir(paths) /
                                     "containerd")
                 for d in (base / "io.containerd.grpc.v1.cri" / "sandboxes").glob("*")}
    for result in Path("/var/lib/cni/results").glob("*"):
        parts = result.name.rsplit("-", 2)
        if result.name.startswith(f"{node.network}-") or (
                len(parts) == 3 and parts[1] in sandboxes):
            with contextlib.suppress(OSError):
                result.unlink()
    with contextlib.suppress(OSError):
        for link in Path("/var/log/containers").iterdir():
            if link.is_symlink() and os.readlink(link).startswith(f"{node_dir(paths)}/"):
                link.unlink()
    deadline = time.monotonic() + 5
    for hierarchy in hierarchies():
        top = hierarchy / node.cgroup
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            while time.monotonic() < deadline:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)  # its last processes are still exiting
        with contextlib.suppress(OSError):
            top.rmdir()
    if mounts_under(prefixes):
        raise DevClusterError(f"the real node left mounts under {node_dir(paths)} that "
                              "cannot be unmounted: see `findmnt`")
    for gone in (runtime_dir(node.key), node_dir(paths) / "kubelet",
                 node_dir(paths) / "containerd", node_dir(paths) / "cni-ipam",
                 node_dir(paths) / "pod-logs"):
        shutil.rmtree(gone, ignore_errors=True)
    with contextlib.suppress(OSError):
        runtime_dir(node.key).parent.rmdir()  # /run/ansflow, when no other node uses it
