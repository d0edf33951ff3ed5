"""Forward TCP ports of the host's 127.0.0.1 to the real node's bridge address, so that pods
reach what listens on the host's loopback only: the API server (the ``kubernetes`` Service's
endpoint) and whatever the cluster exposes (the Prefect server...).

It listens on the bridge's address only (never on every interface), one listener per port,
and forwards each connection as bytes (TLS stays end to end: the API server's certificate and
client authentication are the API server's). The forwards are read from a JSON file
``{"address": "10.250.X.1", "ports": [6443, 4200]}``; SIGHUP reads it again (listeners of
ports that left are closed, new ones opened). A port that cannot be bound is reported on
stderr and the others keep working.

Usage (the real node starts it): ``python -m ansflow.devcluster.node_proxy CONFIG``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

_CHUNK = 64 * 1024


def read_config(path: Path) -> tuple[str, list[int]]:
    """(bridge address, ports) from the config file; ports deduplicated and sorted.

    Raises:
        ValueError: the file is not such an object, or a port is not 1-65535.
    """
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        raise ValueError("config must be an object with an 'address' string")
    ports = data.get("ports", [])
    if not isinstance(ports, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
        raise ValueError("'ports' must be a list of port numbers 1-65535")
    return data["address"], sorted(set(ports))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


def _forwarder(port: int):
    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        try:
            u_reader, u_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
        except (OSError, asyncio.TimeoutError):
            c_writer.close()
            return
        await asyncio.gather(_pump(c_reader, u_writer), _pump(u_reader, c_writer))
        for w in (c_writer, u_writer):
            w.close()
    return handle


async def _run(config: Path) -> None:
    servers: dict[int, asyncio.Server] = {}
    address = ""
    reload = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reload.set)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reload.set()
    while not stop.is_set():
        if reload.is_set():
            reload.clear()
            try:
                new_address, ports = read_config(config)
            except (OSError, ValueError) as exc:
                print(f"node_proxy: cannot read {config}: {exc}", file=sys.stderr, flush=True)
                new_address, ports = address, list(servers)
            for port in list(servers):
                if port not in ports or new_address != address:
                    servers.pop(port).close()
            address = new_address
            for port in ports:
                if port in servers:
                    continue
                try:
                    servers[port] = await asyncio.start_server(
                        _forwarder(port), host=address, port=port, reuse_address=True)
                except OSError as exc:
                    print(f"node_proxy: cannot listen on {address}:{port}: {exc}",
                          file=sys.stderr, flush=True)
            print(f"node_proxy: {address} ports {sorted(servers)} -> 127.0.0.1",
                  file=sys.stderr, flush=True)
        waiters = [asyncio.ensure_future(e.wait()) for e in (reload, stop)]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    for server in servers.values():
        server.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ansflow.devcluster.node_proxy CONFIG", file=sys.stderr)
        return 2
    asyncio.run(_run(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
