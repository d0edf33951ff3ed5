"""`ansflow serve` processes and deployment runs against the suite's Prefect server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest


def pipeline_text(name: str, *, command: str = "echo {{ vars.greeting }} x{{ vars.count }}",
                  extra: str = "") -> str:
    """A small pipeline with two typed variables and one command step."""
    return textwrap.dedent(f"""\
        pipeline:
          name: {name}
          description: Test pipeline {name}
          variables:
            greeting:
              default: hello
              description: What the step says
            count: 2
        {textwrap.indent(extra, '  ')}
          steps:
            - name: say
              id: say
              type: command
              config:
                command: "{command}"
        """)


class ServeProcess:
    """One `ansflow serve` process; stopped by the fixture that made it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ansflow.cli", "serve", *args], env=env,
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def unique() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def serve(prefect_server, tmp_path):
    """Start `ansflow serve ARGS` (optionally with env overrides); all stopped at the end."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        full = {**os.environ, **(env or {})}
        handle = ServeProcess(list(args), full, tmp_path / f"serve-{len(started)}.log")
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()


def wait_for_deployment(name: str, timeout: float = 60, proc: ServeProcess | None = None,
                        version: str | None = None):
    """The deployment `ansflow-pipeline/<name>` once it exists (at ``version`` if given)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{proc.output()}")
            try:
                dep = client.read_deployment_by_name(f"ansflow-pipeline/{name}")
                if version is None or dep.version == version:
                    return dep
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    raise AssertionError(f"deployment {name!r} not served after {timeout}s")


def wait_for_runner(proc: ServeProcess, timeout: float = 30) -> None:
    """Wait until the serve process polls for runs (its runner has started)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise AssertionError(f"serve exited early:\n{proc.output()}")
        if "serving ansflow-pipeline/" in proc.output():
            time.sleep(1.0)
            return
        time.sleep(0.3)
    raise AssertionError("serve did not start")


def run_and_wait(name: str, parameters: dict | None = None, timeout: float = 120):
    """Start a run of `ansflow-pipeline/<name>` through the API and wait for its end."""
    from prefect.deployments import run_deployment

    return run_deployment(f"ansflow-pipeline/{name}", parameters=parameters or {},
                          timeout=timeout, poll_interval=0.5)


def wait_final(flow_run_id, timeout: float = 120):
    """The flow run once it is in a final state."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout}s: {run.state}")


def run_summary(flow_run_id) -> dict:
    """The run's summary as ansflow's store recorded it."""
    from ansflow.store import Store

    store = Store()
    try:
        with store.engine.connect() as conn:
            from sqlalchemy import text

            row = conn.execute(text("SELECT summary FROM ansflow_runs WHERE run_id = :r"),
                               {"r": str(flow_run_id)}).first()
    finally:
        store.close()
    assert row is not None and row[0], f"no summary recorded for {flow_run_id}"
    return json.loads(row[0])


@pytest.fixture
def deploy():
    """The helpers above, for test modules (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(pipeline_text=pipeline_text, wait_for_deployment=wait_for_deployment,
                           wait_for_runner=wait_for_runner, run_and_wait=run_and_wait,
                           wait_final=wait_final, run_summary=run_summary)
