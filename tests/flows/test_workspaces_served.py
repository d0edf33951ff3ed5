"""Two served runs of one pipeline at once (`ansflow serve` on the suite's Prefect server),
each writing its own value to the same path and reading it back 4 s later: with per-run
workspaces each reads its own; in the old shared folder (in-place mode) the second run's
value shows in both, which proves the test sees a clash when there is one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.server

PIPELINE = """\
pipeline:
  name: {name}
  variables:
    value: nobody
  steps:
    - id: clash
      type: command
      config:
        command: >-
          echo "start=$(date +%s.%N)" >> "$ANSFLOW_OUTPUT" &&
          echo "{{{{ vars.value }}}}" > shared.txt && sleep 4 &&
          echo "read=$(cat shared.txt)" >> "$ANSFLOW_OUTPUT" &&
          echo "ws=$ANSFLOW_WORKSPACE" >> "$ANSFLOW_OUTPUT" &&
          echo "end=$(date +%s.%N)" >> "$ANSFLOW_OUTPUT"
"""


def _serve(path: Path, log: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ansflow.cli", "serve", str(path)],
                            env={**os.environ, **env}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait_served(name: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"serve exited:\n{log.read_text(errors='replace')}"
            try:
                client.read_deployment_by_name(f"ansflow-pipeline/{name}")
                if "serving ansflow-pipeline/" in log.read_text(errors="replace"):
                    return
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    raise AssertionError(f"not served:\n{log.read_text(errors='replace')}")


def _two_runs_at_once(name: str) -> list[dict]:
    """Start two runs (values one, two) together; their summaries from ansflow's store."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    runs = [run_deployment(f"ansflow-pipeline/{name}", parameters={"value": v},
                           timeout=0) for v in ("one", "two")]
    deadline = time.monotonic() + 240
    with get_client(sync_client=True) as client:
        while True:
            states = [client.read_flow_run(r.id).state for r in runs]
            if all(s is not None and s.is_final() for s in states):
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.5)
    return [_summary(r.id) for r in runs]


def _summary(run_id) -> dict:
    from sqlalchemy import text

    from ansflow.store import Store

    store = Store()
    try:
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT summary FROM ansflow_runs WHERE run_id = :r"),
                               {"r": str(run_id)}).first()
    finally:
        store.close()
    assert row is not None and row[0], f"no summary for {run_id}"
    return json.loads(row[0])


def _outputs(summary: dict) -> dict:
    return summary["steps"][0]["outputs"]


@pytest.mark.parametrize("mode", ["per-run", "in-place"])
def test_two_served_runs_at_once_never_see_each_others_files(prefect_server, tmp_path, mode):
    name = f"ws-clash-{mode}-{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(PIPELINE.format(name=name))
    root = tmp_path / "wsroot"
    log = tmp_path / "serve.log"
    proc = _serve(folder / "pipeline.yaml", log,
                  {"ANSFLOW_WORKSPACE_MODE": mode, "ANSFLOW_WORKSPACES": str(root)})
    try:
        _wait_served(name, proc, log)
        first, second = _two_runs_at_once(name)
    finally:
        _stop(proc)
    assert first["state"] == second["state"] == "completed", (first, second)
    a, b = _outputs(first), _outputs(second)
    # They really ran at the same time: each started before the other ended.
    assert float(a["start"]) < float(b["end"]) and float(b["start"]) < float(a["end"]), (a, b)
    if mode == "per-run":
        assert (a["read"], b["read"]) == ("one", "two")
        assert a["ws"] != b["ws"]
        assert {Path(a["ws"]).parent.name, Path(b["ws"]).parent.name} == {
            first["run_id"], second["run_id"]}
        assert Path(a["ws"]).parent.parent == root.resolve()
        assert not (folder / "shared.txt").exists()
        assert list(root.iterdir()) == []  # both succeeded: nothing left
    else:
        assert a["read"] == b["read"]  # the clash the per-run workspace removes
        assert a["ws"] == b["ws"] == str(folder.resolve())
