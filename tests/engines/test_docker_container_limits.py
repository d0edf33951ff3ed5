"""The bound on a container's argv and environment, checked before any engine request."""

from __future__ import annotations

import socket
import threading

import pytest

from ansflow.engines.docker_container import (
    MAX_ARGV_ENV_BYTES,
    MAX_EXECUTABLE_BYTES,
    ContainerSpec,
    check_spec_size,
    run_container,
)
from ansflow.engines.errors import EngineError

LONG = "a" * (100 * 1024)


@pytest.mark.parametrize("spec", [
    ContainerSpec(image="busybox", command=[LONG]),
    ContainerSpec(image="busybox", command=["echo", LONG]),
    ContainerSpec(image="busybox", entrypoint=[LONG]),
    ContainerSpec(image="busybox", entrypoint=["sh", "-c"], command=[LONG]),
    ContainerSpec(image="busybox", command=["true"], env={"V": LONG}),
    ContainerSpec(image="busybox", command=["a" * (MAX_EXECUTABLE_BYTES + 1)]),
    # Counted in bytes, not characters; a non-UTF-8 byte (a lone surrogate) counts too.
    ContainerSpec(image="busybox", command=["echo", "é" * (MAX_ARGV_ENV_BYTES // 2)]),
    ContainerSpec(image="busybox", command=["echo", "\udcff" * (MAX_ARGV_ENV_BYTES // 3)]),
], ids=["command", "argument", "entrypoint", "entrypoint-and-command", "env", "executable",
        "multibyte", "non-utf8"])
def test_too_large_is_refused_without_the_value(spec):
    with pytest.raises(EngineError) as caught:
        check_spec_size(spec)
    message = str(caught.value)
    assert "a" * 61 not in message and "é" * 61 not in message
    assert len(message) < 400


def test_within_the_bounds_passes():
    check_spec_size(ContainerSpec(image="busybox", command=["a" * MAX_EXECUTABLE_BYTES]))
    check_spec_size(ContainerSpec(
        image="busybox", command=["echo", "a" * (MAX_ARGV_ENV_BYTES - 100)]))
    # An entrypoint names the executable: the command's first word is only an argument.
    check_spec_size(ContainerSpec(
        image="busybox", entrypoint=["echo"], command=["a" * (MAX_EXECUTABLE_BYTES * 4)]))
    check_spec_size(ContainerSpec(image="busybox", env={"V": "a" * 1000}))


def test_refused_before_any_request_to_the_engine(tmp_path):
    """A listening socket as the engine: the refusal comes without a connection to it."""
    path = tmp_path / "engine.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.2)
    connections: list[object] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append(conn)
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        with pytest.raises(EngineError, match="bytes"):
            run_container(ContainerSpec(image="busybox", command=[LONG]),
                          emit=lambda line, stream: None, deadline=lambda: 5.0,
                          stopped=lambda: False, on_stop=lambda cleanup: lambda: None,
                          base_url=f"unix://{path}")
    finally:
        server.close()
    assert connections == []
