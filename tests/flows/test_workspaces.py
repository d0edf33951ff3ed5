"""Per-run workspaces in real pipeline runs (in-process flow runs on the suite's Prefect
server): each run works in a copy of the pipeline's folder under the workspaces root, removed
after a success, kept for ANSFLOW_WORKSPACE_KEEP after a failure, reused by `ansflow retry`;
`{{ run.workspace }}` and ANSFLOW_WORKSPACE name it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_pipeline import by_id


@pytest.fixture
def per_run(prefect_server, monkeypatch, tmp_path):
    """Per-run workspaces under a root of this test's; returns the root."""
    root = tmp_path / "roots" / "ws"
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(root))
    monkeypatch.delenv("ANSFLOW_WORKSPACE_KEEP", raising=False)
    return root


@pytest.fixture
def folder(tmp_path):
    """The pipeline's folder (the copy's source), beside the root."""
    path = tmp_path / "project"
    path.mkdir()
    (path / "src").mkdir()
    (path / "src" / "input.txt").write_text("from the folder\n")
    return path


def run_in(folder: Path, text: str, variables: dict | None = None):
    from ansflow.flows.pipeline import pipeline_flow

    path = folder / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    state = pipeline_flow(str(path), variables, return_state=True)
    return state, state.result(raise_on_failure=False)


SEES = """\
pipeline:
  name: ws-sees
  steps:
    - id: look
      type: command
      config:
        command: >-
          cat src/input.txt > copy.txt && pwd -P > pwd.txt &&
          echo "env=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT" &&
          echo "tpl={{ run.workspace }}" >> "$ANSFLOW_OUTPUT" &&
          echo "pwd=$(pwd -P)" >> "$ANSFLOW_OUTPUT" &&
          echo "seen=$(cat copy.txt)" >> "$ANSFLOW_OUTPUT"
"""


def test_a_run_works_in_its_own_copy_and_a_success_leaves_nothing(per_run, folder):
    state, summary = run_in(folder, SEES)
    assert state.is_completed(), summary
    run_id = summary["run_id"]
    out = by_id(summary)["look"]["outputs"]
    expected = str(per_run.resolve() / run_id / "workspace")
    assert out["env"] == out["tpl"] == out["pwd"] == expected
    assert out["seen"] == "from the folder"
    assert summary["workspace"] == {"path": expected, "reused": False, "in_place": False}
    # The folder is untouched, and the workspace is gone after the success.
    assert sorted(p.name for p in folder.iterdir()) == ["pipeline.yaml", "src"]
    assert not (per_run / run_id).exists()
    assert list(per_run.iterdir()) == []


FAILS = """\
pipeline:
  name: ws-fails
  steps:
    - id: make
      type: command
      config: {command: "echo built > artefact && echo 1 >> count-make"}
    - id: check
      type: command
      config: {command: "echo 1 >> count-check && test -f ok-now"}
"""


def _ansflow(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run([sys.executable, "-m", "ansflow.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_a_failure_keeps_the_workspace_and_ansflow_retry_reuses_it(per_run, folder,
                                                                   monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "1h")
    before = time.time()
    state, summary = run_in(folder, FAILS)
    assert state.is_failed()
    run_id = summary["run_id"]
    home = per_run / run_id
    ws = home / "workspace"
    assert (ws / "artefact").read_text() == "built\n"
    meta = json.loads((home / "meta.json").read_text())
    assert meta["state"] == "kept" and meta["run_id"] == run_id
    assert before + 3600 - 5 <= meta["kept_until"] <= time.time() + 3600 + 5
    assert not (folder / "artefact").exists()
    # The fix lands in the kept workspace (where the retry runs), as one debugging it would.
    (ws / "ok-now").touch()
    out = _ansflow("retry", run_id, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"the run's kept workspace {ws.resolve()} is reused as it was left" in out.stderr
    again = json.loads(out.stdout)
    assert again["state"] == "completed" and again["reused"] == ["make"]
    assert again["workspace"] == {"path": str(ws.resolve()), "reused": True,
                                  "in_place": False}
    # The reused step did not run again (its artefact came from the kept workspace, which
    # the check needed); the success removed the workspace.
    assert by_id(again)["make"]["message"] == "reused from an earlier attempt of this run"
    assert by_id(again)["check"]["state"] == "completed"
    assert not home.exists()


def test_a_retry_without_the_kept_workspace_fills_a_new_one_and_runs_every_step(
        per_run, folder, monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "1h")
    state, summary = run_in(folder, FAILS.replace("test -f ok-now", "test -f src/ok-now"))
    assert state.is_failed()
    run_id = summary["run_id"]
    # Gone (as on another worker, or after its keep time); the fix is in the folder now.
    from ansflow.workspaces import remove_run_home

    remove_run_home(per_run / run_id)
    (folder / "src" / "ok-now").touch()
    out = _ansflow("retry", run_id, "--json", env={"ANSFLOW_WORKSPACE_KEEP": "0"})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "is not kept here any more" in out.stderr and "every step runs again" in out.stderr
    again = json.loads(out.stdout)
    assert again["state"] == "completed" and again.get("reused") == []
    assert again["workspace"]["reused"] is False
    assert by_id(again)["make"]["state"] == "completed"
    assert not (per_run / run_id).exists()


def test_keep_zero_removes_a_failed_runs_workspace_at_once(per_run, folder, monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_KEEP", "0")
    state, summary = run_in(folder, FAILS)
    assert state.is_failed()
    assert not (per_run / summary["run_id"]).exists()


def test_in_place_mode_runs_in_the_pipelines_folder(per_run, folder, monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "in-place")
    state, summary = run_in(folder, SEES)
    assert state.is_completed()
    out = by_id(summary)["look"]["outputs"]
    assert out["env"] == out["tpl"] == str(folder.resolve())
    assert (folder / "copy.txt").read_text() == "from the folder\n"
    assert not per_run.exists()


def test_a_root_inside_the_pipelines_folder_fails_the_run_before_any_step(prefect_server, folder,
                                                                          monkeypatch):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(folder / "ws"))
    state, summary = run_in(folder, SEES)
    assert state.is_failed()
    assert "is inside the pipeline's folder" in state.message
    assert state.message.startswith("the run did not start: ")
    assert not (folder / "ws").exists() and not (folder / "copy.txt").exists()


def test_a_bad_workspace_setting_fails_clearly(per_run, folder, monkeypatch):
    for name, value, words in (("ANSFLOW_WORKSPACE_MODE", "shared", "must be one of"),
                               ("ANSFLOW_WORKSPACE_KEEP", "soon", "must be a duration"),
                               ("ANSFLOW_WORKSPACES", "relative/x", "must be an absolute")):
        with monkeypatch.context() as m:
            m.setenv(name, value)
            state, _ = run_in(folder, SEES)
            assert state.is_failed() and words in state.message, (name, state.message)
            assert "Traceback" not in state.message


def test_run_workspace_is_checked_when_the_file_is_validated(tmp_path):
    from ansflow.errors import SpecError
    from ansflow.spec.validate import load_plan

    path = tmp_path / "p.yaml"
    path.write_text("steps:\n  - {id: a, type: command, config: "
                    "{command: 'echo {{ run.workspac }}'}}\n")
    with pytest.raises(SpecError, match=r"unknown name 'run.workspac'; did you mean "
                                        r"'workspace'\?"):
        load_plan(path)


def test_a_root_with_shell_metacharacters_is_data_everywhere(prefect_server, folder,
                                                             monkeypatch, tmp_path):
    root = tmp_path / "ws root $(touch PWNED) `id` 'q\" {{ x }}"
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", str(root))
    state, summary = run_in(folder, SEES)
    assert state.is_completed(), summary
    out = by_id(summary)["look"]["outputs"]
    expected = str(root.resolve() / summary["run_id"] / "workspace")
    assert out["env"] == out["tpl"] == out["pwd"] == expected
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()


@pytest.mark.parametrize("bad", ["/tmp/a:b", "/tmp/line\nbreak"])
def test_a_root_docker_or_logs_cannot_carry_is_refused(prefect_server, folder, monkeypatch,
                                                        bad):
    monkeypatch.setenv("ANSFLOW_WORKSPACE_MODE", "per-run")
    monkeypatch.setenv("ANSFLOW_WORKSPACES", bad)
    state, _ = run_in(folder, SEES)
    assert state.is_failed() and "choose a path without ':' or line breaks" in state.message
    assert not os.path.exists(bad)
