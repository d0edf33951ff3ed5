"""The one subprocess runner: live line streaming, deadline and cancellation that kill the
whole process group, bounded memory whatever the process prints.

Nothing a step starts outlives it: every process of the step carries a token in its
environment (ANSFLOW_PROCESS_TOKEN, inherited by all descendants, also those that left the
process group with `setsid` or a double fork), and at the step's end, timeout or cancel every
process carrying it is ended (TERM, a grace period, KILL). When the ansflow process itself
dies (even by SIGKILL), the worker's reaper (ansflow.engines.reaper) kills the step's process
group and everything carrying a token of this process; spawning stays on CPython's vfork path
(no preexec function).
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ansflow.engines import pidrange, reaper
from ansflow.engines.errors import EngineError
from ansflow.engines.lines import MAX_LINE_BYTES, LineSplitter

READ_CHUNK = 65536
SHOWN_CHARS = 80  # how much of a refused program, argument or directory a message repeats
KILL_GRACE = 2.0
TOKEN_ENV = reaper.TOKEN_ENV


def _marked_processes(token: str, since: pidrange.PidCursor | None = None) -> list[int]:
    """Pids of live processes whose environment carries ``token`` (Linux /proc); with
    ``since`` (the pid cursor before the step started) only those created after it, when
    that set is known for sure (ansflow.engines.pidrange)."""
    needle = f"{TOKEN_ENV}={token}".encode() + b"\0"
    found: list[int] = []
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    span = pidrange.created_range(since, pidrange.cursor(), pidrange.pid_max()) if since \
        else None
    low, high = span if span is not None else (0, float("inf"))
    for entry in entries:
        if not entry.isdigit() or int(entry) == me or not low < int(entry) <= high:
            continue
        environ = _read_environ(entry)
        if (environ.startswith(needle) or b"\0" + needle in environ) and not _zombie(entry):
            found.append(int(entry))
    return found


def _read_environ(pid: str, limit: int = 1 << 20) -> bytes:
    """The start of a process's environment block, b"" when it is gone or not ours to read.

    Read in 64 KiB pieces: ``read(1 << 20)`` on a file object allocates (and maps) the whole
    MiB for every process, which made one scan of /proc ~4x slower (it runs at every step's end).
    """
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY)
    except OSError:
        return b""
    try:
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return b""
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _zombie(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def kill_marked(token: str, leader: int | None = None, grace: float = KILL_GRACE,
                since: pidrange.PidCursor | None = None) -> int:
    """End every process carrying ``token``: TERM, up to ``grace`` seconds, then KILL.
    ``leader`` (the step's own child, reaped by its Popen) is never reaped here; ``since``:
    the pid cursor from before the step started (narrows the scan). Returns how many
    processes there were."""
    pids = _marked_processes(token, since)
    count = len(pids)
    if not count:
        return 0  # the usual case: one scan of /proc
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.02)
            _reap([p for p in pids if p != leader])
            pids = [p for p in pids if not _zombie(str(p))]
    _reap([p for p in _marked_processes(token, since) if p != leader])
    return count


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those that are our own children (re-parented orphans)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


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
    masker: Any = None,
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
        masker: The run's ``Masker``: a long line is never cut inside a secret.

    Returns:
        The exit code (negative signal number when killed) and why it ended.

    Raises:
        FileNotFoundError / PermissionError: the program cannot be started.
        EngineError: a NUL byte in ``argv``, ``cwd`` or ``env`` (refused before the spawn), or
            another reason the program cannot be started (a name too long, ...).
    """
    check_spawnable(argv, cwd, env)
    token = reaper.new_token()
    since = pidrange.cursor()  # before the spawn: the step's processes all come after it
    # No preexec function when the reaper runs: CPython then spawns with vfork (start_new_session
    # and close_fds keep that path; a preexec_fn, user, group or groups would not).
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env={**env, TOKEN_ENV: token}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=reaper.guard(),  # noqa: PLW1509 (None, or the fallback without a reaper)
        )
    except (FileNotFoundError, PermissionError):
        raise  # the callers turn these into "not found" / "permission denied" (127 / 126)
    except OSError as exc:  # ENAMETOOLONG, E2BIG, ENOEXEC, ...: the user's value, not a bug
        raise EngineError(f"cannot start {shown(argv[0])}: "
                         f"{exc.strerror or exc}") from None
    reaper.track(proc.pid)

    def kill_all() -> None:
        kill_group(proc)
        kill_marked(token, proc.pid, since=since)

    unregister = on_start(kill_all) if on_start else None
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = ProcessOutcome(exit_code=None)
    streams = _LineStreams(proc, emit, line_bytes, masker)
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
        # Whatever the step started and left behind, in or out of its process group.
        kill_marked(token, proc.pid, since=since)
        if proc.poll() is not None:  # reaped: its pid may be reused from now on
            reaper.untrack(proc.pid)
    if cancelled is not None and cancelled.is_set() and not outcome.timed_out:
        outcome.cancelled = True  # killed by the run's cancel, possibly via on_start's hook
    outcome.exit_code = proc.wait()
    reaper.untrack(proc.pid)
    return outcome


def shown(value: str) -> str:
    """``value`` as a message repeats it: quoted, cut to SHOWN_CHARS."""
    if len(value) <= SHOWN_CHARS:
        return repr(value)
    return f"{value[:SHOWN_CHARS]!r}... ({len(value)} characters)"


def check_spawnable(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """Refuse what no process can receive, before the spawn: a NUL byte ends a C string, so
    the kernel would get another value than the one given (Popen raises ValueError for it).

    Raises:
        EngineError: a NUL in the program, an argument or the working directory, or a NUL or
            ``=`` in an environment variable's name, or a NUL in its value (not repeated: it
            may be a secret).
    """
    if not argv:
        raise EngineError("the command is empty: there is no program to start")
    for index, arg in enumerate(argv):
        if "\0" in arg:
            what = f"the program {shown(arg)}" if index == 0 else \
                f"argument {index} of the command ({shown(arg)})"
            raise EngineError(f"{what} contains a NUL byte, which no program can receive")
    if "\0" in cwd:
        raise EngineError(f"the working directory {shown(cwd)} contains a NUL byte, which no "
                         "path can hold")
    for name, value in env.items():
        if "\0" in name or "=" in name or not name:
            raise EngineError(f"the environment variable name {shown(name)} is not one a "
                             "process can receive (empty, or holding '=' or a NUL byte)")
        if "\0" in value:
            raise EngineError(f"the environment variable {shown(name)} has a NUL byte in its "
                             "value, which no process can receive")


def _kill_rest(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _LineStreams:
    """stdout and stderr of a process, read without blocking and cut into lines."""

    def __init__(self, proc: subprocess.Popen, emit: Callable[[str, str], None],
                 line_bytes: int, masker: Any = None) -> None:
        self.emit = emit
        self.selector = selectors.DefaultSelector()
        self.splitters: dict[int, LineSplitter] = {}
        self.names: dict[int, str] = {}
        for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self.selector.register(fd, selectors.EVENT_READ)
            self.splitters[fd] = LineSplitter(line_bytes, masker)
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
