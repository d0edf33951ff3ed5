"""The I/O pieces of `runs_on: kubernetes`: the step's stop signal (deadline or cancel, which
also ends the reads in flight), exec with a streamed stdin (the workspace's tar) and the tar
helpers."""

from __future__ import annotations

import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.stream import stream
from kubernetes.stream.ws_client import ERROR_CHANNEL, STDERR_CHANNEL, STDOUT_CHANNEL

from ansflow.engines.kube import check_exec_target, decode_exec_status
from ansflow.engines.lines import clean_lines

CHUNK = 256 * 1024


class StopSignal:
    """The step's stop signal (deadline or cancel), and the open reads it must end."""

    def __init__(self, ctx: Any, budget: float | None) -> None:
        self.ctx = ctx
        self.deadline = time.monotonic() + budget if budget is not None else None
        self.reason: str | None = None
        self._open: list[Any] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(budget, self._fire, ("timeout",)) \
            if budget is not None else None
        if self._timer:
            self._timer.daemon = True
            self._timer.start()
        self._unregister = ctx.on_cancel(lambda: self._fire("cancel"))

    def _fire(self, reason: str) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            responses = list(self._open)
        for response in responses:
            try:
                response.shutdown()
            except Exception:  # noqa: BLE001 - the read then fails and ends
                pass

    def watch(self, response: Any) -> None:
        with self._lock:
            self._open.append(response)
            fired = self.reason is not None
        if fired:
            self._fire(self.reason or "cancel")

    def left(self, cap: float) -> float:
        if self.deadline is None:
            return cap
        return max(0.0, min(cap, self.deadline - time.monotonic()))

    def check(self) -> None:
        if self.reason is None and self.deadline is not None \
                and time.monotonic() >= self.deadline:
            self.reason = "timeout"
        if self.reason is not None:
            raise Stopped(self.reason)

    def close(self) -> None:
        if self._timer:
            self._timer.cancel()
        self._unregister()


class Stopped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PodExec:
    """Exec in one container of one pod, stopped by ``stop`` (checked every 0.5 s)."""

    api: k8s.ApiClient
    namespace: str
    pod: str
    container: str
    stop: StopSignal

    def exec_(self, argv: list[str], on_stdout: Callable[[bytes], Any],
              on_stderr: Callable[[bytes], Any],
              produce: Callable[[Callable[[bytes], None]], None] | None = None) -> int:
        check_exec_target(self.namespace, self.pod, self.container)
        core = k8s.CoreV1Api(self.api)
        ws = stream(core.connect_get_namespaced_pod_exec, self.pod, self.namespace,
                    command=argv, container=self.container, stdin=produce is not None,
                    stdout=True, stderr=True, tty=False, _preload_content=False, binary=True)
        sinks = ((STDOUT_CHANNEL, on_stdout), (STDERR_CHANNEL, on_stderr))

        def drain(timeout: float) -> None:
            ws.update(timeout=timeout)
            for channel, sink in sinks:
                chunk = ws.read_channel(channel)
                if chunk:
                    sink(chunk)

        try:
            if produce is not None:
                def write(data: bytes) -> None:
                    self.stop.check()
                    for i in range(0, len(data), CHUNK):
                        ws.write_stdin(data[i:i + CHUNK])
                    drain(0)
                produce(write)
                ws.close_channel(0)  # v5: stdin's end; before v5 tar ends at the archive's end
            while ws.is_open():
                self.stop.check()
                drain(0.5)
            drain(0)
            return decode_exec_status(ws.read_channel(ERROR_CHANNEL))
        finally:
            ws.close()


class StreamWriter:
    """A write-only file object for tarfile's stream mode."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write

    def write(self, data: bytes) -> int:
        self._write(bytes(data))
        return len(data)

    def close(self) -> None:  # pragma: no cover - tarfile closes only files it opened
        pass


def regular_only(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Files, directories and symlinks; devices, FIFOs and sockets are left out."""
    if info.isfile() or info.isdir() or info.issym() or info.islnk():
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info
    return None


def keep(buffer: bytearray, chunk: bytes, limit: int = 4096) -> None:
    buffer += chunk[: max(0, limit - len(buffer))]


def text_of(buffer: bytearray) -> str:
    return " ".join(clean_lines(bytes(buffer).strip().split(b"\n")))[:500]
