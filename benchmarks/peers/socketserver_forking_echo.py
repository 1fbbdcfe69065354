"""Raw peer: CPython's socketserver.ForkingTCPServer echo (a process per connection).

Usage: python socketserver_forking_echo.py HOST PORT   (PORT 0 picks a free one)
"""

from __future__ import annotations

import signal
import socket
import socketserver
import sys
import threading


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs (1 s retries) under any real load.
    request_queue_size = socket.SOMAXCONN
    # The default (40) makes the server wait for children under a connect storm.
    max_children = 1000


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    server = Server((host, port), Echo)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    bound_host, bound_port = server.server_address[:2]
    print(f"listening on {bound_host}:{bound_port}", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
