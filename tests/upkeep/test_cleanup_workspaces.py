"""The cleanup of run workspaces: a failed run's workspace stays for its keep time and goes
after; a crashed run's (its `ansflow run` SIGKILLed mid-step) goes; a workspace a live
process holds never goes; links in the root are unlinked, never followed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


@pytest.fixture
def root(prefect_server, monkeypatch, tmp_path):
    path = tmp_path / "wsroot"
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(path))
    return path


def _options(**kw):
    from ansflow.upkeep.cleanup import CleanupOptions

    return CleanupOptions(workspaces=True, run_retention_days=None, **kw)


def _cleanup(**kw):
    from ansflow.upkeep.cleanup import cleanup

    return cleanup(_options(**kw))


def _ansflow(*args: str, timeout: float = 300, **kw):
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ), **kw)


FAILING = """\
pipeline:
  name: {name}
  steps:
    - {{id: make, type: command, config: {{command: "echo left > artefact && exit 3"}}}}
"""


def _failed_run(tmp_path: Path, name: str) -> str:
    from ansflow.flows.pipeline import pipeline_flow

    folder = tmp_path / name
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(FAILING.format(name=name))
    state = pipeline_flow(str(folder / "pipeline.yaml"), None, return_state=True)
    assert state.is_failed()
    return state.result(raise_on_failure=False)["run_id"]


def test_a_failed_runs_workspace_stays_for_its_keep_time_then_the_cleanup_flow_removes_it(
        root, tmp_path, monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "4s")
    run_id = _failed_run(tmp_path, "ws-keep")
    home = root / run_id
    assert (home / "workspace" / "artefact").read_text() == "left\n"
    early = _cleanup()
    assert [i.name for i in early.kept if i.where == "workspaces"] == [run_id]
    assert "(for debugging and ansflow retry)" in early.kept[0].reason
    assert home.exists() and not early.removed
    time.sleep(4.5)
    dry = _cleanup(dry_run=True)
    assert [i.name for i in dry.remove] == [run_id] and home.exists()  # a dry run
    out = _ansflow("cleanup", "--workspaces")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"removed workspaces: workspace/{run_id}" in out.stdout
    assert "expired" in out.stdout
    assert not home.exists() and list(root.iterdir()) == []


def test_the_cleanup_flow_cleans_workspaces(root, tmp_path, monkeypatch):
    from ansflow.flows.cleanup import cleanup_flow

    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "1s")
    run_id = _failed_run(tmp_path, "ws-flow")
    time.sleep(1.5)
    state = cleanup_flow(clusters=[], docker=False, run_retention_days=None,
                         return_state=True)
    del state  # saved clusters of other tests may be unreachable: only the workspace counts
    assert not (root / run_id).exists()


CRASHING = """\
pipeline:
  name: ws-crash
  steps:
    - {id: wait, type: command, config: {command: "touch started && sleep 120"}}
"""


def test_a_crashed_runs_workspace_is_removed_by_the_cleanup(root, tmp_path):
    folder = tmp_path / "crash"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(CRASHING)
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "run",
                             str(folder / "pipeline.yaml")], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        started = []
        while time.monotonic() < deadline and not started:
            started = list(root.glob("*/workspace/started")) if root.exists() else []
            time.sleep(0.3)
        assert started, "the run never started its step"
        home = started[0].parent.parent
        # While the run goes on, its workspace is in use: never removed.
        busy = _cleanup()
        assert [i.name for i in busy.kept] == [home.name]
        assert busy.kept[0].reason.startswith("in use: its run is going on here")
        assert home.exists()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert json.loads((home / "meta.json").read_text())["state"] == "running"
    report = _cleanup()
    assert [i.name for i in report.removed] == [home.name], report.rows()
    assert "ended without finishing the run (a crashed worker)" in report.removed[0].reason
    assert not home.exists()


def test_a_workspace_held_by_a_live_process_is_never_removed_even_by_run_id(root, tmp_path):
    from ansflow.workspaces import finish_workspace, open_workspace

    ws = open_workspace("held-run", "p", lambda d: None, root=root)
    try:
        report = _cleanup(run_id="held-run")
        assert not report.removed and report.kept[0].reason.startswith("in use")
        assert ws.path.is_dir()
    finally:
        finish_workspace(ws, "failed", keep=3600)
    # Kept, not expired: only --run-id removes it now.
    assert [i.name for i in _cleanup().kept] == ["held-run"]
    out = _ansflow("cleanup", "--workspaces", "--run-id", "held-run")
    assert out.returncode == 0, out.stderr
    assert not (root / "held-run").exists()


def test_a_retry_taking_the_workspace_after_the_plan_keeps_it(root):
    from ansflow.upkeep.cleanup import execute, plan
    from ansflow.workspaces import finish_workspace, open_workspace

    ws = open_workspace("raced", "p", lambda d: None, root=root)
    finish_workspace(ws, "failed", keep=0.5)
    time.sleep(0.6)
    options = _options()
    planned = plan(options)
    assert [i.name for i in planned.remove] == ["raced"]
    again = open_workspace("raced", "p", lambda d: None, root=root)  # the retry
    assert again.reused
    done = execute(planned, options)
    assert not done.removed and done.kept[-1].reason.startswith(("in use", "changed"))
    finish_workspace(again, "failed", keep=3600)
    done = execute(planned, options)  # planned as expired, now kept again for an hour
    assert not done.removed and (root / "raced" / "workspace").is_dir()


def test_links_in_the_root_and_in_a_workspace_are_never_followed(root, tmp_path):
    from ansflow.workspaces import finish_workspace, open_workspace

    outside = tmp_path / "outside"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "precious").write_text("keep me")
    root.mkdir(parents=True)
    os.symlink(outside, root / "linked-run")

    def fill(dest: Path) -> None:
        os.symlink(outside, dest / "to-outside")
        os.symlink(outside / "deep" / "precious", dest / "file-link")
        (dest / "ro" / "sub").mkdir(parents=True)
        (dest / "ro" / "sub" / "f").write_text("x")
        os.chmod(dest / "ro" / "sub", 0o500)
        os.chmod(dest / "ro", 0o500)

    ws = open_workspace("with-links", "p", fill, root=root)
    finish_workspace(ws, "failed", keep=0.2)
    time.sleep(0.3)
    report = _cleanup()
    assert sorted(i.name for i in report.removed) == ["linked-run", "with-links"], report.rows()
    assert not os.path.lexists(root / "linked-run") and not (root / "with-links").exists()
    assert (outside / "deep" / "precious").read_text() == "keep me"


def test_other_pipelines_workspaces_stay_with_a_pipeline_filter(root):
    from ansflow.workspaces import finish_workspace, open_workspace

    for name in ("a", "b"):
        finish_workspace(open_workspace(f"run-{name}", f"pipe-{name}", lambda d: None,
                                        root=root), "failed", keep=0.1)
    time.sleep(0.2)
    report = _cleanup(pipelines=["pipe-a"], dry_run=True)
    assert [i.name for i in report.remove] == ["run-a"]
    assert [(i.name, i.reason) for i in report.kept] == [("run-b", "another pipeline's")]
    assert (root / "run-a").exists()  # a dry run


def test_a_half_made_workspace_without_meta_is_removed(root):
    (root / "half" / ".staging-123").mkdir(parents=True)
    report = _cleanup()
    assert [(i.name, i.reason) for i in report.removed] == [
        ("half", "left half-made by a run whose process ended")]
    assert not (root / "half").exists()


def test_names_that_are_not_run_ids_are_left_alone(root):
    root.mkdir(parents=True)
    (root / "README").write_text("an operator's note")
    (root / "not a run\nid").mkdir()
    report = _cleanup()
    assert not report.remove and not report.kept
    assert (root / "README").exists() and (root / "not a run\nid").exists()
