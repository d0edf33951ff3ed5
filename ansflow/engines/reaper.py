"""The worker's reaper: a step's processes die with the ansflow process, even when it is
SIGKILLed, at no cost per spawned process.

One small helper process per ansflow process (``python -I -S -c``, started on the first step
process, in its own session) holds the read end of a pipe whose write end only the ansflow
process holds (close-on-exec, and closed in a child of ``os.fork``). run_process writes
``+<pid>`` when a step process starts and ``-<pid>`` once it has been reaped. The read returns
end-of-file only when the ansflow process is gone, however it ended; the reaper then
SIGKILLs the process group of every step process still registered and every process whose
environment carries this ansflow process's token prefix (each step's ANSFLOW_PROCESS_TOKEN
starts with it), so also a step's grandchildren that left its process group. Then it
removes the process's private directory (``private_dir``), where decrypted SSH keys and
cluster client keys are written: a crashed worker leaves no key file behind.

Why not ``PR_SET_PDEATHSIG`` in a ``preexec_fn``: a preexec function makes CPython's
subprocess fork and exec instead of using vfork (~9 ms instead of ~1 ms per spawn for a
~150 MB worker), and the signal fires when the spawning *thread* exits, not the process. A
pipe closes when the process ends, whichever thread opened it. ``setpriv --pdeathsig`` keeps
vfork but adds a second exec per spawn (~1 ms). The preexec function remains the fallback
when the helper cannot be started; there the spawning thread is the step's own, which blocks
in run_process until its child is reaped, so the thread cannot exit before the child.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable

TOKEN_ENV = "ANSFLOW_PROCESS_TOKEN"
_PR_SET_PDEATHSIG = 1

# Runs in the helper (no site, no user environment). argv[1] is the token prefix.
_HELPER = r"""
import os, signal, sys
needle = b"ANSFLOW_PROCESS_TOKEN=" + sys.argv[1].encode()
signal.signal(signal.SIGINT, signal.SIG_IGN)
leaders, rest = set(), b""
while True:
    try:
        chunk = os.read(0, 4096)
    except InterruptedError:
        continue
    except OSError:
        chunk = b""
    if not chunk:
        break
    *lines, rest = (rest + chunk).split(b"\n")
    for line in lines:
        if line[:1] == b"+" and line[1:].isdigit():
            leaders.add(int(line[1:]))
        elif line[:1] == b"-" and line[1:].isdigit():
            leaders.discard(int(line[1:]))
for pid in leaders:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
me = os.getpid()
for _ in range(5):
    found = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        break
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/" + entry + "/environ", "rb") as fh:
                environ = fh.read(1 << 20)
        except OSError:
            continue
        if environ.startswith(needle) or b"\0" + needle in environ:
            try:
                os.kill(int(entry), signal.SIGKILL)
                found += 1
            except OSError:
                pass
    if not found:
        break
# argv[2]: this ansflow process's private directory (decrypted keys, kubeconfigs).
import shutil
if not os.path.islink(sys.argv[2]):
    shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


class _Reaper:
    """This process's helper and the pipe to it; one per process (reset in a fork child)."""

    def __init__(self) -> None:
        self.prefix = uuid.uuid4().hex[:16] + "-"
        self.private = os.path.join(tempfile.gettempdir(), f"ansflow-worker-{self.prefix[:-1]}")
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.fd: int | None = None
        self.live: set[int] = set()
        self.failed = False

    def ready(self) -> bool:
        """Whether the helper runs (started or restarted here); False if it cannot start."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            return True
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                return True
            if self.failed:
                return False
            self._close()
            try:
                self._start()
            except OSError:
                self.failed = True
                self._close()
                return False
            return True

    def _start(self) -> None:
        if not sys.executable or not os.path.exists("/proc/self/environ"):
            raise OSError("no Python executable or no /proc for the reaper")
        read_fd, write_fd = os.pipe()  # both close-on-exec
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _HELPER, self.prefix, self.private],
                stdin=read_fd,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                cwd="/",  # holds no directory of the worker's busy
            )
        except BaseException:
            os.close(write_fd)
            raise
        finally:
            os.close(read_fd)
        self.fd = write_fd
        if self.live:  # after a restart: the step processes still running
            self._send("".join(f"+{pid}\n" for pid in self.live))

    def _close_pipe(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None

    def _close(self) -> None:
        self._close_pipe()
        if self.proc is not None:
            self.proc.poll()
            self.proc = None

    def _send(self, message: str) -> None:
        fd = self.fd
        if fd is None:
            return
        try:
            os.write(fd, message.encode())  # under PIPE_BUF: atomic among threads
        except OSError:  # the helper is gone: ready() restarts it on the next spawn
            pass

    def track(self, pid: int) -> None:
        self.live.add(pid)
        self._send(f"+{pid}\n")

    def untrack(self, pid: int) -> None:
        if pid in self.live:
            self.live.discard(pid)
            self._send(f"-{pid}\n")

    def after_fork_in_child(self) -> None:
        """A fork child is another process: it must not keep the parent's pipe open."""
        self._close_pipe()
        self.__init__()


_REAPER = _Reaper()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REAPER.after_fork_in_child)


def new_token() -> str:
    """A fresh step token: this process's prefix (what the reaper sweeps) and a random part."""
    return _REAPER.prefix + uuid.uuid4().hex


def guard() -> Callable[[], None] | None:
    """Make sure the reaper runs before a step process is spawned.

    Returns:
        None when the reaper runs (spawn without a preexec function, so vfork is kept), else
        the fallback preexec function setting ``PR_SET_PDEATHSIG`` (Linux), or None when
        neither is available.
    """
    if _REAPER.ready():
        return None
    return _die_with_parent()


def track(pid: int) -> None:
    """Register a step process (the leader of its own process group) with the reaper."""
    _REAPER.track(pid)


def untrack(pid: int) -> None:
    """Unregister a step process once it has been reaped (its pid may be reused)."""
    _REAPER.untrack(pid)


def private_dir() -> str:
    """This process's private directory (0700, under the temporary directory), for files
    that must not outlive it: decrypted SSH keys, cluster client keys and kubeconfigs. The
    reaper removes it when this process ends, even by SIGKILL, after killing the steps'
    processes (started here if it does not run yet). A step's own files inside are
    removed by the step as before; this catches what a crash leaves.

    Raises:
        OSError: the directory cannot be made, or the path is taken by something that is
            not this user's private directory.
    """
    _REAPER.ready()
    path = _REAPER.private
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        info = os.lstat(path)
        if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
                or info.st_mode & 0o077):
            raise OSError(f"{path} exists and is not this user's private directory") from None
    return path


def reaper_pid() -> int | None:
    """The helper's pid, or None (for tests and diagnostics)."""
    proc = _REAPER.proc
    return proc.pid if proc is not None and proc.poll() is None else None


@functools.lru_cache(maxsize=1)
def _load_prctl():  # noqa: ANN202
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function making the child die (SIGKILL) with this process (Linux)."""
    prctl = _load_prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: minimal
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call took effect
            os._exit(137)

    return preexec
