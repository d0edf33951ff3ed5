"""Starting, probing and stopping the dev cluster's processes, identified by recorded PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ansflow.devcluster.errors import ComponentFailed, DevClusterError

LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class ProcessRecord:
    """One started component: its PID and kernel start time (guards against PID reuse)."""

    pid: int
    start_ticks: int
    log: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProcessRecord:
        return cls(int(data["pid"]), int(data["start_ticks"]), str(data["log"]))


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free right now (held open together)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_in_use(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def start_process(argv: Sequence[str], log_path: Path, cwd: Path) -> ProcessRecord:
    """Start a component in its own session (so it outlives the CLI), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n=== ansflow: starting {' '.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise DevClusterError(f"cannot start {argv[0]}: {exc}") from exc
    stat = _proc_stat(proc.pid)
    return ProcessRecord(proc.pid, stat[1] if stat else 0, str(log_path))


def is_alive(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs (same PID *and* same start time, not a zombie)."""
    stat = _proc_stat(record.pid)
    if stat is None or stat[1] != record.start_ticks:
        return False
    if stat[0] in ("Z", "X"):
        # A multi-threaded leader shows Z while its other threads still exit, holding its
        # sockets open: it is gone only when no thread is left.
        if _live_threads(record.pid) > 1:
            return True
        _reap(record.pid)
        return False
    return True


def _live_threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _reap(pid: int) -> None:
    # Only our own children can be reaped; for the CLI they belong to init already.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_process(record: ProcessRecord, timeout: float = 10.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after `timeout`; no-op when it is gone."""
    stop_processes([record], timeout)


def stop_processes(records: Sequence[ProcessRecord], timeout: float = 10.0) -> None:
    """SIGTERM every recorded process at once, then SIGKILL those still alive after `timeout`."""
    for record in records:
        if is_alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGTERM)
    for sig_deadline, sig in ((timeout, signal.SIGKILL), (5.0, None)):
        deadline = time.monotonic() + sig_deadline
        while any(is_alive(r) for r in records) and time.monotonic() < deadline:
            time.sleep(0.05)
        if sig is None:
            return
        for record in records:
            if is_alive(record):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.pid, sig)


def log_tail(log_path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a component's log (empty when there is none)."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def http_ok(url: str, context: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    """Whether GET url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def tls_context(ca: Path | None, cert: Path | None = None, key: Path | None = None):
    """An SSL context trusting `ca` (or nothing checked when None), with a client cert."""
    if ca is None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    component: str,
    record: ProcessRecord | None,
    timeout: float,
    interval: float = 0.1,
) -> None:
    """Poll `check` until it is true; fail early, with the log tail, if the process dies.

    Raises:
        ComponentFailed: the process exited or `timeout` passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if record is not None and not is_alive(record):
            raise ComponentFailed(
                f"{component} exited during start-up (waiting for {what}); last log lines "
                f"of {record.log}:\n{log_tail(record.log)}"
            )
        if time.monotonic() > deadline:
            tail = f"; last log lines of {record.log}:\n{log_tail(record.log)}" if record else ""
            raise ComponentFailed(f"{component}: no {what} after {timeout:.0f} s{tail}")
        time.sleep(interval)
