"""A command on an SSH host that dies with its step: live lines, the exact exit code, and a
remote watchdog that ends the whole remote process group on timeout, cancel or a lost
connection (sshd does not forward signals reliably, and a lost connection sends none).

The remote side runs a fixed wrapper (no step value is ever in its argv). It reads the step's
shell script (environment, working directory, the command) from stdin, starts it with
``setsid`` (a process group of its own) and keeps reading stdin: when stdin ends (the client
closed it on timeout or cancel, or the connection is gone), it sends TERM, then KILL, to the
group. After the command ends it kills what the command left running in its group.
"""

from __future__ import annotations

import asyncio
import queue
import shlex
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ansflow.engines.lines import MAX_LINE_BYTES, LineSplitter
from ansflow.engines.ssh import POOL, SshNetworkError, Target, submit
from ansflow.engines.ssh import loop as ssh_loop
from ansflow.outputs import MAX_OUTPUT_BYTES

KILL_GRACE = 2
# $1: the script file to write (in a fresh private directory); the script comes on stdin,
# prefixed by its length in bytes on a line of its own. After the command: when $2 (an
# outputs file) is given, a line holding the nonce $4 and then that file go to stdout (one
# session per step, no second exec to read it); $3 (the step's scratch directory) is removed.
WRAPPER = r"""
umask 077
f=$1
mkdir -p "${f%/*}" || exit 125
IFS= read -r n || exit 125
head -c "$n" > "$f" || exit 125
exec 3<&0
setsid sh "$f" </dev/null &
child=$!
(
  while IFS= read -r _line <&3; do :; done
  kill -TERM -"$child" 2>/dev/null || exit 0
  sleep __GRACE__
  kill -KILL -"$child" 2>/dev/null
) >/dev/null 2>&1 &
dog=$!
exec 3<&-
trap 'kill -TERM -"$child" 2>/dev/null; sleep 1; kill -KILL -"$child" 2>/dev/null' HUP INT TERM
wait "$child" 2>/dev/null
code=$?
kill -KILL -"$child" 2>/dev/null
kill "$dog" 2>/dev/null
if [ -n "$2" ]; then
  printf '\n%s\n' "$4"
  if [ -f "$2" ] && [ ! -L "$2" ]; then head -c __MAX__ -- "$2"; fi
fi
[ -n "$3" ] && rm -rf -- "$3"
exit "$code"
""".replace("__GRACE__", str(KILL_GRACE)).replace("__MAX__", str(MAX_OUTPUT_BYTES + 1))


@dataclass
class RemoteOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    outputs: bytes = b""  # the outputs file's content (when one was named)


def wrapper_command(script_path: str, outputs_path: str = "", scratch: str = "",
                    nonce: str = "") -> str:
    """The remote command line: ``sh -c WRAPPER ansflow-remote SCRIPT OUTPUTS SCRATCH NONCE``."""
    args = " ".join(shlex.quote(a) for a in (script_path, outputs_path, scratch, nonce))
    return f"sh -c {shlex.quote(WRAPPER)} ansflow-remote {args}"


class _Trailer:
    """Splits the wrapper's stdout into the command's output and the outputs trailer that
    follows a line holding the nonce. The wrapper writes a newline before that line: it
    ends the command's last line, or (when that line had ended) makes one empty line,
    which is dropped. Only an empty line or a possible start of the nonce line is held
    back, so output stays live."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce.encode()
        self.pending = b""
        self.at_line_start = True
        self.held_empty = False
        self.trailer: bytearray | None = None

    def feed(self, chunk: bytes) -> bytes:
        if not self.nonce:
            return chunk
        if self.trailer is not None:
            self.trailer += chunk
            return b""
        out = bytearray()
        buf, self.pending = self.pending + chunk, b""
        while buf:
            nl = buf.find(b"\n")
            if nl < 0:
                if self.at_line_start and self.nonce.startswith(buf):
                    self.pending = buf
                else:
                    out += self._release() + buf
                    self.at_line_start = False
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if not self.at_line_start:
                out += line + b"\n"
                self.at_line_start = True
            elif line == self.nonce:
                self.held_empty = False
                self.trailer = bytearray(buf)
                break
            elif line == b"":
                out += self._release()
                self.held_empty = True
            else:
                out += self._release() + line + b"\n"
        return bytes(out)

    def _release(self) -> bytes:
        if self.held_empty:
            self.held_empty = False
            return b"\n"
        return b""

    def rest(self) -> bytes:
        out, self.pending = self._release() + self.pending, b""
        return out


async def _start(conn: Any, command: str, script: bytes) -> Any:
    proc = await conn.create_process(command, encoding=None)
    proc.stdin.write(str(len(script)).encode() + b"\n" + script)
    return proc


async def _pump(proc: Any, out: queue.Queue) -> None:
    async def read(stream: Any, name: str) -> None:
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                return
            out.put((name, chunk))

    await asyncio.gather(read(proc.stdout, "stdout"), read(proc.stderr, "stderr"),
                         return_exceptions=True)
    await proc.wait_closed()
    out.put(("end", None))


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
        run_id: Connections are reused per run id.
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
    try:
        nonce = f"ANSFLOW-END-{uuid.uuid4().hex}" if outputs_path else ""
        command = wrapper_command(script_path, outputs_path, scratch, nonce)
        proc = submit(_start(conn, command, script.encode())).result(
            target.connect_timeout)
    except Exception as exc:  # noqa: BLE001 - asyncssh's channel errors: the link is gone
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: cannot start the command: "
                              f"{getattr(exc, 'reason', None) or type(exc).__name__}") from None
    lines: queue.Queue = queue.Queue()
    pump = submit(_pump(proc, lines))
    began = time.monotonic()
    splitters = {n: LineSplitter(MAX_LINE_BYTES, masker) for n in ("stdout", "stderr")}
    trailer = _Trailer(nonce)
    deadline = None if timeout is None else time.monotonic() + timeout
    outcome = RemoteOutcome(exit_code=None)
    stopped_at: float | None = None
    while True:
        try:
            name, chunk = lines.get(timeout=0.05)
        except queue.Empty:
            name, chunk = "", None
        if name == "end":
            break
        if chunk is not None:
            data = trailer.feed(chunk) if name == "stdout" else chunk
            for line in splitters[name].feed(data) if data else ():
                emit(line, name)
        if stopped_at is None:
            if cancelled is not None and cancelled.is_set():
                outcome.cancelled = True
            elif deadline is not None and time.monotonic() >= deadline:
                outcome.timed_out = True
            if outcome.cancelled or outcome.timed_out:
                stopped_at = time.monotonic()
                _stop(proc)
        elif time.monotonic() - stopped_at > KILL_GRACE + 5:
            proc.close()  # the watchdog also sees the channel close
            break
    rest = trailer.rest()
    for line in splitters["stdout"].feed(rest) if rest else ():
        emit(line, "stdout")
    for name, splitter in splitters.items():
        for line in splitter.flush():
            emit(line, name)
    status, signal_name = proc.exit_status, proc.exit_signal
    if not (outcome.cancelled or outcome.timed_out):
        # The channel ended just as the step was cancelled or ran out of time (before the
        # loop saw it): that is the outcome; the watchdog ends what is left on the host.
        if cancelled is not None and cancelled.is_set():
            outcome.cancelled = True
        elif deadline is not None and time.monotonic() >= deadline:
            outcome.timed_out = True
    if outcome.cancelled or outcome.timed_out:
        outcome.exit_code = status if status is not None and status >= 0 else None
        return outcome
    pump.result(1)
    if status is None or (status < 0 and signal_name is None):
        POOL.drop(run_id, target)
        raise SshNetworkError(f"{target.where}: the connection was lost while the command "
                              f"ran, {time.monotonic() - began:.1f}s after it started (its "
                              "remote processes are ended by the watchdog)")
    outcome.exit_code = status if status >= 0 else -1  # -1: the wrapper died of a signal
    if trailer.trailer is None and nonce and status >= 0:
        raise SshNetworkError(f"{target.where}: the command's end was not seen (the output "
                              "stream was cut)")
    outcome.outputs = bytes(trailer.trailer or b"")
    return outcome


def _stop(proc: Any) -> None:
    """End the remote command: close its stdin (the watchdog kills the process group)."""
    def close() -> None:
        try:
            proc.stdin.write_eof()
        except Exception:  # noqa: BLE001 - the channel is already gone
            proc.close()

    ssh_loop().call_soon_threadsafe(close)
