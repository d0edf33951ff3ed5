"""Nothing a step started outlives it: real processes that leave the
process group (`setsid`, a double fork) are ended at the step's end, timeout and cancel."""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from ansflow.engines.process import run_process


def _survivors(tag: str) -> list[int]:
    """Live processes whose command line carries ``tag`` (the unique sleep argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if tag.encode() in cmd and state != "Z":
            found.append(int(entry))
    return found


def _tag() -> str:
    return f"1000.{uuid.uuid4().int % 10**9}"  # a unique, valid `sleep` argument


def _escapes(tag: str) -> str:
    # one in its own session, one double-forked (its parent exits at once)
    return f"setsid sleep {tag} > /dev/null 2>&1 & (sleep {tag} > /dev/null 2>&1 &) & sleep 0.3"


def _run(script: str, **kw):
    lines = []
    return run_process(["sh", "-c", script], cwd="/tmp", env=dict(os.environ),
                       emit=lambda line, _s: lines.append(line), **kw)


def _wait_gone(tag: str, seconds: float = 1.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while _survivors(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _survivors(tag)


def test_escaped_processes_end_with_the_step():
    tag = _tag()
    outcome = _run(_escapes(tag))
    assert outcome.exit_code == 0
    assert _wait_gone(tag) == []


def test_escaped_processes_end_on_timeout():
    tag = _tag()
    outcome = _run(_escapes(tag) + "; sleep 300", timeout=1.5)
    assert outcome.timed_out
    assert _wait_gone(tag) == []


def test_escaped_processes_end_on_cancel():
    tag = _tag()
    cancelled = threading.Event()
    threading.Timer(1.5, cancelled.set).start()
    outcome = _run(_escapes(tag) + "; sleep 300", cancelled=cancelled)
    assert outcome.cancelled
    assert _wait_gone(tag) == []


def test_exit_code_is_kept_when_escaped_processes_are_ended():
    tag = _tag()
    outcome = _run(_escapes(tag) + "; exit 7")
    assert outcome.exit_code == 7
    assert _wait_gone(tag) == []
