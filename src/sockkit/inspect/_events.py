"""``ss -E``: sockets reported as the kernel destroys them (sock_diag multicast groups).

The kernel broadcasts an ``inet_diag_msg`` for every TCP or UDP socket it
destroys to the NETLINK_SOCK_DIAG groups a listener joined (one group per
family and protocol: SKNLGRP_INET_TCP_DESTROY ...); each message is parsed
like a dump reply.  Unix sockets have no such group, so ``-E`` covers TCP
and UDP only, as in ss.  Joining needs CAP_NET_ADMIN on some kernels; a
kernel without the groups refuses the bind.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
import time
from collections.abc import Iterator

from sockkit.inspect._netlink import NETLINK_SOCK_DIAG, parse_inet_dump
from sockkit.inspect._query import SocketQuery
from sockkit.inspect._record import SocketRow

__all__ = ["destroyed_sockets", "event_groups"]

# linux/sock_diag.h
_GROUPS = {
    ("inet", "tcp"): 1,
    ("inet", "udp"): 2,
    ("inet6", "tcp"): 3,
    ("inet6", "udp"): 4,
}
_INET_DIAG_PROTOCOL = 10
_NETIDS = {6: "tcp", 17: "udp"}
_RECV_SIZE = 65536


def event_groups(query: SocketQuery) -> int:
    """The multicast group mask that covers ``query``'s TCP/UDP tables (0: none)."""
    mask = 0
    for (family, netid), group in _GROUPS.items():
        if family in query.families and netid in query.netids:
            mask |= 1 << (group - 1)
    return mask


_RTATTR = struct.Struct("=HH")
_LENGTH = struct.Struct("=I")


def _protocol(message: bytes) -> int:
    # the INET_DIAG_PROTOCOL attribute after nlmsghdr + inet_diag_msg (88 bytes)
    pos = 88
    while pos + 4 <= len(message):
        length, kind = _RTATTR.unpack_from(message, pos)
        if length < 4 or pos + length > len(message):
            break
        if kind == _INET_DIAG_PROTOCOL and length >= 5:
            return message[pos + 4]
        pos += (length + 3) & ~3
    return 6


def destroyed_sockets(
    query: SocketQuery, *, until: float | None = None
) -> Iterator[tuple[list[SocketRow], bool]]:
    """Yield (rows, lost) for sockets destroyed from now on, a batch per datagram.

    Yields ``([], False)`` once the groups are joined, then batches until
    the ``time.monotonic()`` deadline ``until`` (never, if ``None``).
    ``lost`` is true when the kernel had to drop events before this batch
    (more sockets closed at once than the receive buffer holds: the groups
    carry every TCP/UDP socket of the network namespace).  Raises
    :class:`OSError` when the kernel refuses the groups.
    """
    groups = event_groups(query)
    sock = socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    )
    try:
        _enlarge_buffer(sock)
        sock.bind((0, groups))
        yield [], False
        lost = False
        while True:
            timeout = None if until is None else until - time.monotonic()
            if timeout is not None and timeout <= 0:
                return
            ready, _, _ = select.select([sock], [], [], timeout)
            if not ready:
                continue
            try:
                data = sock.recv(_RECV_SIZE)
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            rows: list[SocketRow] = []
            offset = 0
            while offset + 16 <= len(data):
                (length,) = _LENGTH.unpack_from(data, offset)
                if length < 16:
                    break
                message = data[offset : offset + length]
                netid = _NETIDS.get(_protocol(message), "tcp")
                found, _done = parse_inet_dump(
                    message, netid, tcp_info=query.tcp_info, details=True
                )
                rows += [row for row in found if row[0] in query.netids]
                offset += (length + 3) & ~3
            yield rows, lost
            lost = False
    finally:
        sock.close()


# A busy machine closes thousands of sockets a second, all of them broadcast
# to every member of the groups; 4 MiB holds about ten thousand events.
_BUFFER = 4 << 20
_SO_RCVBUFFORCE = 33


def _enlarge_buffer(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _BUFFER)  # beyond rmem_max (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
