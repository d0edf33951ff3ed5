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
never reused.
"""

from __future__ import annotations

import asyncio
import queue
import re
import shlex
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
from ansflow.outputs import MAX_OUTPUT_BYTES

KILL_GRACE = 2
# The watchdog is ended with KILL: a TERM that arrives while the just-forked subshell still
# has the parent's trap handler is lost (the shell then waited for the watchdog, holding the
# reply, until the next stop or the end of stdin). GNU head -c reads exactly n bytes from a
# pipe; another head (BusyBox's reads through stdio) could take the bytes after them, so
# elsewhere dd reads them one byte per read.
RESIDENT = r"""
umask 077
exec 3<&0
if head --version 2>/dev/null | grep -q GNU; then
  take() { head -c "$1"; }
else
  take() { dd bs=1 count="$1" 2>/dev/null; }
fi
trap 'kill -TERM -"$child" 2>/dev/null; sleep 1
  kill -KILL -"$child" 2>/dev/null; exit 129' HUP INT TERM
child=
while IFS= read -r req; do
  [ "$req" = run ] || continue
  IFS= read -r f && IFS= read -r o && IFS= read -r s && IFS= read -r nonce &&
    IFS= read -r n || exit 0
  case $n in ''|*[!0-9]*) exit 0 ;; esac
  code=125
  if mkdir -p "${f%/*}" 2>/dev/null && : > "$f" 2>/dev/null; then
    take "$n" > "$f" || exit 0
    ready=1
  else
    take "$n" > /dev/null || exit 0
    ready=
    echo "ansflow: cannot write the step's script on the host" >&2
  fi
  IFS= read -r check && [ "$check" = "$nonce" ] || exit 0
  if [ -n "$ready" ]; then
    setsid sh "$f" </dev/null 3<&- &
    child=$!
    (
      while IFS= read -r line <&3; do [ "$line" = stop ] && break; done
      kill -TERM -"$child" 2>/dev/null || exit 0
      sleep __GRACE__
      kill -KILL -"$child" 2>/dev/null
    ) >/dev/null 2>&1 &
    dog=$!
    wait "$child" 2>/dev/null
    code=$?
    kill -KILL -"$child" 2>/dev/null
    child=
    kill -KILL "$dog" 2>/dev/null
    wait "$dog" 2>/dev/null
  fi
  len=0
  if [ -n "$o" ] && [ -f "$o" ] && [ ! -L "$o" ] && [ -n "$s" ]; then
    head -c __MAX__ -- "$o" > "$s/.reply" 2>/dev/null && len=$(wc -c < "$s/.reply")
    len=${len##* }
  fi
  printf '\n%s\n' "$nonce" >&2
  printf '\n%s %s %s\n' "$nonce" "$code" "${len:-0}"
  [ "$len" -gt 0 ] 2>/dev/null && cat -- "$s/.reply"
  [ -n "$s" ] && rm -rf -- "$s"
done
""".replace("__GRACE__", str(KILL_GRACE)).replace("__MAX__", str(MAX_OUTPUT_BYTES + 1))
RESIDENT_COMMAND = f"sh -c {shlex.quote(RESIDENT)} ansflow-remote"


@dataclass
class RemoteOutcome:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    outputs: bytes = b""  # the outputs file's content (when one was named)


_REPLY = re.compile(rb" (\d+) (\d+)")


class _Trailer:
    """Splits one stream of a resident shell into the command's output and the reply that
    ends it: a line holding the nonce (stderr), or ``<nonce> <exit code> <length>`` and
    that many bytes of outputs (stdout, ``payload=True``). The shell writes a newline before
    that line: it ends the command's last line, or (when that line had ended) makes one
    empty line, which is dropped. Only an empty line or a possible start of the nonce line
    is held back, so output stays live. Bytes after the reply are dropped."""

    def __init__(self, nonce: str, payload: bool = True) -> None:
        self.nonce = nonce.encode()
        self.payload = payload
        self.pending = b""
        self.at_line_start = True
        self.held_empty = False
        self.code: int | None = None
        self.size = 0
        self.trailer: bytearray | None = None  # the outputs, once the reply line was seen
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done:
            return b""
        if self.trailer is not None:
            self._collect(chunk)
            return b""
        out = bytearray()
        buf, self.pending = self.pending + chunk, b""
        while buf:
            nl = buf.find(b"\n")
            if nl < 0:
                if self.at_line_start and (self.nonce.startswith(buf)
                                           or buf.startswith(self.nonce)):
                    self.pending = buf
                else:
                    out += self._release() + buf
                    self.at_line_start = False
                break
            line, buf = buf[:nl], buf[nl + 1:]
            if not self.at_line_start:
                out += line + b"\n"
                self.at_line_start = True
            elif line.startswith(self.nonce) and self._reply(line[len(self.nonce):]):
                self.held_empty = False
                if self.payload:
                    self.trailer = bytearray()
                    self._collect(buf)
                else:
                    self.done = True
                break
            elif line == b"":
                out += self._release()
                self.held_empty = True
            else:
                out += self._release() + line + b"\n"
        return bytes(out)

    def _reply(self, rest: bytes) -> bool:
        if not self.payload:
            return rest == b""
        match = _REPLY.fullmatch(rest)
        if match is None:
            return False
        self.code, self.size = int(match[1]), int(match[2])
        return True

    def _collect(self, data: bytes) -> None:
        assert self.trailer is not None
        self.trailer += data[:self.size - len(self.trailer)]
        self.done = len(self.trailer) >= self.size

    def _release(self) -> bytes:
        if self.held_empty:
            self.held_empty = False
            return b"\n"
        return b""

    def rest(self) -> bytes:
        out, self.pending = self._release() + self.pending, b""
        return out


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
    stdout: _Trailer = field(init=False)
    stderr: _Trailer = field(init=False)
    stopped: bool = False
    done: bool = False

    def __post_init__(self) -> None:
        self.stdout = _Trailer(self.nonce)
        self.stderr = _Trailer(self.nonce, payload=False)

    @property
    def answered(self) -> bool:
        return self.stdout.done and self.stderr.done


# Idle resident shells per connection (a connection closed and dropped takes its shells).
_IDLE: weakref.WeakKeyDictionary[Any, list[_Shell]] = weakref.WeakKeyDictionary()
opened_shells = 0  # how many resident shells were started (tests and benchmarks read it)


def request_bytes(script_path: str, outputs_path: str, scratch: str, nonce: str,
                  script: bytes) -> bytes:
    """A request to a resident shell (see the module's docstring)."""
    fields = (script_path, outputs_path, scratch, nonce)
    if any("\n" in f or "\r" in f for f in fields):
        raise ValueError("a remote path cannot hold a line break")
    return ("run\n" + "".join(f + "\n" for f in fields) + f"{len(script)}\n").encode() \
        + script + nonce.encode() + b"\n"


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
    async def read(stream: Any, name: str, parser: _Trailer) -> None:
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
