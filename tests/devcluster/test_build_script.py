"""scripts/build-k8s.sh: reuses the cached, version-keyed binaries instead of rebuilding."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "build-k8s.sh"


def test_build_script_reuses_the_cached_binaries_and_reports_their_versions():
    planned = subprocess.run(["bash", str(SCRIPT), "--dir"], capture_output=True, text=True,
                             timeout=60)
    assert planned.returncode == 0, planned.stderr
    directory = Path(planned.stdout.strip())
    if not (directory / ".complete").exists():
        pytest.fail(f"binaries for the current pins are not built: run bash {SCRIPT}")
    started = time.monotonic()
    built = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0 and Path(built.stdout.strip()) == directory
    assert "binaries present" in built.stderr and time.monotonic() - started < 10
    versions = dict(line.split("=", 1) for line in (directory / "VERSIONS").read_text().split())
    assert versions["kubernetes"] in directory.name and versions["etcd"] in directory.name
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                 "kubectl", "kubelet", "kube-proxy", "kwok", "helm", "coredns", "netprobe"):
        assert (directory / name).is_file()
    # kube-proxy is built from the control plane's own pinned module, at its version.
    for binary in ("kube-apiserver", "kube-proxy"):
        out = subprocess.run([str(directory / binary), "--version"], capture_output=True,
                             text=True, timeout=30).stdout
        assert out.strip() == f"Kubernetes {versions['kubernetes']}"
    out = subprocess.run([str(directory / "coredns"), "-version"], capture_output=True,
                         text=True, timeout=30).stdout
    assert f"CoreDNS-{versions['coredns'].lstrip('v')}" in out
    plugins = subprocess.run([str(directory / "coredns"), "-plugins"], capture_output=True,
                             text=True, timeout=30).stdout.split()
    assert "kubernetes" in plugins and "route53" not in plugins  # only what it uses
