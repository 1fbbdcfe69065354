"""Warming the fork server up: a few throw-away echo connections served before any child.

Python 3.11 specialises a function's bytecode in place after its first few
calls, and keeps counters in the code object until then.  Code that only ever
runs in children (the connection loop, the log lines) would be counted and
specialised anew in every child -- each write a copied page.  Serving a few
connections here first, with sockkit's own echo service over loopback, leaves
that code specialised in the pages every child shares.  The user's service
is never run here: only sockkit's code is warmed.
"""

from __future__ import annotations

import contextlib
import os
import socket

from sockkit.engines._blocking import Connection
from sockkit.engines._contract import LogLines, ServeContext, StreamListener
from sockkit.engines._log_lines import LineLog
from sockkit.services._classic import EchoService

__all__ = ["warm_up"]

#: More calls than 3.11's quickening delay (8).
WARM_CONNECTIONS = 12


def warm_up(ctx: ServeContext, lines: LogLines) -> None:
    """Serve :data:`WARM_CONNECTIONS` loopback echo connections here; log them to /dev/null."""
    if not ctx.listeners:
        return
    try:
        server = socket.create_server(("127.0.0.1", 0))
    except OSError:
        return  # no IPv4 loopback: children warm up themselves
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    log = LineLog(LogLines(devnull, lines.level, lines.format))
    listener = StreamListener(server, ctx.listeners[0].endpoint, EchoService)
    warm = ServeContext([listener], ctx.limits, log=log)
    try:
        with server:
            for _ in range(WARM_CONNECTIONS):
                _one(server, listener, warm)
    except OSError:
        pass  # warming is an optimisation: serving goes on without it
    finally:
        os.close(devnull)
        warm.stop.close()


def _one(server: socket.socket, listener: StreamListener, warm: ServeContext) -> None:
    with socket.create_connection(server.getsockname()[:2], timeout=1) as client:
        sock, addr = server.accept()
        client.sendall(b"warm-up")
        client.shutdown(socket.SHUT_WR)
        Connection(sock, addr, listener, warm).run()
        with contextlib.suppress(OSError):
            while client.recv(4096):
                pass
