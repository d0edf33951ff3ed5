"""What comes back from an SSH host (`download:`) and what a container leaves in the workspace,
against the private sshd and the real Docker engine: links and special files the host made
are never recreated locally, and a link planted in the workspace (by a `runs_on: docker`
container, which has the workspace mounted) never redirects a download. The crafted-archive
cases (names outside the declared paths, `..`, sizes) are tests/engines/test_archive.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ansflow.engines.archive import ArchiveRefused
from ansflow.errors import StepFailed
from ansflow.runtime.base import StepContext
from ansflow.spec.steps import CommandConfig
from ansflow.tasks.command import execute_command
from ansflow.tasks.docker_run import run_in_container

MAKEFILE = "all:\n\techo the real Makefile\n"


def _ctx(workspace: Path, sshd, **kw) -> StepContext:
    values = dict(pipeline="p", run_id=f"run-{uuid.uuid4().hex[:8]}", build_number=1,
                  step_id="s", step_name="s", stage="", step_type="command",
                  workspace=str(workspace), runs_on="remote",
                  blocks={"host": sshd.block()})
    values.update(kw)
    return StepContext(**values)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "Makefile").write_text(MAKEFILE)
    (tmp_path / "outside").mkdir()
    return workspace


def test_links_and_special_files_on_the_host_are_not_recreated(sshd, ws, caplog):
    caplog.set_level("INFO")
    ctx = _ctx(ws, sshd)
    execute_command(ctx, CommandConfig(download=["out"], command=(
        "mkdir -p out/sub && echo ok > out/sub/ok.txt && ln -s /etc out/evil && "
        "ln -s ../../../Makefile out/mk && ln out/sub/ok.txt out/hard && mkfifo out/pipe")))
    assert (ws / "out" / "sub" / "ok.txt").read_text() == "ok\n"
    made = sorted(str(p.relative_to(ws)) for p in (ws / "out").rglob("*"))
    # GNU tar sends the second name of a hard-linked file as a link: skipped too.
    assert made in (["out/sub", "out/sub/ok.txt"], ["out/hard", "out/sub"]), made
    assert not any(p.is_symlink() for p in ws.rglob("*"))
    assert (ws / "Makefile").read_text() == MAKEFILE
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "out/evil (symbolic link)" in log and "out/pipe (FIFO)" in log, log


def test_a_missing_download_fails_with_the_hosts_reason(sshd, ws):
    with pytest.raises(StepFailed, match=r"download 'nothing-here' from the workspace on .* "
                                         r"failed: .*nothing-here"):
        execute_command(_ctx(ws, sshd), CommandConfig(download=["nothing-here"],
                                                      command="true"))


@pytest.mark.docker
def test_a_link_a_container_planted_never_redirects_a_download(sshd, ws, make_ctx,
                                                               base_image, monkeypatch):
    """A `runs_on: docker` step writes into the workspace through its bind mount, links
    included (`out -> ..`, `dist/evil -> /etc`); a later remote download of `out` or `dist`
    must not write through them."""
    docker_ctx = make_ctx("command", runs_on="docker", workspace=str(ws))
    code = run_in_container(docker_ctx, image=base_image, working_dir=str(ws), env={},
                            argv=["sh", "-c", "ln -s .. out && mkdir dist && "
                                  "ln -s /etc dist/evil && ln -s ../outside build"])
    assert code == 0 and (ws / "out").is_symlink() and (ws / "dist" / "evil").is_symlink()
    remote = ("mkdir -p out dist/evil build && echo pwned > out/Makefile && "
              "echo pwned > dist/evil/ansflow-pwned && echo pwned > build/f")
    # A link out of the workspace at the declared path: refused before the step runs.
    with pytest.raises(StepFailed, match=r"download 'out' \(resolved: .*\) is outside the "
                                         "workspace"):
        execute_command(_ctx(ws, sshd), CommandConfig(download=["out"], command=remote))
    # Below it, or into a host path the operator allows: refused by the extraction.
    monkeypatch.setenv("ANSFLOW_ALLOWED_HOST_PATHS", str(ws.parent / "outside"))
    for path, link in (("dist", "dist/evil"), ("build", "build")):
        with pytest.raises(StepFailed, match=f"'{link}' in the workspace is a symbolic "
                                             "link or not a directory") as refused:
            execute_command(_ctx(ws, sshd), CommandConfig(download=[path], command=remote))
        assert isinstance(refused.value.__cause__, ArchiveRefused)  # the adapter's, translated
    assert (ws / "Makefile").read_text() == MAKEFILE
    assert not Path("/etc/ansflow-pwned").exists()
    assert list((ws.parent / "outside").iterdir()) == []
