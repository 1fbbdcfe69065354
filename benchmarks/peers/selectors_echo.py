"""A minimal hand-written selectors echo reactor: the baseline for the reactor engines.

Usage: python selectors_echo.py HOST PORT [select|poll|epoll]

The optional third argument picks the selector class (default: the platform's
best, epoll on Linux), so each reactor engine is compared with the same poller.

Prints ``listening on HOST:PORT`` and echoes until SIGTERM/SIGINT.  It does
the least a correct non-blocking echo server must: accept, TCP_NODELAY,
recv, send, and buffer whatever send() did not take (with WRITE interest
until it drains).  No limits, no logging, no services.  It asks 64 KiB per
recv(): the common choice, and below glibc's mmap threshold (a 256 KiB recv()
buffer costs an mmap/mremap/munmap per call, which would flatter the engines).
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys

READ = selectors.EVENT_READ
WRITE = selectors.EVENT_WRITE


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    kinds = {
        "select": selectors.SelectSelector,
        "poll": selectors.PollSelector,
        "epoll": selectors.EpollSelector,
    }
    sel = kinds[sys.argv[3]]() if len(sys.argv) > 3 else selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}

    def accept(sock: socket.socket, mask: int) -> None:
        conn, _ = sock.accept()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(conn, READ, read)

    def close(conn: socket.socket) -> None:
        sel.unregister(conn)
        pending.pop(conn, None)
        conn.close()

    def read(conn: socket.socket, mask: int) -> None:
        if mask & WRITE:
            flush(conn)
            return
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            close(conn)
            return
        if not data:
            close(conn)
            return
        try:
            sent = conn.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            close(conn)
            return
        if sent < len(data):
            pending[conn] = data[sent:]
            sel.modify(conn, WRITE, read)

    def flush(conn: socket.socket) -> None:
        data = pending[conn]
        try:
            sent = conn.send(data)
        except BlockingIOError:
            return
        except OSError:
            close(conn)
            return
        if sent < len(data):
            pending[conn] = data[sent:]
        else:
            del pending[conn]
            sel.modify(conn, READ, read)

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)  # a flag alone would not wake select(None)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sel.register(listener, READ, accept)
    print(f"listening on {host}:{listener.getsockname()[1]}", flush=True)
    while True:
        for key, mask in sel.select():
            key.data(key.fileobj, mask)


if __name__ == "__main__":
    main()
