"""Finding the dev cluster's binaries (built by scripts/build-k8s.sh) and their versions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ansflow.devcluster.errors import BinariesMissing

REQUIRED = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
)
BUILD_HINT = (
    "build them with `bash scripts/build-k8s.sh` (or `bash scripts/setup.sh`) from the "
    "ansflow source tree (needs Go >= 1.26 and the Go module proxy; a cold build takes "
    "15-25 min), or point ANSFLOW_K8S_BIN at a directory holding them"
)


@dataclass(frozen=True)
class Binaries:
    """The directory holding the dev-cluster binaries and the versions they were built at."""

    directory: Path
    versions: dict[str, str]

    def path(self, name: str) -> str:
        """Absolute path of one binary (`etcd`, `kube-apiserver`, ...)."""
        return str(self.directory / name)


def cache_dir() -> Path:
    """The ansflow cache root: $ANSFLOW_CACHE_DIR, else ~/.cache/ansflow."""
    env = os.environ.get("ANSFLOW_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ansflow"


def _read_versions(directory: Path) -> dict[str, str]:
    versions: dict[str, str] = {}
    try:
        text = (directory / "VERSIONS").read_text()
    except OSError:
        return versions
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if value:
            versions[key.strip()] = value.strip()
    return versions


def _missing(directory: Path) -> list[str]:
    return [b for b in REQUIRED if not os.access(directory / b, os.X_OK)]


def find_binaries() -> Binaries:
    """Locate the binaries: $ANSFLOW_K8S_BIN, else the newest complete build in the cache.

    Returns:
        The directory and the versions recorded by the build.

    Raises:
        BinariesMissing: nothing usable was found; the message names what is missing and
            how to build it.
    """
    env = os.environ.get("ANSFLOW_K8S_BIN")
    if env:
        directory = Path(env)
        missing = _missing(directory)
        if missing:
            raise BinariesMissing(
                f"ANSFLOW_K8S_BIN={env} lacks {', '.join(missing)}; {BUILD_HINT}"
            )
        return Binaries(directory, _read_versions(directory))
    root = cache_dir() / "k8s-bin"
    candidates = sorted(
        (d for d in root.glob("*") if (d / ".complete").is_file() and not _missing(d)),
        key=lambda d: (d / ".complete").stat().st_mtime,
        reverse=True,
    )
    if not candidates:
        raise BinariesMissing(f"no dev-cluster binaries found under {root}; {BUILD_HINT}")
    return Binaries(candidates[0], _read_versions(candidates[0]))
