"""Raw peer: a gevent StreamServer echo (a greenlet per connection).

Usage: python gevent_echo.py HOST PORT   (PORT 0 picks a free one)
"""

from __future__ import annotations

import signal
import sys

import gevent
from gevent.server import StreamServer


def echo(sock, _address):  # type: ignore[no-untyped-def]
    while data := sock.recv(65536):
        sock.sendall(data)


def main() -> None:
    server = StreamServer((sys.argv[1], int(sys.argv[2])), echo, backlog=4096)
    server.start()
    host, port = server.address[:2]
    print(f"listening on {host}:{port}", file=sys.stderr, flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
