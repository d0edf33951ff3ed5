"""Run kwok where only the API server reaches its kubelet API (exec, logs).

kwok (v0.8.0) serves its kubelet API without any client authentication, HTTP and HTTPS on
one TCP port (pkg/kwok/server/server.go), and runs exec'd commands on the host as its own
user. This guard runs kwok in a network namespace of its own, where nothing else listens
or connects, and bridges exactly two things across:

* the host's 127.0.0.1:<kwok port> (what the Node advertises and the API server dials) is a
  TLS server that requires a client certificate of the cluster's CA (the API server's
  `--kubelet-client-certificate`); each accepted connection is forwarded, decrypted, to kwok
  inside the namespace;
* inside the namespace, 127.0.0.1:<API server port> forwards to the host's API server, so
  kwok's kubeconfig works unchanged (TLS end to end, kwok authenticates itself as before).

Usage (the dev-cluster manager starts it): ``python -m ansflow.devcluster.kwok_guard CA CERT
KEY KWOK_PORT API_PORT -- KWOK_ARGV...``. Creating a network namespace needs root (Linux);
``isolation_available()`` says whether this process may.
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys

CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP = 0x1
_PR_SET_PDEATHSIG = 1
_CHUNK = 64 * 1024


def isolation_available() -> bool:
    """Whether kwok can be isolated here (Linux, root: creating a network namespace)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0 and os.path.exists(
        "/proc/self/ns/net")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError, ssl.SSLError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def _bridge(client: tuple, upstream_sock: socket.socket, address: tuple) -> None:
    c_reader, c_writer = client
    loop = asyncio.get_running_loop()
    try:
        upstream_sock.setblocking(False)
        await loop.sock_connect(upstream_sock, address)
        u_reader, u_writer = await asyncio.open_connection(sock=upstream_sock)
    except OSError:
        upstream_sock.close()
        c_writer.close()
        return
    await asyncio.gather(_pump(c_reader, u_writer), _pump(u_reader, c_writer))
    for w in (c_writer, u_writer):
        w.close()


async def _serve(host_listener: socket.socket, inner_listener: socket.socket,
                 tls: ssl.SSLContext, kwok_port: int, api_port: int, host_ns: int,
                 inner_ns: int, kwok: subprocess.Popen) -> None:
    libc = _libc()

    def host_socket() -> socket.socket:
        # A socket belongs to the namespace it was created in: create it in the host's.
        _check(libc.setns(host_ns, CLONE_NEWNET), "setns(host)")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _check(libc.setns(inner_ns, CLONE_NEWNET), "setns(kwok)")

    async def to_kwok(reader, writer):  # host side, client certificate verified by TLS
        await _bridge((reader, writer), socket.socket(), ("127.0.0.1", kwok_port))

    async def to_apiserver(reader, writer):  # inside: kwok's calls to the API server
        await _bridge((reader, writer), host_socket(), ("127.0.0.1", api_port))

    outer = await asyncio.start_server(to_kwok, sock=host_listener, ssl=tls,
                                       ssl_handshake_timeout=10)
    inner = await asyncio.start_server(to_apiserver, sock=inner_listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with outer, inner:
        while not stop.is_set() and kwok.poll() is None:
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except asyncio.TimeoutError:
                pass


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


def main(argv: list[str]) -> int:
    ca, cert, key, kwok_port, api_port, sep, *kwok_argv = argv
    if sep != "--" or not kwok_argv:
        print("usage: kwok_guard CA CERT KEY KWOK_PORT API_PORT -- KWOK_ARGV...",
              file=sys.stderr)
        return 2
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.minimum_version = ssl.TLSVersion.TLSv1_2
    tls.load_cert_chain(cert, key)
    tls.load_verify_locations(ca)
    tls.verify_mode = ssl.CERT_REQUIRED
    libc = _libc()
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    host_listener = _listener(int(kwok_port))  # bound in the host's namespace
    _check(libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _loopback_up()
    inner_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    inner_listener = _listener(int(api_port))

    def die_with_guard() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    kwok = subprocess.Popen(kwok_argv, preexec_fn=die_with_guard)  # noqa: PLW1509
    print(f"kwok_guard: kwok (pid {kwok.pid}) in its own network namespace; its kubelet API "
          f"on 127.0.0.1:{kwok_port} requires a client certificate", file=sys.stderr,
          flush=True)
    try:
        asyncio.run(_serve(host_listener, inner_listener, tls, int(kwok_port), int(api_port),
                           host_ns, inner_ns, kwok))
    finally:
        if kwok.poll() is None:
            kwok.terminate()
            try:
                kwok.wait(5)
            except subprocess.TimeoutExpired:
                kwok.kill()
    return kwok.returncode or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
