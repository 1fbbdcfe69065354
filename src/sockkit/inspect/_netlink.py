"""sock_diag netlink, sans I/O: the request bytes to send and the dump bytes to records.

The kernel's NETLINK_SOCK_DIAG protocol answers a SOCK_DIAG_BY_FAMILY dump
request with a stream of datagrams, each holding whole messages:

* ``struct nlmsghdr`` (16 bytes, host order) then, for inet sockets,
  ``struct inet_diag_msg`` (72 bytes) whose ports and addresses are in
  network order, then route attributes (``INET_DIAG_INFO`` carries
  ``struct tcp_info``, ``INET_DIAG_SKV6ONLY`` a byte);
* for Unix sockets ``struct unix_diag_msg`` (16 bytes) then attributes
  (``UNIX_DIAG_NAME``, ``_PEER``, ``_RQLEN``, ``_UID``, ``_VFS``);
* ``NLMSG_DONE`` ends the dump, ``NLMSG_ERROR`` carries a negative errno.

Each datagram is parsed on its own (netlink never splits a message between
datagrams): :func:`parse_inet_dump` and :func:`parse_unix_dump` take one and
return its sockets, as rows (tuples of :class:`SocketRecord`'s fields), and
whether the dump is finished.  The I/O that sends the requests and reads the
datagrams is in :mod:`sockkit.inspect._sockdiag`.

The parsers are the hot path of ``sockkit ss`` (10,000 sockets must list in a
few tens of milliseconds), hence one precompiled ``struct`` per message,
address texts cached by their raw bytes, and attributes walked only when a
record needs one.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sockkit.inspect._query import STATE_NAMES

if TYPE_CHECKING:
    from sockkit.inspect._record import ProcessRef, SocketRow
    from sockkit.inspect._tcp_info import TcpInfo

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "NETLINK_SOCK_DIAG",
    "UnixName",
    "inet_request",
    "parse_inet_dump",
    "parse_unix_dump",
    "port_bytecode",
    "unix_request",
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
INET_DIAG_CONG = 4
INET_DIAG_SKV6ONLY = 11

# inet_diag bytecode operations
_BC_JMP, _BC_S_GE, _BC_S_LE, _BC_D_GE, _BC_D_LE = 1, 2, 3, 4, 5

# unix_diag attribute types and the matching "show" request bits
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER = 0, 1, 2
UNIX_DIAG_RQLEN, UNIX_DIAG_UID = 4, 7
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER = 0x01, 0x02, 0x04
UDIAG_SHOW_RQLEN, UDIAG_SHOW_UID = 0x10, 0x40

_NLMSGHDR = struct.Struct("=IHHII")
_NLMSGERR = struct.Struct("=i")
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_TWO_U32 = struct.Struct("=II")
# nlmsghdr + inet_diag_msg, reading only what a record needs: len type (flags
# seq pid) | family state (timer retrans) sport dport src dst (if cookie[2]
# expires) rqueue wqueue uid inode
_INET_MSG = struct.Struct("=IH10xBBxxHH16s16s16xIIII")
# nlmsghdr + unix_diag_msg: ... | family type state pad ino cookie[2]
_UNIX_MSG = struct.Struct("=IHHIIBBBxI8x")
_INET_REQ = struct.Struct("=IHHIIBBBxI48x")  # nlmsghdr + inet_diag_req_v2 (zero sockid)
_UNIX_REQ = struct.Struct("=IHHIIBBxxIII8x")  # nlmsghdr + unix_diag_req
_BC_OP = struct.Struct("=BBH")

_LITTLE = sys.byteorder == "little"
_UNIX_NETIDS = {socket.SOCK_STREAM: "u_str", socket.SOCK_DGRAM: "u_dgr", 5: "u_seq"}

#: a Unix socket's bound file as (inode, device), from UNIX_DIAG_VFS
UnixName = tuple[int, int]


# -- requests ---------------------------------------------------------------


def inet_request(
    family: int,
    protocol: int,
    states: int,
    *,
    tcp_info: bool = False,
    bytecode: bytes = b"",
    seq: int = 1,
) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP or UDP sockets of one address family.

    ``states`` is the state bit mask; ``tcp_info`` asks for ``struct tcp_info``
    and the congestion algorithm; ``bytecode`` (from :func:`port_bytecode`)
    lets the kernel drop sockets before they are sent.
    """
    ext = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_CONG - 1)) if tcp_info else 0
    attribute = b""
    if bytecode:
        attribute = _RTATTR.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    length = _INET_REQ.size + len(attribute)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    header = _INET_REQ.pack(
        length, SOCK_DIAG_BY_FAMILY, flags, seq, 0, family, protocol, ext, states
    )
    return header + attribute


def unix_request(states: int, *, vfs: bool = False, seq: int = 1) -> bytes:
    """A dump request for Unix sockets in ``states``, with name, peer, queues and uid.

    ``vfs`` also asks for the bound file's inode and device (to match a path).
    """
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
    if vfs:
        show |= UDIAG_SHOW_VFS
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _UNIX_REQ.pack(
        _UNIX_REQ.size, SOCK_DIAG_BY_FAMILY, flags, seq, 0, AF_UNIX, 0, states, 0, show
    )


def _port_equals(ge: int, le: int, port: int) -> bytes:
    # [GE port] [LE port]: each op accepts by stepping to the next (yes=8)
    # and rejects by jumping 4 bytes past the end of this 16-byte program.
    return b"".join(
        (
            _BC_OP.pack(ge, 8, 20),
            _BC_OP.pack(0, 0, port),
            _BC_OP.pack(le, 8, 12),
            _BC_OP.pack(0, 0, port),
        )
    )


def _bc_and(first: bytes, second: bytes) -> bytes:
    # Rejections in ``first`` aimed just past its end must now land past the
    # end of both; acceptance falls through into ``second``.
    patched = bytearray(first)
    pos = 0
    while pos < len(first):
        code, yes, no = _BC_OP.unpack_from(first, pos)
        if pos + no == len(first) + 4:
            _BC_OP.pack_into(patched, pos, code, yes, no + len(second))
        pos += yes
    return bytes(patched) + second


def _bc_or(first: bytes, second: bytes) -> bytes:
    # ``first`` rejecting lands just past the JMP, on ``second``; ``first``
    # accepting reaches the JMP, which always jumps to the very end (accept).
    return first + _BC_OP.pack(_BC_JMP, 4, len(second) + 4) + second


def port_bytecode(
    sport: int | None = None, dport: int | None = None, port: int | None = None
) -> bytes:
    """An inet_diag filter program for port conditions.

    Local port ``sport``, peer port ``dport``, ``port`` at either end.

    All given conditions must hold; with none, the program is empty (keep all).
    """
    parts: list[bytes] = []
    if sport is not None:
        parts.append(_port_equals(_BC_S_GE, _BC_S_LE, sport))
    if dport is not None:
        parts.append(_port_equals(_BC_D_GE, _BC_D_LE, dport))
    if port is not None:
        parts.append(
            _bc_or(_port_equals(_BC_S_GE, _BC_S_LE, port), _port_equals(_BC_D_GE, _BC_D_LE, port))
        )
    program = b""
    for part in parts:
        program = _bc_and(program, part) if program else part
    return program


# -- replies ----------------------------------------------------------------

#: the kernel's state byte -> ss's name, for every possible byte
_STATE_BY_NUMBER = tuple(STATE_NAMES[n] if n < len(STATE_NAMES) else "UNKNOWN" for n in range(256))
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


def _check_control(chunk: bytes | memoryview, offset: int, mtype: int) -> bool:
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
) -> tuple[list[SocketRow], bool]:
    """Rows (:data:`SocketRow`) from one datagram of an inet_diag dump, and whether it ended.

    ``netid`` (``tcp``/``udp``) names the table the request asked for.
    ``owners`` maps socket inodes to the processes holding them.  With
    ``tcp_info`` the ``INET_DIAG_INFO`` attribute is decoded into
    the row's ``tcp_info``.  Raises :class:`OSError` if the kernel
    answered with an error.
    """
    rows: list[SocketRow] = []
    append = rows.append
    unpack = _INET_MSG.unpack_from
    names = _STATE_BY_NUMBER
    v4_get, v6_get = _V4_TEXT.get, _V6_TEXT.get
    owner_get = owners.get if owners else None
    end = len(chunk)
    offset = 0
    done = False
    while offset + 16 <= end:
        if offset + 88 > end:
            mtype = _NLMSGHDR.unpack_from(chunk, offset)[1]
            if _check_control(chunk, offset, mtype):
                done = True
            break
        (length, mtype, family, state, sport, dport, src, dst, rq, wq, uid, inode) = unpack(
            chunk, offset
        )
        if mtype != SOCK_DIAG_BY_FAMILY:
            if _check_control(chunk, offset, mtype):
                done = True
                break
            offset += (length + 3) & ~3
            continue
        if _LITTLE:
            sport = ((sport & 0xFF) << 8) | (sport >> 8)
            dport = ((dport & 0xFF) << 8) | (dport >> 8)
        info = None
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
        if family == AF_INET6 or tcp_info:
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
            )
        )
        offset += (length + 3) & ~3
    return rows, done


def _inet_attributes(
    chunk: bytes | memoryview, pos: int, end: int, v6only: bool | None, want_info: bool
) -> tuple[bool | None, TcpInfo | None]:
    raw_info = None
    congestion = None
    while pos + 4 <= end:
        length, kind = _RTATTR.unpack_from(chunk, pos)
        if length < 4:
            break
        if kind == INET_DIAG_SKV6ONLY:
            v6only = chunk[pos + 4] != 0
        elif kind == INET_DIAG_INFO and want_info:
            raw_info = bytes(chunk[pos + 4 : pos + length])
        elif kind == INET_DIAG_CONG and want_info:
            congestion = (
                bytes(chunk[pos + 4 : pos + length]).split(b"\0", 1)[0].decode("ascii", "replace")
            )
        pos += (length + 3) & ~3
    if raw_info is None:
        return v6only, None
    from sockkit.inspect._tcp_info import parse_tcp_info

    return v6only, parse_tcp_info(raw_info, congestion)


def parse_unix_dump(
    chunk: bytes | memoryview,
    owners: Mapping[int, tuple[ProcessRef, ...]] | None = None,
    names: dict[int, UnixName] | None = None,
) -> tuple[list[SocketRow], bool]:
    """Rows from one datagram of a unix_diag dump, and whether the dump is finished.

    Abstract names get ss's ``@`` for their NUL bytes.  When ``names`` is a
    dict, it is filled with inode -> (file inode, device) for sockets bound to
    a file (requires the request's ``vfs``).  Raises :class:`OSError` if the
    kernel answered with an error.
    """
    rows: list[SocketRow] = []
    unpack = _UNIX_MSG.unpack_from
    end = len(chunk)
    offset = 0
    done = False
    while offset + 16 <= end:
        length, mtype = _NLMSGHDR.unpack_from(chunk, offset)[:2]
        if mtype != SOCK_DIAG_BY_FAMILY:
            if _check_control(chunk, offset, mtype):
                done = True
                break
            offset += (length + 3) & ~3
            continue
        _l, _t, _f, _s, _p, _family, kind, state, inode = unpack(chunk, offset)
        name = ""
        peer = rq = wq = 0
        uid = None
        pos, stop = offset + _UNIX_MSG.size, offset + length
        while pos + 4 <= stop:
            alen, atype = _RTATTR.unpack_from(chunk, pos)
            if alen < 4:
                break
            if atype == UNIX_DIAG_NAME:
                name = _unix_name(bytes(chunk[pos + 4 : pos + alen]))
            elif atype == UNIX_DIAG_PEER:
                (peer,) = _U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_RQLEN:
                rq, wq = _TWO_U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_UID:
                (uid,) = _U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_VFS and names is not None:
                names[inode] = _TWO_U32.unpack_from(chunk, pos + 4)
            pos += (alen + 3) & ~3
        rows.append(
            (
                _UNIX_NETIDS.get(kind, "u_dgr"),
                _STATE_BY_NUMBER[state],
                rq,
                wq,
                "unix",
                name,
                inode,
                "",
                peer,
                inode,
                uid,
                None,
                owners.get(inode, ()) if owners else (),
                None,
            )
        )
        offset += (length + 3) & ~3
    return rows, done


def _unix_name(raw: bytes) -> str:
    if raw.startswith(b"\0"):
        # ss prints every NUL of an abstract name as '@'
        return os.fsdecode(raw.replace(b"\0", b"@"))
    return os.fsdecode(raw.split(b"\0", 1)[0])
