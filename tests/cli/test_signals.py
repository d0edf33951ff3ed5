"""SIGTERM (what `timeout`, systemd and Kubernetes send) cancels `ansflow run` as Ctrl-C does,
within a bounded time, even while a step hangs; a SIGKILLed run leaves no step child behind.
Real `ansflow run` processes against the suite's server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BOUND = 30  # seconds from SIGTERM to exit (the run's own limit is 20 s)


def _start(tmp_path: Path, text: str, ready: str) -> subprocess.Popen:
    (tmp_path / "p.yaml").write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "ansflow.cli", "run", "p.yaml", "--json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / ready).exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    return proc


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(proc: subprocess.Popen) -> tuple[str, str, float]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        stdout, stderr = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise AssertionError(f"`ansflow run` ignored SIGTERM for {BOUND} s: {stderr[-2000:]}")
    return stdout, stderr, time.monotonic() - started


def test_sigterm_cancels_the_run_kills_the_step_and_runs_finally(prefect_server, tmp_path):
    proc = _start(tmp_path, """\
pipeline:
  name: term-me
  steps:
    - {id: long, type: command, config: {command: "sleep 300 & echo $! > sleeper.pid; wait"}}
    - {id: never, type: command, config: {command: "touch never-ran"}}
  finally:
    - {id: tidy, type: command, config: {command: "touch finally-ran"}}
""", "sleeper.pid")
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    stdout, stderr, took = _terminate(proc)
    assert proc.returncode not in (0, None), stderr[-2000:]
    summary = json.loads(stdout)
    assert summary["state"] == "cancelled"
    states = {s["id"]: s["state"] for s in summary["steps"]}
    assert states == {"long": "cancelled", "never": "not_run", "tidy": "completed"}
    assert (tmp_path / "finally-ran").exists() and not (tmp_path / "never-ran").exists()
    assert not _alive(sleeper)
    assert "Traceback" not in stderr


def test_sigterm_ends_a_run_whose_step_hangs_where_no_kill_reaches(prefect_server, tmp_path):
    # The step hangs in a template that computes (in the flow's own process): no process
    # group to kill. The run still ends within the bound and `finally` runs.
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    proc = _start(tmp_path, """\
pipeline:
  name: term-stuck
  steps:
    - {id: mark, type: command, config: {command: "touch started"}}
    - id: stuck
      type: command
      config:
        command: "echo LOOP"
  finally:
    - {id: tidy, type: command, config: {command: "touch finally-ran"}}
""".replace("LOOP", loop), "started")
    time.sleep(2)  # the template is computing now
    _stdout, stderr, took = _terminate(proc)
    assert proc.returncode not in (0, None)
    assert took < BOUND
    assert (tmp_path / "finally-ran").exists(), stderr[-2000:]
    assert "Traceback" not in stderr


def test_sigkilled_run_leaves_no_step_child_behind(prefect_server, tmp_path):
    tag = f"1000.{os.getpid()}{int(time.time()) % 100000}"
    proc = _start(tmp_path, f"""\
pipeline:
  name: kill-me
  steps:
    - {{id: long, type: command, config: {{command: "echo $$ > sleeper.pid; exec sleep {tag}"}}}}
""", "sleeper.pid")
    sleeper = int((tmp_path / "sleeper.pid").read_text())
    time.sleep(0.5)
    assert _alive(sleeper)
    proc.kill()  # SIGKILL: nothing in the ansflow process can run
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while _alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.1)
    survived = _alive(sleeper)
    if survived:
        os.kill(sleeper, signal.SIGKILL)
    assert not survived, "the step's process outlived a SIGKILLed `ansflow run`"
