"""The one subprocess runner: live line streaming, deadline and cancellation that kill the
whole process group, bounded memory whatever the process prints."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

READ_CHUNK = 65536
MAX_LINE_BYTES = 64 * 1024  # longer lines are cut into pieces (memory stays bounded)
KILL_GRACE = 2.0


@dataclass
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _pump(stream, emit: Callable[[str, str], None], name: str) -> None:
    """Read ``stream`` to its end, handing complete lines to ``emit`` as they arrive."""
    pending = b""
    fd = stream.fileno()
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError:
            break
        if not chunk:
            break
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                break
            emit(_decode(pending[:cut]), name)
            pending = pending[cut + 1:]
        while len(pending) > MAX_LINE_BYTES:
            emit(_decode(pending[:MAX_LINE_BYTES]), name)
            pending = pending[MAX_LINE_BYTES:]
    if pending:
        emit(_decode(pending), name)
    stream.close()


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL it after a grace period."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            # The leader is gone; make sure no child of the group survives it.
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def run_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    emit: Callable[[str, str], None],
    timeout: float | None = None,
    cancelled: threading.Event | None = None,
    on_start: Callable[[Callable[[], None]], Callable[[], None]] | None = None,
) -> ProcessOutcome:
    """Run ``argv`` in its own process group; stream stdout/stderr lines to ``emit``.

    Args:
        argv: The program and its arguments.
        cwd: Working directory.
        env: The complete environment of the process.
        emit: Called with (line, "stdout"|"stderr") for each line, from reader threads.
        timeout: Seconds until the whole process group is killed.
        cancelled: When set, the process group is killed.
        on_start: Registers a kill function (for run-wide cancellation); returns its remover.

    Returns:
        The exit code (negative signal number when killed) and why it ended.

    Raises:
        FileNotFoundError / PermissionError: the program cannot be started.
    """
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True,
    )
    unregister = on_start(lambda: kill_group(proc)) if on_start else None
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, emit, "stdout"), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, emit, "stderr"), daemon=True),
    ]
    for t in readers:
        t.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = ProcessOutcome(exit_code=None)
    try:
        while True:
            try:
                proc.wait(0.05)
                break
            except subprocess.TimeoutExpired:
                pass
            if cancelled is not None and cancelled.is_set():
                outcome.cancelled = True
                kill_group(proc)
                break
            if deadline is not None and time.monotonic() >= deadline:
                outcome.timed_out = True
                kill_group(proc)
                break
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if unregister:
            unregister()
    # Children that kept the pipes open (e.g. a backgrounded `sleep &`) must not hold the
    # step: once the leader exited, give readers a moment, then kill the rest of the group.
    for t in readers:
        t.join(0.5)
    if any(t.is_alive() for t in readers):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for t in readers:
            t.join(5)
    if cancelled is not None and cancelled.is_set() and not outcome.timed_out:
        outcome.cancelled = True  # killed by the run's cancel, possibly via on_start's hook
    outcome.exit_code = proc.returncode
    return outcome
