"""``ss -K``: close sockets from outside with sock_diag's SOCK_DESTROY, as ss does.

The kernel finds the socket by its full identity -- family, protocol, both
addresses and ports, and the cookie (so a socket that was closed and whose
ports were reused meanwhile is not hit) -- and aborts it: a TCP peer gets a
reset, a blocked reader or writer in the owning process gets ECONNABORTED.
It needs CAP_NET_ADMIN and a kernel built with INET_DIAG_DESTROY; a socket
that cannot be destroyed (a protocol without the operation) or is already
gone is skipped, as ss skips it.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterable

from sockkit._errors import SockkitError
from sockkit.inspect._netlink import AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP
from sockkit.inspect._record import SocketRow
from sockkit.inspect._sockdiag import SockDiag

__all__ = ["destroy_request", "kill_sockets"]

SOCK_DESTROY = 21
_NLM_F_REQUEST_ACK = 0x1 | 0x4
# nlmsghdr + inet_diag_req_v2: family protocol ext pad states, then the
# sockid: sport dport (network order) src dst if cookie[2]
_DESTROY = struct.Struct("=IHHIIBBBxI")
_SOCKID = struct.Struct("!HH16s16s")
_IF_COOKIE = struct.Struct("=III")
_PROTOCOLS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}
# cannot be destroyed, already gone, or gone and its ports reused (cookie differs)
_SKIPPED = frozenset({errno.EOPNOTSUPP, errno.ENOENT, errno.ESTALE})


def _packed(family: int, text: str) -> bytes:
    raw = socket.inet_pton(socket.AF_INET6 if family == AF_INET6 else socket.AF_INET, text)
    return raw.ljust(16, b"\0")


def destroy_request(row: SocketRow, seq: int = 1) -> bytes:
    """The SOCK_DESTROY message for one TCP/UDP socket row (with its ``details`` cookie)."""
    family = AF_INET6 if row[4] == "inet6" else AF_INET
    details = row[14]
    cookie = details.cookie if details is not None else 0xFFFFFFFFFFFFFFFF
    body = _SOCKID.pack(
        row[6], row[8], _packed(family, row[5]), _packed(family, row[7])
    ) + _IF_COOKIE.pack(0, cookie & 0xFFFFFFFF, cookie >> 32)
    length = _DESTROY.size + len(body)
    header = _DESTROY.pack(
        length, SOCK_DESTROY, _NLM_F_REQUEST_ACK, seq, 0, family, _PROTOCOLS[row[0]], 0, 0
    )
    return header + body


def kill_sockets(rows: Iterable[SocketRow]) -> list[SocketRow]:
    """Destroy every TCP/UDP socket in ``rows``; return the ones the kernel destroyed.

    Unix sockets are left alone (the kernel cannot destroy them).  Raises
    :class:`SockkitError` when the kernel refuses for lack of privilege or
    support.
    """
    killed: list[SocketRow] = []
    with SockDiag() as diag:
        for seq, row in enumerate(rows, 1):
            if row[0] not in _PROTOCOLS:
                continue
            error = diag.ask(destroy_request(row, seq))
            if error == 0:
                killed.append(row)
            elif error in (errno.EPERM, errno.EACCES):
                raise SockkitError("killing sockets needs CAP_NET_ADMIN (run as root), as ss -K")
            elif error not in _SKIPPED:
                raise SockkitError(f"the kernel refused to close a socket: {_reason(error)}")
    return killed


def _reason(error: int) -> str:
    import os

    return os.strerror(error)
