"""Helpers of the push-trigger tests: a served pipeline with `on.push`, its runs, pushes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fixtures_git import git

ON_PUSH = """\
on:
  push:
    branches: [main, "release/*"]
    tags: ["v*"]
    paths: ["src/**"]
"""


STEPS = """\
steps:
  - id: build
    type: command
    config:
      command: >-
        echo "head=$(git rev-parse HEAD)" >> "$ANSFLOW_OUTPUT" &&
        echo "file=$(cat src/app.txt 2>/dev/null || echo none)" >> "$ANSFLOW_OUTPUT"
"""


def pipeline_text(name: str, source: str, on: str = ON_PUSH) -> str:
    """A pipeline built from ``source`` whose one step reports the checked-out commit."""
    body = f"name: {name}\nsource: {{git: \"{source}\", ref: main}}\n" + on + STEPS
    return "pipeline:\n" + textwrap.indent(body, "  ")


class Served:
    """One `ansflow serve FILE` process with per-run workspaces."""

    def __init__(self, file: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        full = {**os.environ, "ANSFLOW_WORKSPACE_MODE": "per-run",
                "ANSFLOW_WORKSPACES": str(log.parent / "workspaces"), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "serve", str(file)],
                                     env=full, stdout=log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def wait_ready(self, name: str, timeout: float = 180):
        """The deployment, once its push trigger's Automation exists and the runner polls."""
        from prefect.client.orchestration import get_client
        from prefect.exceptions import ObjectNotFound

        deadline = time.monotonic() + timeout
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited:\n{self.output()}")
                try:
                    dep = client.read_deployment_by_name(f"ansflow-pipeline/{name}")
                except ObjectNotFound:
                    time.sleep(0.5)
                    continue
                if client.read_automations_by_name(f"ansflow push: {name}"):
                    time.sleep(1.0)  # the runner's first poll
                    return dep
                time.sleep(0.5)
        raise AssertionError(f"{name} not served with its trigger:\n{self.output()}")


def runs_of(deployment_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            id=DeploymentFilterId(any_=[deployment_id])))


def wait_runs(deployment_id, count: int, timeout: float = 60) -> list:
    """The deployment's flow runs once there are ``count`` of them (fails on more)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(deployment_id)
        assert len(runs) <= count, [(r.name, r.parameters) for r in runs]
        if len(runs) == count:
            return runs
        time.sleep(0.3)
    raise AssertionError(f"{len(runs_of(deployment_id))} runs, expected {count}")


def assert_no_new_run(deployment_id, count: int, settle: float = 4.0) -> None:
    """Still ``count`` runs after ``settle`` seconds (an event reaches a run in < 1 s)."""
    time.sleep(settle)
    runs = runs_of(deployment_id)
    assert len(runs) == count, [(r.name, r.parameters) for r in runs]


def wait_final(flow_run_id, timeout: float = 240):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    raise AssertionError(f"run {flow_run_id} not finished: {run.state}")


def outputs(flow_run_id) -> dict:
    """The build step's outputs as the run's summary recorded them."""
    import json

    from sqlalchemy import text

    from ansflow.store import Store

    store = Store()
    try:
        with store.engine.connect() as conn:
            row = conn.execute(text("SELECT summary FROM ansflow_runs WHERE run_id = :r"),
                               {"r": str(flow_run_id)}).first()
    finally:
        store.close()
    assert row is not None and row[0], f"no summary for {flow_run_id}"
    steps = {s["id"]: s for s in json.loads(row[0])["steps"]}
    return steps["build"]["outputs"]


def commit_local(work: Path, files: dict[str, str], message: str) -> str:
    """A commit in the work tree, not pushed; its SHA."""
    for name, content in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", message, cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def push(work: Path, *refspecs: str, force: bool = False) -> str:
    """`git push` from the work tree; git's stderr (the hook's `remote:` lines)."""
    from fixtures_git import COMMIT_ENV

    args = ["git", "push", *(["--force"] if force else []), "origin", *refspecs]
    proc = subprocess.run(args, cwd=work, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **COMMIT_ENV})
    assert proc.returncode == 0, proc.stderr
    return proc.stderr
