"""A raw uvloop Protocol echo server: the yardstick sockkit's uvloop engine is measured against.

Usage: ``python uvloop_protocol_echo.py HOST PORT`` (``HOST`` may be ``unix:/path``).
Prints ``listening on HOST:PORT`` once bound, serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if host.startswith("unix:"):
        server = await loop.create_unix_server(Echo, host[5:])
    else:
        server = await loop.create_server(Echo, host, port, backlog=4096)
    name = server.sockets[0].getsockname()
    print(f"listening on {host}:{name[1] if isinstance(name, tuple) else name}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
