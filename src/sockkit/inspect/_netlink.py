"""sock_diag netlink, sans I/O: the request bytes to send and the dump bytes to records.

The kernel's NETLINK_SOCK_DIAG protocol answers a SOCK_DIAG_BY_FAMILY dump
request with a stream of datagrams, each holding whole messages:

* ``struct nlmsghdr`` (16 bytes, host order) then, for inet sockets,
  ``struct inet_diag_msg`` (72 bytes) whose ports and addresses are in
  network order, then route attributes (``INET_DIAG_INFO`` carries
  ``struct tcp_info``, ``INET_DIAG_SKV6ONLY`` a byte);
* ``NLMSG_DONE`` ends the dump, ``NLMSG_ERROR`` carries a negative errno.

The parsers trust no length field: a message whose length is below its
header or past the datagram, a socket message shorter than its struct, or an
attribute that runs past its message is :class:`OSError` (``EBADMSG``), the
same answer as a dump the kernel failed, so the caller falls back to
``/proc`` or reports it.  A length of 0 would otherwise leave the parser
where it was for ever.

Unix sockets' requests and replies are in :mod:`sockkit.inspect._unix_diag`.
Each datagram is parsed on its own (netlink never splits a message between
datagrams): :func:`parse_inet_dump` takes one and returns its sockets, as rows (tuples of :class:`SocketRecord`'s fields), and
whether the dump is finished.  The I/O that sends the requests and reads the
datagrams is in :mod:`sockkit.inspect._sockdiag`.

The parsers are the hot path of ``sockkit ss`` (10,000 sockets must list in a
few tens of milliseconds), hence one precompiled ``struct`` per message,
address texts cached by their raw bytes, and attributes walked only when a
record needs one.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sockkit.inspect._query import STATE_NAMES

if TYPE_CHECKING:
    from sockkit.inspect._details import SocketDetails
    from sockkit.inspect._record import ProcessRef, SocketRow
    from sockkit.inspect._tcp_info import TcpInfo

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "NETLINK_SOCK_DIAG",
    "STATE_BY_NUMBER",
    "ack_errno",
    "attribute_end",
    "check_control",
    "inet_request",
    "malformed",
    "message_length",
    "parse_inet_dump",
    "port_bytecode",
]

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH

AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10
IPPROTO_TCP, IPPROTO_UDP = 6, 17

# inet_diag attribute types (linux/inet_diag.h)
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_INFO = 2
INET_DIAG_VEGASINFO = 3
INET_DIAG_CONG = 4
INET_DIAG_SKMEMINFO = 7
INET_DIAG_SHUTDOWN = 8
INET_DIAG_DCTCPINFO = 9
INET_DIAG_SKV6ONLY = 11
INET_DIAG_BBRINFO = 16
INET_DIAG_CGROUP_ID = 21
# the attributes read at a fixed size: their length with the 4-byte header
_INET_MINIMUM = {INET_DIAG_SKV6ONLY: 5, INET_DIAG_SHUTDOWN: 5, INET_DIAG_CGROUP_ID: 12}
_MODULE_INFO = frozenset({INET_DIAG_VEGASINFO, INET_DIAG_DCTCPINFO, INET_DIAG_BBRINFO})
# the congestion module's own information (bbr, dctcp, vegas) comes with VEGASINFO's bit
_INFO_EXT = sum(1 << (kind - 1) for kind in (INET_DIAG_INFO, INET_DIAG_VEGASINFO, INET_DIAG_CONG))


_NLMSGHDR = struct.Struct("=IHHII")
_U64 = struct.Struct("=Q")
# inet_diag_msg from its timer byte: timer retrans (sport dport src dst if) cookie[2] expires
_INET_EXTRA = struct.Struct("=BB40xIII")
_NLMSGERR = struct.Struct("=i")
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_TWO_U32 = struct.Struct("=II")
# nlmsghdr + inet_diag_msg, reading only what a record needs: len type (flags
# seq pid) | family state (timer retrans) sport dport src dst (if cookie[2]
# expires) rqueue wqueue uid inode
_INET_MSG = struct.Struct("=IH10xBBxxHH16s16s16xIIII")
_INET_REQ = struct.Struct("=IHHIIBBBxI48x")  # nlmsghdr + inet_diag_req_v2 (zero sockid)

_LITTLE = sys.byteorder == "little"


# -- requests ---------------------------------------------------------------


def inet_request(
    family: int,
    protocol: int,
    states: int,
    *,
    tcp_info: bool = False,
    memory: bool = False,
    bytecode: bytes = b"",
    seq: int = 1,
) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP or UDP sockets of one address family.

    ``states`` is the state bit mask; ``tcp_info`` asks for ``struct tcp_info``,
    the congestion algorithm and its own information; ``memory`` for the
    socket's memory counters; ``bytecode`` (from :mod:`._bytecode`) lets
    the kernel drop sockets before they are sent.
    """
    ext = _INFO_EXT if tcp_info else 0
    if memory:
        ext |= 1 << (INET_DIAG_SKMEMINFO - 1)
    attribute = b""
    if bytecode:
        attribute = _RTATTR.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    length = _INET_REQ.size + len(attribute)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    header = _INET_REQ.pack(
        length, SOCK_DIAG_BY_FAMILY, flags, seq, 0, family, protocol, ext, states
    )
    return header + attribute


def port_bytecode(
    sport: int | None = None, dport: int | None = None, port: int | None = None
) -> bytes:
    """An inet_diag filter program for port conditions.

    Local port ``sport``, peer port ``dport``, ``port`` at either end.

    All given conditions must hold; with none, the program is empty (keep all).
    """
    if sport is None and dport is None and port is None:
        return b""
    from sockkit.inspect._bytecode import bytecode_and, bytecode_or, port_equals

    parts: list[bytes] = []
    if sport is not None:
        parts.append(port_equals("s", sport))
    if dport is not None:
        parts.append(port_equals("d", dport))
    if port is not None:
        parts.append(bytecode_or(port_equals("s", port), port_equals("d", port)))
    program = b""
    for part in parts:
        program = bytecode_and(program, part) if program else part
    return program


# -- replies ----------------------------------------------------------------

#: the kernel's state byte -> ss's name, for every possible byte
STATE_BY_NUMBER = tuple(STATE_NAMES[n] if n < len(STATE_NAMES) else "UNKNOWN" for n in range(256))
_V4_TEXT: dict[bytes, str] = {}
_V6_TEXT: dict[bytes, str] = {}


def _v4_text(raw: bytes) -> str:
    text = socket.inet_ntop(socket.AF_INET, raw[:4])
    _V4_TEXT[raw] = text
    return text


def _v6_text(raw: bytes) -> str:
    text = socket.inet_ntop(socket.AF_INET6, raw)
    _V6_TEXT[raw] = text
    return text


def ack_errno(reply: bytes) -> int | None:
    """The errno an ``NLMSG_ERROR`` acknowledgement carries (0: success), ``None`` if none."""
    offset = 0
    while offset + 20 <= len(reply):
        length, mtype = _NLMSGHDR.unpack_from(reply, offset)[:2]
        if mtype == NLMSG_ERROR:
            code: int = _NLMSGERR.unpack_from(reply, offset + 16)[0]
            return -code
        if length < 16:
            break
        offset += (length + 3) & ~3
    return None


def malformed(what: str, offset: int) -> OSError:
    """The error a sock_diag datagram that breaks its own framing raises."""
    return OSError(errno.EBADMSG, f"malformed sock_diag message: {what} at byte {offset}")


def message_length(chunk: bytes | memoryview, offset: int, end: int, minimum: int = 16) -> int:
    """The length field of the message at ``offset``, checked to lie in ``minimum..end - offset``.

    Raises :class:`OSError` (``EBADMSG``) otherwise: a length below the header
    would never advance past the message, one past ``end`` reads another's bytes.
    """
    (length,) = _U32.unpack_from(chunk, offset)
    if length < minimum or length > end - offset:
        raise malformed(f"length {length} (room {end - offset}, need {minimum})", offset)
    return int(length)


def attribute_end(pos: int, length: int, end: int, minimum: int = 4) -> int:
    """Where the attribute at ``pos`` ends; :class:`OSError` if it is shorter than its
    value (``minimum`` bytes with its header) or runs past its message's ``end``."""
    if length < minimum or pos + length > end:
        raise malformed(f"attribute of {length} bytes (room {end - pos}, need {minimum})", pos)
    return pos + length


def check_control(chunk: bytes | memoryview, offset: int, mtype: int) -> bool:
    """Handle a DONE/ERROR message: True when the dump ended, OSError when it failed."""
    if mtype in (NLMSG_ERROR, NLMSG_DONE):
        length = _NLMSGHDR.unpack_from(chunk, offset)[0]
        if length >= 20:
            (error,) = _NLMSGERR.unpack_from(chunk, offset + 16)
            if error < 0:
                raise OSError(-error, os.strerror(-error))
        return True
    return False


def parse_inet_dump(
    chunk: bytes | memoryview,
    netid: str,
    owners: Mapping[int, tuple[ProcessRef, ...]] | None = None,
    tcp_info: bool = False,
    details: bool = False,
) -> tuple[list[SocketRow], bool]:
    """Rows (:data:`SocketRow`) from one datagram of an inet_diag dump, and whether it ended.

    ``netid`` (``tcp``/``udp``) names the table the request asked for.
    ``owners`` maps socket inodes to the processes holding them.  With
    ``tcp_info`` the ``INET_DIAG_INFO`` attribute is decoded into
    the row's ``tcp_info``; with ``details``, the cookie, timer, shutdown
    state and memory into its ``details``.  Raises :class:`OSError` if the kernel
    answered with an error, ``EBADMSG`` if a length field does not fit.
    """
    rows: list[SocketRow] = []
    append = rows.append
    unpack = _INET_MSG.unpack_from
    unpack_length = _U32.unpack_from
    names = STATE_BY_NUMBER
    v4_get, v6_get = _V4_TEXT.get, _V6_TEXT.get
    owner_get = owners.get if owners else None
    end = len(chunk)
    offset = 0
    done = False
    while offset + 16 <= end:
        if offset + 88 > end or not 88 <= unpack_length(chunk, offset)[0] <= end - offset:
            # the rare case (DONE, ERROR, a short or malformed message) off the hot path
            length = message_length(chunk, offset, end)
            mtype = _NLMSGHDR.unpack_from(chunk, offset)[1]
            if mtype == SOCK_DIAG_BY_FAMILY:
                raise malformed(f"socket message of {length} bytes (need 88)", offset)
            if check_control(chunk, offset, mtype):
                done = True
                break
            offset += (length + 3) & ~3
            continue
        (length, mtype, family, state, sport, dport, src, dst, rq, wq, uid, inode) = unpack(
            chunk, offset
        )
        if mtype != SOCK_DIAG_BY_FAMILY:
            if check_control(chunk, offset, mtype):
                done = True
                break
            offset += (length + 3) & ~3
            continue
        if _LITTLE:
            sport = ((sport & 0xFF) << 8) | (sport >> 8)
            dport = ((dport & 0xFF) << 8) | (dport >> 8)
        info = extra = None
        if family == AF_INET:
            fam = "inet"
            local = v4_get(src) or _v4_text(src)
            peer = v4_get(dst) or _v4_text(dst)
            v6only: bool | None = False
        else:
            fam = "inet6"
            local = v6_get(src) or _v6_text(src)
            peer = v6_get(dst) or _v6_text(dst)
            v6only = False
        if details:
            v6only, info, extra = _extended(chunk, offset, length, v6only, tcp_info)
        elif family == AF_INET6 or tcp_info:
            v6only, info = _inet_attributes(chunk, offset + 88, offset + length, v6only, tcp_info)
        append(
            (
                netid,
                names[state],
                rq,
                wq,
                fam,
                local,
                sport,
                peer,
                dport,
                inode,
                uid,
                v6only,
                owner_get(inode, ()) if owner_get and inode else (),
                info,
                extra,
            )
        )
        offset += (length + 3) & ~3
    return rows, done


def _inet_attributes(
    chunk: bytes | memoryview, pos: int, end: int, v6only: bool | None, want_info: bool
) -> tuple[bool | None, TcpInfo | None]:
    raw_info = None
    congestion = None
    module_info: tuple[int, bytes] | None = None
    while pos + 4 <= end:
        length, kind = _RTATTR.unpack_from(chunk, pos)
        attribute_end(pos, length, end, _INET_MINIMUM.get(kind, 4))
        if kind == INET_DIAG_SKV6ONLY:
            v6only = chunk[pos + 4] != 0
        elif kind == INET_DIAG_INFO and want_info:
            raw_info = bytes(chunk[pos + 4 : pos + length])
        elif kind == INET_DIAG_CONG and want_info:
            congestion = (
                bytes(chunk[pos + 4 : pos + length]).split(b"\0", 1)[0].decode("ascii", "replace")
            )
        elif kind in _MODULE_INFO and want_info:
            module_info = (kind, bytes(chunk[pos + 4 : pos + length]))
        pos += (length + 3) & ~3
    if raw_info is None:
        return v6only, None
    from sockkit.inspect._tcp_info import parse_tcp_info

    return v6only, parse_tcp_info(raw_info, congestion, module_info)


def _extended(
    chunk: bytes | memoryview, offset: int, length: int, v6only: bool | None, want_info: bool
) -> tuple[bool | None, TcpInfo | None, SocketDetails]:
    from sockkit.inspect._details import SocketDetails, parse_skmeminfo

    timer, retransmits, cookie_low, cookie_high, expires = _INET_EXTRA.unpack_from(
        chunk, offset + 18
    )
    v6only, info = _inet_attributes(chunk, offset + 88, offset + length, v6only, want_info)
    shutdown = memory = None
    cgroup = 0
    pos, end = offset + 88, offset + length
    while pos + 4 <= end:
        alen, kind = _RTATTR.unpack_from(chunk, pos)
        attribute_end(pos, alen, end, _INET_MINIMUM.get(kind, 4))
        if kind == INET_DIAG_SHUTDOWN:
            shutdown = chunk[pos + 4]
        elif kind == INET_DIAG_SKMEMINFO:
            memory = parse_skmeminfo(bytes(chunk[pos + 4 : pos + alen]))
        elif kind == INET_DIAG_CGROUP_ID:
            (cgroup,) = _U64.unpack_from(chunk, pos + 4)
        pos += (alen + 3) & ~3
    cookie = (cookie_high << 32) | cookie_low
    return (
        v6only,
        info,
        SocketDetails(cookie, cgroup, timer, expires, retransmits, shutdown, memory),
    )
