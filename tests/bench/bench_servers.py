"""Echo servers with deliberate faults, run on threads inside the test process."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path


def _find_rrload() -> Path:
    """The C load generator used as a yardstick: SOCKKIT_RRLOAD, else ``shared/tools/rrload.c``
    in the nearest folder above the checkout that has one."""
    named = os.environ.get("SOCKKIT_RRLOAD")
    if named:
        return Path(named)
    here = Path(__file__).resolve()
    for folder in here.parents:
        candidate = folder / "shared" / "tools" / "rrload.c"
        if candidate.exists():
            return candidate
    return here.parents[3] / "shared" / "tools" / "rrload.c"  # absent: the tests skip


RRLOAD_SOURCE = _find_rrload()

#: A behaviour gets the connection's socket and runs it to the end.
Behaviour = Callable[[socket.socket], None]


def echo(conn: socket.socket) -> None:
    while data := conn.recv(65536):
        conn.sendall(data)


def corrupting(every: int) -> Behaviour:
    """Echo, but flip one bit in every ``every``-th chunk."""

    def run(conn: socket.socket) -> None:
        count = 0
        while data := conn.recv(65536):
            count += 1
            if count % every == 0:
                data = bytes([data[0] ^ 0x01]) + data[1:]
            conn.sendall(data)

    return run


def resetting(after: int) -> Behaviour:
    """Echo ``after`` bytes, then reset the connection (SO_LINGER 0)."""

    def run(conn: socket.socket) -> None:
        seen = 0
        while seen < after and (data := conn.recv(65536)):
            seen += len(data)
            conn.sendall(data)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return run


def short(conn: socket.socket) -> None:
    """Echo the first request, then all but the last byte of the next, then go silent."""
    if data := conn.recv(65536):
        conn.sendall(data)
    if data := conn.recv(65536):
        conn.sendall(data[:-1])
    while conn.recv(65536):
        pass


def delayed(seconds: float) -> Behaviour:
    def run(conn: socket.socket) -> None:
        while data := conn.recv(65536):
            time.sleep(seconds)
            conn.sendall(data)

    return run


class ThreadServer:
    """A listening socket whose connections each run ``behaviour`` on a thread."""

    def __init__(self, listener: socket.socket, behaviour: Behaviour) -> None:
        self.listener = listener
        self.behaviour = behaviour
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.behaviour(conn)
        conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.thread.join(5)
