"""A command on an SSH host that dies with its step: live lines, the exact exit code, and a
remote watchdog that ends the whole remote process group on timeout, cancel or a lost
connection (sshd does not forward signals reliably, and a lost connection sends none).

Steps do not open an SSH session each: a session costs the host a fork, the user's login
shell and its rc files (100-300 ms on common hosts). Each run keeps resident shells on each
host it reaches, one per step running there at a time, and hands them the steps one after
another. A resident shell runs a fixed program (no step value is ever in its argv) that
reads requests from stdin:

    run                 a request starts
    <script path>       where to write the step's shell script (its directory is created)
    <outputs path>      a file whose content is handed back after the command ("" for none)
    <scratch dir>       a directory removed after the command ("" for none)
    <nonce>             a random token framing the replies
    <n>                 the script's length in bytes, then the n bytes of the script
    <nonce>             again: a request that does not end with it ends the shell

It starts the script with ``setsid`` (a process group of its own) and, while it runs, a
watchdog reads stdin: a ``stop`` line (timeout or cancel) or the end of stdin (the
connection is gone) sends TERM, then KILL, to the group. When the command has ended, the
shell kills what it left running in its group and replies on stderr with a line holding the
nonce, and on stdout with a line ``<nonce> <exit code> <length>`` and that many bytes of the
outputs file. A shell that was stopped, or whose reply was not what it should be, is closed,
never reused. The program, the request and the reply parser are in ``ssh_resident``; this
module pumps requests through the run's connections.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ansflow.engines.lines import MAX_LINE_BYTES, LineSplitter
from ansflow.engines.ssh import POOL, SshNetworkError, Target, submit
from ansflow.engines.ssh import loop as ssh_loop
from ansflow.engines.ssh_resident import (  # noqa: F401 - RESIDENT, request_bytes: public here
    KILL_GRACE,
    RESIDENT,
    RESIDENT_COMMAND,
    Trailer,
    request_bytes,
)


@dataclass
class RemoteOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    outputs: bytes = b""  # the outputs file's content (when one was named)


@dataclass(eq=False)
class _Shell:
    """A resident shell on a host (one SSH session), serving one step at a time."""

    proc: Any

    def usable(self) -> bool:
        return not self.proc.is_closing() and self.proc.exit_status is None


@dataclass(eq=False)
class _Request:
    """One step on a resident shell (its fields are touched on the SSH loop only, until
    the step's thread has seen ``("end", None)`` on ``lines``)."""

    shell: _Shell
    nonce: str
    lines: queue.Queue = field(default_factory=queue.Queue)
    stdout: Trailer = field(init=False)
    stderr: Trailer = field(init=False)
    stopped: bool = False
    done: bool = False

    def __post_init__(self) -> None:
        self.stdout = Trailer(self.nonce)
        self.stderr = Trailer(self.nonce, payload=False)

    @property
    def answered(self) -> bool:
        return self.stdout.done and self.stderr.done


# Idle resident shells per connection (a connection closed and dropped takes its shells).
_IDLE: weakref.WeakKeyDictionary[Any, list[_Shell]] = weakref.WeakKeyDictionary()
opened_shells = 0  # how many resident shells were started (tests and benchmarks read it)


async def _begin(conn: Any, request: bytes, nonce: str) -> _Request:
    """Hand ``request`` to an idle resident shell of ``conn`` (or a new one)."""
    global opened_shells
    idle = _IDLE.setdefault(conn, [])
    shell = None
    while idle:
        candidate = idle.pop()
        if candidate.usable():
            shell = candidate
            break
        candidate.proc.close()
    if shell is None:
        shell = _Shell(await conn.create_process(RESIDENT_COMMAND, encoding=None))
        opened_shells += 1
    shell.proc.stdin.write(request)
    return _Request(shell, nonce)


async def _pump(conn: Any, req: _Request) -> None:
    """Read the shell's streams up to its reply (live lines into ``req.lines``); then hand
    the shell back as idle, or close it when it was stopped or did not answer."""
    async def read(stream: Any, name: str, parser: Trailer) -> None:
        while not parser.done:
            chunk = await stream.read(65536)
            if not chunk:
                return
            data = parser.feed(chunk)
            if data:
                req.lines.put((name, data))

    proc = req.shell.proc
    await asyncio.gather(read(proc.stdout, "stdout", req.stdout),
                         read(proc.stderr, "stderr", req.stderr), return_exceptions=True)
    req.done = True
    if req.answered and not req.stopped and req.shell.usable():
        _IDLE.setdefault(conn, []).append(req.shell)
    else:
        proc.close()
    req.lines.put(("end", None))


def run_remote(
    target: Target,
    run_id: str,
    script_path: str,
    script: str,
    *,
    outputs_path: str = "",
    scratch: str = "",
    emit: Callable[[str, str], None],
    timeout: float | None = None,
    cancelled: threading.Event | None = None,
    masker: Any = None,
) -> RemoteOutcome:
    """Run the shell ``script`` on ``target`` (written to ``script_path`` there, 0600).

    Args:
        target: The host.
        run_id: Connections and resident shells are reused per run id.
        script_path: Where the script is written on the host (its directory is created).
        script: The POSIX shell script (the step's env exports, cd, the command).
        outputs_path: A file on the host whose content is handed back (``outputs``).
        scratch: A directory on the host removed when the command has ended.
        emit: Called with (line, "stdout"|"stderr") for each line, as it arrives.
        timeout: Seconds until the remote process group is ended.
        cancelled: When set, the remote process group is ended.
        masker: The run's Masker (a long line is never cut inside a secret).

    Returns:
        The exit code (128 + N when the command died of signal N), why it ended, and the
        outputs file's content.

    Raises:
        SshNetworkError: the host cannot be reached or the connection was lost mid-step.
        SshHostKeyError / SshAuthError: host key or credentials refused.
    """
    conn = submit(POOL.get(run_id, target)).result()
    try:
        return _run_on(conn, target, run_id, script_path, script, outputs_path, scratch,
                       emit, timeout, cancelled, masker)
    finally:
        POOL.release(run_id, target)


def _run_on(conn: Any, target: Target, run_id: str, script_path: str, script: str,
            outputs_path: str, scratch: str, emit: Callable[[str, str], None],
            timeout: float | None, cancelled: threading.Event | None,
            masker: Any) -> RemoteOutcome:
    nonce = f"ANSFLOW-END-{uuid.uuid4().hex}"
    request = request_bytes(script_path, outputs_path, scratch, nonce, script.encode())
    try:
        req = submit(_begin(conn, request, nonce)).result(target.connect_timeout)
    except Exception as exc:  # noqa: BLE001 - asyncssh's channel errors: the link is gone
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: cannot start the command: "
                              f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None
    submit(_pump(conn, req))
    began = time.monotonic()
    splitters = {n: LineSplitter(MAX_LINE_BYTES, masker) for n in ("stdout", "stderr")}
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = RemoteOutcome(exit_code=None)
    stopped_at: float | None = None
    ended = False
    while True:
        try:
            name, chunk = req.lines.get(timeout=0.05)
        except queue.Empty:
            name, chunk = "", None
        if name == "end":
            ended = True
            break
        if chunk is not None:
            for line in splitters[name].feed(chunk):
                emit(line, name)
        if stopped_at is None:
            if cancelled is not None and cancelled.is_set():
                outcome.cancelled = True
            elif deadline is not None and time.monotonic() >= deadline:
                outcome.timed_out = True
            if outcome.cancelled or outcome.timed_out:
                stopped_at = time.monotonic()
                _stop(req)
        elif time.monotonic() - stopped_at > KILL_GRACE + 5:
            # The watchdog also sees the channel close.
            ssh_loop().call_soon_threadsafe(req.shell.proc.close)
            break
    if ended:
        for name, parser in (("stdout", req.stdout), ("stderr", req.stderr)):
            rest = parser.rest()
            for line in splitters[name].feed(rest) if rest else ():
                emit(line, name)
    for name, splitter in splitters.items():
        for line in splitter.flush():
            emit(line, name)
    answered = ended and req.answered
    if not (outcome.cancelled or outcome.timed_out):
        # The reply came just as the step was cancelled or ran out of time (before the
        # loop saw it): that is the outcome; the watchdog ends what is left on the host.
        if cancelled is not None and cancelled.is_set():
            outcome.cancelled = True
        elif deadline is not None and time.monotonic() >= deadline:
            outcome.timed_out = True
    if outcome.cancelled or outcome.timed_out:
        outcome.exit_code = req.stdout.code if answered else None
        return outcome
    if not answered:
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: the connection was lost while the command "
                              f"ran, {time.monotonic() - began:.1f}s after it started (its "
                              "remote processes are ended by the watchdog)")
    outcome.exit_code = req.stdout.code
    outcome.outputs = bytes(req.stdout.trailer or b"") if outputs_path else b""
    return outcome


def _stop(req: _Request) -> None:
    """End the remote command: a ``stop`` line for the shell's watchdog (it kills the
    process group). Never once the reply is in: the shell may serve another step by then."""
    def stop() -> None:
        if req.done:
            return
        req.stopped = True
        try:
            req.shell.proc.stdin.write(b"stop\n")
        except Exception:  # noqa: BLE001 - the channel is already gone
            req.shell.proc.close()

    ssh_loop().call_soon_threadsafe(stop)
