"""The I/O half of sock_diag: a NETLINK_SOCK_DIAG socket that runs dump requests.

Requests are built and replies parsed in :mod:`sockkit.inspect._netlink`;
this module only sends and receives.  One socket runs any number of dumps,
one after the other (the kernel refuses a second dump while one is running).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

from sockkit.inspect._netlink import NETLINK_SOCK_DIAG, ack_errno

__all__ = ["SockDiag"]

T = TypeVar("T")

# A dump datagram is at most ~32 KiB (the kernel caps its allocation there);
# a larger buffer costs nothing and never truncates.
_RECV_SIZE = 65536


class SockDiag:
    """An open NETLINK_SOCK_DIAG socket.

    Raises :class:`OSError` from the constructor when the kernel offers no
    sock_diag (the caller falls back to ``/proc``).  Call :meth:`dump` for
    each request, then :meth:`close` (or use ``with``).
    """

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        )

    def dump(self, request: bytes, parse: Callable[[bytes], tuple[list[T], bool]]) -> list[T]:
        """Send one dump ``request`` and feed every reply datagram to ``parse`` until it says done.

        ``parse`` returns (items, finished).  Raises :class:`OSError` when the
        kernel refuses the request or reports an error mid-dump.
        """
        items: list[T] = []
        self._sock.sendto(request, (0, 0))
        recv = self._sock.recv
        while True:
            data = recv(_RECV_SIZE)
            if not data:
                raise OSError("sock_diag closed the dump early")
            chunk, finished = parse(data)
            items += chunk
            if finished:
                return items

    def ask(self, request: bytes) -> int:
        """Send one request that asks for an acknowledgement; return its errno (0: done).

        Raises :class:`OSError` when the kernel refuses the message itself.
        """
        self._sock.sendto(request, (0, 0))
        while True:
            reply = self._sock.recv(_RECV_SIZE)
            errno = ack_errno(reply)
            if errno is not None:
                return errno

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> SockDiag:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
