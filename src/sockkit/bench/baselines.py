"""The baseline echo servers ``bench compare`` measures sockkit's engines against.

Each is the least a correct echo server must do with its library, and nothing
of sockkit: a raw asyncio or uvloop ``Protocol`` (the yardsticks of the asyncio
and uvloop engines) and a hand-written selectors reactor on epoll, poll or
select (the yardsticks of the reactor engines).  They ship with sockkit so an
installed ``sockkit bench compare`` can start them without a source tree.

:func:`run_baseline` binds, prints ``listening on HOST:PORT`` on stdout and
serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import importlib.util
import selectors
import signal
import socket
from collections.abc import Callable

__all__ = ["BASELINES", "available_baselines", "run_baseline"]

#: baseline name -> the module it needs beyond the standard library
BASELINES: dict[str, str | None] = {
    "uvloop_protocol_echo": "uvloop",
    "asyncio_protocol_echo": None,
    "selectors_echo": None,
    "selectors_poll_echo": None,
    "selectors_select_echo": None,
}
_SELECTORS: dict[str, Callable[[], selectors.BaseSelector]] = {
    "selectors_echo": selectors.EpollSelector,
    "selectors_poll_echo": selectors.PollSelector,
    "selectors_select_echo": selectors.SelectSelector,
}
# 64 KiB per recv(): the common choice, and below glibc's mmap threshold (a
# larger buffer costs an mmap/munmap per call, which would flatter the engines).
_RECV = 65536


def available_baselines() -> list[str]:
    """The baselines whose modules are installed here, in ``BASELINES`` order."""
    return [
        name
        for name, module in BASELINES.items()
        if module is None or importlib.util.find_spec(module) is not None
    ]


def run_baseline(name: str, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve echo with baseline ``name`` on ``host:port`` until SIGTERM/SIGINT.

    Raises ``KeyError`` for an unknown name and ``ImportError`` when its module
    is missing.
    """
    if name in _SELECTORS:
        _selectors_echo(_SELECTORS[name](), host, port)
    elif name == "asyncio_protocol_echo":
        asyncio.run(_protocol_echo(host, port))
    elif name == "uvloop_protocol_echo":
        import uvloop

        uvloop.run(_protocol_echo(host, port))
    else:
        raise KeyError(name)


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


async def _protocol_echo(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Echo, host, port, backlog=4096)
    print(f"listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    await stop
    server.close()


def _selectors_echo(sel: selectors.BaseSelector, host: str, port: int) -> None:
    """Accept, TCP_NODELAY, recv, send, and buffer what send() did not take until writable."""
    read, write = selectors.EVENT_READ, selectors.EVENT_WRITE
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    pending: dict[socket.socket, bytes] = {}

    def close(conn: socket.socket) -> None:
        sel.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    def send(conn: socket.socket, data: bytes) -> None:
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            close(conn)
            return
        if sent < len(data):
            if conn not in pending:
                sel.modify(conn, write)
            pending[conn] = data[sent:]
        elif pending.pop(conn, None) is not None:
            sel.modify(conn, read)

    def ready(conn: socket.socket, mask: int) -> None:
        if mask & write:
            send(conn, pending[conn])
            return
        try:
            data = conn.recv(_RECV)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            send(conn, data)
        else:
            close(conn)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)  # a flag alone would not wake select() without a timeout

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel.register(listener, read)
    print(f"listening on {host}:{listener.getsockname()[1]}", flush=True)
    while True:
        for key, mask in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sel.register(conn, read)
            else:
                ready(sock, mask)
