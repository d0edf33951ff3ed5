"""The worker's reaper: a step's processes die with a SIGKILLed ansflow process, with no
preexec function on the spawn (CPython keeps its vfork path). Real processes: a driver
process runs run_process and is SIGKILLed; nothing is mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from ansflow.engines import reaper
from ansflow.engines.process import TOKEN_ENV, run_process

DRIVER = textwrap.dedent("""\
    import os, sys
    from ansflow.engines.process import run_process
    run_process(["sh", "-c", sys.argv[1]], cwd=sys.argv[2], env=dict(os.environ),
                emit=lambda line, _s: None)
""")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_dead(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    left = [p for p in pids if _alive(p)]
    for pid in left:  # never leave a sleeper behind, whatever the assertion says
        os.kill(pid, signal.SIGKILL)
    return left


def _kill_driver_after(tmp_path: Path, script: str, files: list[str]) -> list[int]:
    """Start a driver running ``script`` as a step, wait for ``files`` (pids), SIGKILL it."""
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, script, str(tmp_path)])
    deadline = time.monotonic() + 30
    while not all((tmp_path / f).exists() and (tmp_path / f).read_text().strip()
                  for f in files):
        assert time.monotonic() < deadline and driver.poll() is None
        time.sleep(0.02)
    pids = [int((tmp_path / f).read_text()) for f in files]
    assert all(_alive(p) for p in pids)
    driver.kill()
    driver.wait(10)
    return pids


def _tag() -> str:
    return f"1000.{uuid.uuid4().int % 10**9}"


def test_step_process_dies_with_a_sigkilled_worker_even_without_its_token(tmp_path):
    # The step's own process drops the token: the reaper still kills its process group.
    script = (f"echo $$ > leader.pid; exec env -u {TOKEN_ENV} sleep {_tag()}")
    pids = _kill_driver_after(tmp_path, script, ["leader.pid"])
    assert _wait_dead(pids) == [], "the step's process outlived its SIGKILLed worker"


def test_escaped_grandchildren_die_with_a_sigkilled_worker(tmp_path):
    # Out of the step's process group (setsid, a double fork): found by the token prefix.
    tag = _tag()
    script = (f"setsid sh -c 'echo $$ > escaped.pid; exec sleep {tag}' & "
              f"(sh -c 'echo $$ > forked.pid; exec sleep {tag}' &) & "
              f"echo $$ > leader.pid; exec sleep {tag}")
    pids = _kill_driver_after(tmp_path, script, ["leader.pid", "escaped.pid", "forked.pid"])
    assert _wait_dead(pids) == []


def test_a_missing_or_unrunnable_program_is_reported_and_not_registered(tmp_path):
    # No wrapper between run_process and the program: exec's own error reaches the caller
    # (the command step turns it into exit code 127 / 126 with a clear message).
    live = set(reaper._REAPER.live)
    with pytest.raises(FileNotFoundError):
        run_process([f"no-such-program-{uuid.uuid4().hex[:8]}"], cwd=str(tmp_path),
                    env=dict(os.environ), emit=lambda line, _s: None)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\ntrue\n")
    with pytest.raises(PermissionError):
        run_process([str(script)], cwd=str(tmp_path), env=dict(os.environ),
                    emit=lambda line, _s: None)
    assert reaper._REAPER.live == live


def test_tokens_carry_this_processs_prefix_and_differ():
    first, second = reaper.new_token(), reaper.new_token()
    assert first != second
    assert first[:17] == second[:17] and first[16] == "-"


def test_spawn_uses_no_preexec_function_and_the_reaper_restarts(tmp_path):
    assert reaper.guard() is None  # the reaper runs: spawns keep CPython's vfork path
    helper = reaper.reaper_pid()
    assert helper is not None and _alive(helper)
    os.kill(helper, signal.SIGKILL)
    assert _wait_dead([helper]) == []
    lines: list[str] = []
    outcome = run_process(["sh", "-c", "echo ok"], cwd=str(tmp_path), env=dict(os.environ),
                          emit=lambda line, _s: lines.append(line))
    assert outcome.exit_code == 0 and lines == ["ok"]
    restarted = reaper.reaper_pid()
    assert restarted is not None and restarted != helper


def test_a_fork_child_does_not_hold_the_reapers_pipe(tmp_path):
    # A fork child keeping the pipe open would delay the reaper past the worker's death.
    assert reaper.guard() is None
    script = f"echo $$ > leader.pid; exec sleep {_tag()}"
    forker = textwrap.dedent(f"""\
        import os, sys, time
        from ansflow.engines import reaper
        from ansflow.engines.process import run_process
        import threading
        threading.Thread(target=run_process, args=(["sh", "-c", {script!r}],), kwargs=dict(
            cwd={str(tmp_path)!r}, env=dict(os.environ), emit=lambda l, s: None),
            daemon=True).start()
        while not os.path.exists({str(tmp_path / "leader.pid")!r}):
            time.sleep(0.02)
        if os.fork() == 0:  # the child outlives the parent for a while
            time.sleep(30)
            os._exit(0)
        time.sleep(0.2)
        os.kill(os.getpid(), 9)
    """)
    proc = subprocess.Popen([sys.executable, "-c", forker], start_new_session=True)
    proc.wait(30)
    try:
        leader = int((tmp_path / "leader.pid").read_text())
        assert _wait_dead([leader]) == [], "a fork child kept the reaper from firing"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the fork child
        except ProcessLookupError:
            pass
