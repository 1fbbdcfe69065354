"""unix_diag, sans I/O: the dump request for Unix sockets and its replies to rows.

A reply message is ``struct nlmsghdr``, ``struct unix_diag_msg`` (family,
type, state, inode, cookie) and the attributes the request's ``show`` bits
asked for (``UNIX_DIAG_NAME``, ``_PEER``, ``_RQLEN``, ``_UID``, ``_VFS``,
``_ICONS``, ``_MEMINFO``; ``_SHUTDOWN`` always).  The I/O is in
:mod:`._sockdiag`, the inet side in :mod:`._netlink`.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sockkit.inspect._netlink import (
    AF_UNIX,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    SOCK_DIAG_BY_FAMILY,
    STATE_BY_NUMBER,
    attribute_end,
    check_control,
    malformed,
    message_length,
)

if TYPE_CHECKING:
    from sockkit.inspect._details import SocketDetails
    from sockkit.inspect._record import ProcessRef, SocketRow

__all__ = ["UnixName", "parse_unix_dump", "unix_request"]

# unix_diag attribute types and the matching "show" request bits
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_MEMINFO, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 4, 5, 6, 7
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER, UDIAG_SHOW_ICONS = 0x01, 0x02, 0x04, 0x08
UDIAG_SHOW_RQLEN, UDIAG_SHOW_MEMINFO, UDIAG_SHOW_UID = 0x10, 0x20, 0x40

_NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_TWO_U32 = struct.Struct("=II")
# nlmsghdr + unix_diag_msg: ... | family type state pad ino cookie[2]
_UNIX_MSG = struct.Struct("=IHHIIBBBxI8x")
_UNIX_REQ = struct.Struct("=IHHIIBBxxIII8x")  # nlmsghdr + unix_diag_req
# the attributes read at a fixed size: their length with the 4-byte header
_MINIMUM = {
    UNIX_DIAG_PEER: 8,
    UNIX_DIAG_RQLEN: 12,
    UNIX_DIAG_UID: 8,
    UNIX_DIAG_VFS: 12,
    UNIX_DIAG_SHUTDOWN: 5,
}
_UNIX_NETIDS = {socket.SOCK_STREAM: "u_str", socket.SOCK_DGRAM: "u_dgr", 5: "u_seq"}

#: a Unix socket's bound file as (inode, device), from UNIX_DIAG_VFS
UnixName = tuple[int, int]


def unix_request(states: int, *, vfs: bool = False, memory: bool = False, seq: int = 1) -> bytes:
    """A dump request for Unix sockets in ``states``, with name, peer, queues and uid.

    ``vfs`` also asks for the bound file's inode and device (to match a
    path), ``memory`` for the socket's memory counters.
    """
    show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
    if vfs:
        show |= UDIAG_SHOW_VFS | UDIAG_SHOW_ICONS
    if memory:
        show |= UDIAG_SHOW_MEMINFO
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return _UNIX_REQ.pack(
        _UNIX_REQ.size, SOCK_DIAG_BY_FAMILY, flags, seq, 0, AF_UNIX, 0, states, 0, show
    )


def parse_unix_dump(
    chunk: bytes | memoryview,
    owners: Mapping[int, tuple[ProcessRef, ...]] | None = None,
    names: dict[int, UnixName] | None = None,
    details: bool = False,
) -> tuple[list[SocketRow], bool]:
    """Rows from one datagram of a unix_diag dump, and whether the dump is finished.

    Abstract names get ss's ``@`` for their NUL bytes.  When ``names`` is a
    dict, it is filled with inode -> (file inode, device) for sockets bound to
    a file (requires the request's ``vfs``).  With ``details``, each row's
    ``details`` holds the cookie, shutdown state, bound file and memory (as
    far as the request asked for them).  Raises :class:`OSError` if the
    kernel answered with an error, or ``EBADMSG`` if a length field does not
    fit (see :mod:`._netlink`).
    """
    rows: list[SocketRow] = []
    unpack = _UNIX_MSG.unpack_from
    end = len(chunk)
    offset = 0
    done = False
    while offset + 16 <= end:
        length = message_length(chunk, offset, end)
        mtype = _NLMSGHDR.unpack_from(chunk, offset)[1]
        if mtype != SOCK_DIAG_BY_FAMILY:
            if check_control(chunk, offset, mtype):
                done = True
                break
            offset += (length + 3) & ~3
            continue
        if length < _UNIX_MSG.size:
            raise malformed(f"socket message of {length} bytes (need {_UNIX_MSG.size})", offset)
        _l, _t, _f, _s, _p, _family, kind, state, inode = unpack(chunk, offset)
        name = ""
        peer = rq = wq = 0
        uid = shutdown = file = memory = peers = None
        pos, stop = offset + _UNIX_MSG.size, offset + length
        while pos + 4 <= stop:
            alen, atype = _RTATTR.unpack_from(chunk, pos)
            attribute_end(pos, alen, stop, _MINIMUM.get(atype, 4))
            if atype == UNIX_DIAG_NAME:
                name = _unix_name(bytes(chunk[pos + 4 : pos + alen]))
            elif atype == UNIX_DIAG_PEER:
                (peer,) = _U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_RQLEN:
                rq, wq = _TWO_U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_UID:
                (uid,) = _U32.unpack_from(chunk, pos + 4)
            elif atype == UNIX_DIAG_VFS:
                file = _TWO_U32.unpack_from(chunk, pos + 4)
                if names is not None:
                    names[inode] = file
            elif atype == UNIX_DIAG_SHUTDOWN:
                shutdown = chunk[pos + 4]
            elif atype == UNIX_DIAG_ICONS and details:
                count = (alen - 4) // 4
                peers = struct.unpack_from(f"={count}I", chunk, pos + 4)
            elif atype == UNIX_DIAG_MEMINFO and details:
                memory = bytes(chunk[pos + 4 : pos + alen])
            pos += (alen + 3) & ~3
        extra = _unix_details(chunk, offset, shutdown, file, memory, peers) if details else None
        rows.append(
            (
                _UNIX_NETIDS.get(kind, "u_dgr"),
                STATE_BY_NUMBER[state],
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
                extra,
            )
        )
        offset += (length + 3) & ~3
    return rows, done


def _unix_details(
    chunk: bytes | memoryview,
    offset: int,
    shutdown: int | None,
    file: tuple[int, int] | None,
    memory: bytes | None,
    peers: tuple[int, ...] | None,
) -> SocketDetails:
    from sockkit.inspect._details import SocketDetails, parse_skmeminfo

    low, high = _TWO_U32.unpack_from(chunk, offset + 24)  # unix_diag_msg's cookie
    parsed = parse_skmeminfo(memory) if memory is not None else None
    cookie = (high << 32) | low
    return SocketDetails(cookie, shutdown=shutdown, memory=parsed, file=file, peers=peers)


def _unix_name(raw: bytes) -> str:
    if raw.startswith(b"\0"):
        # ss prints every NUL of an abstract name as '@'
        return os.fsdecode(raw.replace(b"\0", b"@"))
    return os.fsdecode(raw.split(b"\0", 1)[0])
