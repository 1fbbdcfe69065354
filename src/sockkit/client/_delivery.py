"""How many bytes of stdin did not reach a peer that went away mid-stream.

A reset throws away whatever the kernel had not yet handed over, so the count
comes from three places: bytes still waiting in the pump, bytes the socket
took that the peer's TCP never acknowledged (``TCP_INFO``'s ``bytes_acked``),
and the part of stdin never read (known when stdin is a regular file).  The
peer's TCP acknowledging a byte does not prove its program read it, so the
count is what certainly did not arrive: a lower bound whenever a part of it
cannot be seen (TLS, Unix sockets, a pipe on stdin).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
from dataclasses import dataclass

from sockkit._errors import SockkitError

__all__ = ["NotDeliveredError", "Shortfall", "acknowledged", "stdin_left"]

# struct tcp_info (linux/tcp.h): 8 one-byte fields, 24 u32 fields, then the u64s
# tcpi_pacing_rate, tcpi_max_pacing_rate, tcpi_bytes_acked (Linux 4.1+).
_BYTES_ACKED_OFFSET = 8 + 24 * 4 + 2 * 8
_TCP_INFO_SIZE = _BYTES_ACKED_OFFSET + 8


class NotDeliveredError(SockkitError):
    """A peer failed (reset, closed, TLS error) before all of stdin reached it.

    ``not_delivered`` is the number of stdin bytes that certainly did not reach
    it; ``exact`` is False when it is only a lower bound.  ``__cause__`` is the
    failure itself.
    """

    def __init__(self, cause: SockkitError, not_delivered: int, exact: bool) -> None:
        at_least = "" if exact else "at least "
        super().__init__(f"{cause}: {at_least}{not_delivered} bytes of stdin not delivered")
        self.not_delivered = not_delivered
        self.exact = exact


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Bytes of stdin that did not reach one peer, and whether the count is exact."""

    count: int
    exact: bool

    def __add__(self, other: Shortfall) -> Shortfall:
        return Shortfall(self.count + other.count, self.exact and other.exact)


def acknowledged(sock: socket.socket, sent: int) -> Shortfall:
    """Of the ``sent`` bytes the socket took, how many the peer's TCP never acknowledged.

    Call it after the failure: the counter survives a reset.  For anything but
    plain TCP the socket's own view is unavailable and the shortfall is 0, not exact.
    """
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return Shortfall(0, exact=False)
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return Shortfall(0, exact=False)
    if len(info) < _TCP_INFO_SIZE:
        return Shortfall(0, exact=False)
    # The SYN counts as one acknowledged byte (and our FIN as another).
    (acked,) = struct.unpack_from("Q", info, _BYTES_ACKED_OFFSET)
    return Shortfall(max(sent - max(acked - 1, 0), 0), exact=True)


def stdin_left(fd: int) -> Shortfall:
    """The bytes of stdin not read yet: exact for a regular file, else unknown (0, not exact)."""
    with contextlib.suppress(OSError):
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            return Shortfall(max(info.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0), exact=True)
    return Shortfall(0, exact=False)
