"""A raw asyncio streams echo server (StreamReader/StreamWriter, one task per connection).

Usage: ``python asyncio_streams_echo.py HOST PORT`` (``HOST`` may be ``unix:/path``).
Prints ``listening on HOST:PORT`` once bound, serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if host.startswith("unix:"):
        server = await asyncio.start_unix_server(echo, host[5:])
    else:
        server = await asyncio.start_server(echo, host, port, backlog=4096)
    name = server.sockets[0].getsockname()
    print(f"listening on {host}:{name[1] if isinstance(name, tuple) else name}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
