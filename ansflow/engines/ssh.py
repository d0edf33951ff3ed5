"""SSH connections (asyncssh): one private event loop thread, strict host keys, connections
reused within a run, and errors that say whether the network, the host key or the
authentication failed.

asyncssh is asynchronous; the step executors are plain threads. Every coroutine runs on one
daemon loop thread (`submit`), and the executors wait on its futures.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ansflow.engines.errors import EnginePermanent, EngineTransient
from ansflow.engines.ssh_keys import host_keys, load_client_key

IDLE_SECONDS = 60.0  # a pooled connection unused this long is closed


class SshNetworkError(EngineTransient):
    """The host cannot be reached, or the connection was lost (worth a retry)."""


class SshHostKeyError(EnginePermanent):
    """The server's host key is not one of the block's known keys (never retried)."""


class SshAuthError(EnginePermanent):
    """The server refused the credentials (never retried)."""


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def loop() -> asyncio.AbstractEventLoop:
    """The SSH event loop (started on first use, a daemon thread)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            new = asyncio.new_event_loop()
            threading.Thread(target=new.run_forever, daemon=True, name="ansflow-ssh").start()
            _loop = new
        return _loop


def submit(coro: Coroutine) -> Future:
    """Run ``coro`` on the SSH loop; a concurrent Future of its result."""
    return asyncio.run_coroutine_threadsafe(coro, loop())


def call(coro: Coroutine, timeout: float | None = None) -> Any:
    """Run ``coro`` on the SSH loop and wait for its result (raises what it raises)."""
    return submit(coro).result(timeout)


@dataclass(frozen=True)
class Target:
    """What a connection needs of an SshHost block (secrets in clear: never log this)."""

    name: str
    hostname: str
    port: int
    username: str
    known_host_keys: tuple[str, ...]
    private_key: str | None = None
    passphrase: str | None = None
    password: str | None = None
    connect_timeout: float = 15.0
    jump: Target | None = None

    @classmethod
    def from_block(cls, name: str, block: Any, jump: Target | None = None) -> Target:
        def secret(value: Any) -> str | None:
            return value.get_secret_value() if value is not None else None

        return cls(name=name, hostname=block.hostname, port=block.port,
                   username=block.username, known_host_keys=tuple(block.known_host_keys),
                   private_key=secret(block.private_key), passphrase=secret(block.passphrase),
                   password=secret(block.password), connect_timeout=block.connect_timeout,
                   jump=jump)

    @property
    def where(self) -> str:
        return f"host {self.name!r} ({self.username}@{self.hostname}:{self.port})"


async def open_connection(target: Target) -> Any:
    """A new, authenticated connection to ``target`` (through its jump host, if any).

    Raises:
        SshNetworkError: unreachable, refused, timed out, or closed during the handshake.
        SshHostKeyError: the server's key is not one of the known keys.
        SshAuthError: the credentials were refused, or the key cannot be read.
    """
    import asyncssh  # noqa: PLC0415

    try:
        keys = host_keys(list(target.known_host_keys), target.hostname, target.port)
    except ValueError as exc:
        raise SshHostKeyError(f"{target.where}: {exc}") from None
    client_keys = None
    if target.private_key:
        try:
            client_keys = [load_client_key(target.private_key, target.passphrase)]
        except ValueError as exc:
            raise SshAuthError(f"{target.where}: authentication: {exc}") from None
    tunnel = await open_connection(target.jump) if target.jump is not None else ()
    try:
        return await asyncssh.connect(
            target.hostname, target.port, tunnel=tunnel, username=target.username,
            known_hosts=(list(keys.trusted), [], list(keys.revoked)), client_keys=client_keys,
            password=target.password,
            agent_path=None, config=None, connect_timeout=target.connect_timeout,
            preferred_auth="publickey,password" if client_keys else "password,"
                                                                     "keyboard-interactive",
            keepalive_interval=15, keepalive_count_max=3, x509_trusted_certs=None,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        raise SshHostKeyError(
            f"{target.where}: host key refused: the server's key is not one of the block's "
            f"known_host_keys ({exc.reason})",
            hint="if the server's key really changed, check it out of band, then update the "
                 f"block: ansflow host add {target.name} --known-host-key ... --overwrite",
        ) from None
    except asyncssh.PermissionDenied as exc:
        raise SshAuthError(
            f"{target.where}: authentication failed: the server refused "
            f"{'the private key' if client_keys else 'the password'} ({exc.reason})",
            hint="check the block's username and key or password "
                 f"(ansflow host check {target.name})") from None
    except (asyncssh.DisconnectError, asyncssh.ConnectionLost) as exc:
        raise SshNetworkError(f"{target.where}: the connection closed during the handshake: "
                              f"{exc.reason}") from None
    except (TimeoutError, asyncio.TimeoutError):
        raise SshNetworkError(f"{target.where}: network: no answer within "
                              f"{target.connect_timeout:g}s") from None
    except socket.gaierror as exc:
        raise SshNetworkError(f"{target.where}: network: cannot resolve {target.hostname!r} "
                              f"({exc.strerror})") from None
    except OSError as exc:
        raise SshNetworkError(f"{target.where}: network: cannot connect "
                              f"({exc.strerror or type(exc).__name__})") from None


class Pool:
    """Connections reused within a run: one per (run id, host), closed when idle.

    ``get`` leases the connection until the matching ``release``: a leased connection is
    never closed as idle, however long its command runs.
    """

    def __init__(self) -> None:
        self._conns: dict[tuple[str, Target], tuple[Any, float]] = {}
        self._leases: dict[tuple[str, Target], int] = {}
        self._used: dict[str, set[Target]] = {}  # run id -> the hosts its steps reached
        self._lock: asyncio.Lock | None = None
        self.opened = 0  # how many connections were opened (tests and benchmarks read it)

    async def get(self, run_id: str, target: Target) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._close_idle()
            key = (run_id, target)
            self._used.setdefault(run_id, set()).add(target)
            entry = self._conns.get(key)
            if entry is not None and not _closed(entry[0]):
                conn = entry[0]
            else:
                conn = await open_connection(target)
                self.opened += 1
            self._conns[key] = (conn, time.monotonic())
            self._leases[key] = self._leases.get(key, 0) + 1
            # Close it once idle even if no later step asks for a connection.
            asyncio.get_running_loop().call_later(IDLE_SECONDS + 1, self._close_idle)
            return conn

    def release(self, run_id: str, target: Target) -> None:
        """End a lease taken by ``get``; the idle time counts from now."""
        key = (run_id, target)
        left = self._leases.get(key, 0) - 1
        if left > 0:
            self._leases[key] = left
        else:
            self._leases.pop(key, None)
        entry = self._conns.get(key)
        if entry is not None:
            self._conns[key] = (entry[0], time.monotonic())

    def drop(self, run_id: str, target: Target) -> None:
        """Forget (and close) the connection, e.g. after it was lost."""
        entry = self._conns.pop((run_id, target), None)
        if entry is not None:
            _close_on_loop(entry[0])

    def _close_idle(self) -> None:
        now = time.monotonic()
        for key, (conn, used) in list(self._conns.items()):
            if _closed(conn) or (now - used > IDLE_SECONDS and key not in self._leases):
                conn.close()
                del self._conns[key]

    def used(self, run_id: str) -> bool:
        """Whether a step of the run connected to a host."""
        return bool(self._used.get(run_id))

    async def finish_run(self, run_id: str, command: str,
                         timeout: float = 60.0) -> list[tuple[Target, str]]:
        """Run ``command`` once on every host the run's steps reached (reconnecting where
        the pooled connection is gone), then close the run's connections.

        Returns:
            (host, reason) for each host where the command could not run or failed.
        """
        targets = sorted(self._used.pop(run_id, ()), key=lambda t: t.where)

        async def one(target: Target) -> tuple[Target, str] | None:
            try:
                conn = await self.get(run_id, target)
                try:
                    result = await asyncio.wait_for(conn.run(command, check=False), timeout)
                finally:
                    self.release(run_id, target)
            except (SshNetworkError, SshHostKeyError, SshAuthError) as exc:
                return target, str(exc).removeprefix(f"{target.where}: ")
            except (OSError, asyncio.TimeoutError, TimeoutError) as exc:
                return target, f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # noqa: BLE001 - asyncssh's channel errors
                return target, getattr(exc, "reason", None) or type(exc).__name__
            if result.exit_status != 0:
                err = (result.stderr or "").strip().splitlines()
                return target, f"exit code {result.exit_status}" + (f": {err[-1]}" if err else "")
            return None

        failures = [f for f in await asyncio.gather(*(one(t) for t in targets)) if f]
        self._used.pop(run_id, None)
        for key in [k for k in self._conns if k[0] == run_id]:
            self._conns.pop(key)[0].close()
            self._leases.pop(key, None)
        return failures


def _close_on_loop(conn: Any) -> None:
    """Close a connection on the SSH loop's thread (asyncssh is not thread-safe: a close
    from a step's thread races the loop's reads and writes of every connection)."""
    owner = loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is owner:
        conn.close()
    else:
        owner.call_soon_threadsafe(conn.close)


def _closed(conn: Any) -> bool:
    return conn.is_closed() if hasattr(conn, "is_closed") else conn._transport is None


POOL = Pool()


def check_host(target: Target, timeout: float = 30.0) -> str:
    """Connect once and run ``true``: the server's answer as one line.

    Raises:
        SshNetworkError / SshHostKeyError / SshAuthError: which step of connecting failed.
    """
    async def probe() -> str:
        conn = await open_connection(target)
        try:
            result = await conn.run("uname -sr", check=False)
            return (str(result.stdout or "").strip() or "connected")[:200]
        finally:
            conn.close()

    return call(probe(), timeout)
