"""The one subprocess runner: live line streaming, deadline and cancellation that kill the
whole process group, bounded memory whatever the process prints."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ansflow.engines.lines import MAX_LINE_BYTES, LineSplitter

READ_CHUNK = 65536
KILL_GRACE = 2.0


@dataclass
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False


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
    line_bytes: int = MAX_LINE_BYTES,
) -> ProcessOutcome:
    """Run ``argv`` in its own process group; stream stdout/stderr lines to ``emit``.

    One thread does everything: it multiplexes both pipes with a selector (no reader threads),
    so hundreds of concurrent steps stay cheap.

    Args:
        argv: The program and its arguments.
        cwd: Working directory.
        env: The complete environment of the process.
        emit: Called with (line, "stdout"|"stderr") for each line, as it arrives.
        timeout: Seconds until the whole process group is killed.
        cancelled: When set, the process group is killed.
        on_start: Registers a kill function (for run-wide cancellation); returns its remover.
        line_bytes: Longer lines are handed out in pieces of this size (memory bound).

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
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = ProcessOutcome(exit_code=None)
    streams = _LineStreams(proc, emit, line_bytes)
    leader_gone_at: float | None = None
    try:
        while streams.open:
            streams.pump(0.05)
            if cancelled is not None and cancelled.is_set():
                outcome.cancelled = True
                kill_group(proc)
                break
            if deadline is not None and time.monotonic() >= deadline:
                outcome.timed_out = True
                kill_group(proc)
                break
            if leader_gone_at is None and proc.poll() is not None:
                leader_gone_at = time.monotonic()
            # Children that keep the pipes open (a backgrounded `sleep &`) must not hold
            # the step once the leader has exited: give them a moment, then kill the group.
            if leader_gone_at is not None and time.monotonic() - leader_gone_at > 0.5:
                _kill_rest(proc)
                break
        if not outcome.timed_out and not outcome.cancelled:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                outcome.timed_out = True
                kill_group(proc)
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if unregister:
            unregister()
        streams.drain_and_close()
    if cancelled is not None and cancelled.is_set() and not outcome.timed_out:
        outcome.cancelled = True  # killed by the run's cancel, possibly via on_start's hook
    outcome.exit_code = proc.wait()
    return outcome


def _kill_rest(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _LineStreams:
    """stdout and stderr of a process, read without blocking and cut into lines."""

    def __init__(self, proc: subprocess.Popen, emit: Callable[[str, str], None],
                 line_bytes: int) -> None:
        self.emit = emit
        self.selector = selectors.DefaultSelector()
        self.splitters: dict[int, LineSplitter] = {}
        self.names: dict[int, str] = {}
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)
            self.splitters[fd] = LineSplitter(line_bytes)
            self.names[fd] = name
        self.streams = [proc.stdout, proc.stderr]

    @property
    def open(self) -> bool:
        return bool(self.selector.get_map())

    def pump(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            self._read(key.fd)

    def _read(self, fd: int) -> None:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.selector.unregister(fd)
            self._out(fd, self.splitters[fd].flush())
            return
        self._out(fd, self.splitters[fd].feed(chunk))

    def _out(self, fd: int, lines: list[str]) -> None:
        for line in lines:
            self.emit(line, self.names[fd])

    def drain_and_close(self) -> None:
        """Read what is still buffered (without waiting), then close everything."""
        for _ in range(1000):
            ready = self.selector.select(0) if self.open else []
            if not ready:
                break
            for key, _ in ready:
                self._read(key.fd)
        for fd, splitter in self.splitters.items():
            self._out(fd, splitter.flush())
        self.selector.close()
        for stream in self.streams:
            stream.close()
