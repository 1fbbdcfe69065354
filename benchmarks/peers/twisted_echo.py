"""Raw peer: a Twisted echo Protocol on the default (epoll) reactor.

Usage: python twisted_echo.py HOST PORT   (PORT 0 picks a free one)
"""

from __future__ import annotations

import sys

from twisted.internet import protocol, reactor


class Echo(protocol.Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)


class EchoFactory(protocol.Factory):
    protocol = Echo


def main() -> None:
    port = reactor.listenTCP(int(sys.argv[2]), EchoFactory(), backlog=4096, interface=sys.argv[1])
    address = port.getHost()
    print(f"listening on {address.host}:{address.port}", file=sys.stderr, flush=True)
    reactor.run()  # installs SIGTERM/SIGINT handlers that stop the reactor


if __name__ == "__main__":
    main()
