"""``connect -z`` (nc's zero-I/O mode): which ports of one host accept a connection.

Rules:

- A TCP port is ``open`` when a connection completes, ``closed`` when it is
  refused, ``timed out`` when neither happens within ``timeout`` seconds
  (a firewall dropping the SYN), else the error's name.  Nothing is sent:
  each socket is closed as soon as its connect is decided.
- A UDP port gets one empty datagram; an ICMP port-unreachable answer makes
  it ``closed``, silence for ``timeout`` seconds ``open|filtered`` (UDP
  cannot tell the two apart, as nc's ``-zu`` cannot).
- At most ``concurrency`` probes are in flight at once, so a range of
  thousands of ports costs that many descriptors, not one per port, and the
  whole scan takes about ``ports / concurrency * timeout`` at worst.
- The host is resolved once; its first address (of the family asked for) is probed.
- Results come back in the order the ports were given.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sockkit._endpoint import format_sockaddr, lookup
from sockkit._errors import UsageError

__all__ = ["PortResult", "parse_ports", "scan_ports"]

#: Probes in flight at once by default (descriptors held at most).
CONCURRENCY = 64
#: Most ports one scan takes: every port there is.
MAX_PORTS = 65535


@dataclass(frozen=True, slots=True)
class PortResult:
    """One probed port: ``state`` is ``open``, ``closed``, ``timed out``, ``open|filtered``, ..."""

    port: int
    state: str

    @property
    def open(self) -> bool:
        return self.state in ("open", "open|filtered")


def parse_ports(text: str) -> list[int]:
    """``22``, ``20-25``, ``22,80,8000-8010`` as the ports they name, in that order, no repeats."""
    ports: dict[int, None] = {}
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise UsageError(
                f"bad port list {text!r}: expected PORT, LOW-HIGH or a comma-separated list"
            ) from None
        if not (1 <= first <= 65535 and 1 <= last <= 65535) or first > last:
            raise UsageError(f"bad port range {part.strip()!r}: ports are 1-65535, low to high")
        ports.update(dict.fromkeys(range(first, last + 1)))
    return list(ports)[:MAX_PORTS]


def scan_ports(
    host: str,
    ports: Iterable[int],
    *,
    udp: bool = False,
    family: int = socket.AF_UNSPEC,
    timeout: float = 2.0,
    concurrency: int = CONCURRENCY,
) -> tuple[str, list[PortResult]]:
    """Probe ``ports`` on ``host``; the address probed (as text) and one result per port."""
    socktype = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    info = lookup(host, None, family=family, socktype=socktype)[0]
    address = info.sockaddr
    wanted = list(ports)
    states = dict(_probe_all(info.family, socktype, address, wanted, timeout, concurrency))
    shown = format_sockaddr(info.family, (address[0], 0)).rsplit(":", 1)[0]
    return shown, [PortResult(port, states[port]) for port in wanted]


def _probe_all(
    family: int,
    socktype: int,
    address: tuple[str, int] | tuple[str, int, int, int],
    ports: list[int],
    timeout: float,
    concurrency: int,
) -> Iterator[tuple[int, str]]:
    todo = iter(ports)
    poller = select.poll()
    flying: dict[int, tuple[socket.socket, int, float]] = {}  # fd -> (socket, port, deadline)
    try:
        while True:
            while len(flying) < concurrency:
                port = next(todo, None)
                if port is None:
                    break
                sock = socket.socket(family, socktype)
                sock.setblocking(False)
                target = (address[0], port, *address[2:])
                try:
                    if socktype == socket.SOCK_DGRAM:
                        sock.connect(target)
                        sock.send(b"")
                        mask = select.POLLIN | select.POLLERR
                    else:
                        code = sock.connect_ex(target)
                        if code not in (0, errno.EINPROGRESS):
                            sock.close()
                            yield port, _state_of(code)
                            continue
                        mask = select.POLLOUT
                except OSError as exc:
                    sock.close()
                    yield port, _state_of(exc.errno or 0)
                    continue
                flying[sock.fileno()] = (sock, port, time.monotonic() + timeout)
                poller.register(sock, mask)
            if not flying:
                return
            soonest = min(deadline for _, _, deadline in flying.values())
            wait = max(int((soonest - time.monotonic()) * 1000) + 1, 0)
            for fd, _ in poller.poll(wait):
                sock, port, _ = flying.pop(fd)
                poller.unregister(fd)
                yield port, _decided(sock, socktype)
                sock.close()
            now = time.monotonic()
            for fd, (sock, port, deadline) in list(flying.items()):
                if now >= deadline:
                    del flying[fd]
                    poller.unregister(fd)
                    sock.close()
                    yield port, "open|filtered" if socktype == socket.SOCK_DGRAM else "timed out"
    finally:
        for sock, _, _ in flying.values():
            sock.close()


def _decided(sock: socket.socket, socktype: int) -> str:
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if socktype == socket.SOCK_DGRAM and code == 0:
        try:
            sock.recv(1)
        except OSError as exc:
            code = exc.errno or 0
        else:
            return "open"  # it answered
    return _state_of(code)


def _state_of(code: int) -> str:
    if code == 0:
        return "open"
    if code == errno.ECONNREFUSED:
        return "closed"
    if code == errno.ETIMEDOUT:
        return "timed out"
    return os.strerror(code).lower()
