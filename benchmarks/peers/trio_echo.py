"""Raw peer: a trio echo server (trio.serve_tcp, a task per connection).

Usage: python trio_echo.py HOST PORT   (PORT 0 picks a free one)
"""

from __future__ import annotations

import functools
import signal
import sys

import trio


async def echo(stream: trio.SocketStream) -> None:
    try:
        async for data in stream:
            await stream.send_all(data)
    except trio.BrokenResourceError:
        pass  # the client reset the connection


async def main(host: str, port: int) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, echo, port, host=host))
        bound = listeners[0].socket.getsockname()
        print(f"listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
