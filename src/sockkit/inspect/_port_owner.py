"""Who holds an address: the answer to "address already in use".

:func:`port_owner` finds the socket that blocks a bind -- a TCP listener (or
any other TCP socket bound to the port), a bound UDP socket, a Unix socket
on the path -- and names the processes holding it.  It asks the kernel for
that one port only (a sock_diag port filter), so it is cheap enough to call
on the error path of every ``serve``/``listen``.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from typing import TYPE_CHECKING

from sockkit.inspect._listing import SocketTable
from sockkit.inspect._owners import socket_owners
from sockkit.inspect._query import ALL_STATES, TIME_WAIT, SocketQuery
from sockkit.inspect._record import SocketRecord, record_from_row
from sockkit.inspect._sockdiag import SockDiag
from sockkit.inspect._unix_diag import parse_unix_dump, unix_request

if TYPE_CHECKING:
    from sockkit._endpoint import Endpoint

__all__ = ["port_owner"]

_WILDCARDS = frozenset({"", "*", "0.0.0.0", "::"})
_MAX_NAMED = 3


def port_owner(transport: str | Endpoint, host: str | None = None, port: int = 0) -> str | None:
    """Describe who holds ``host:port`` (or a Unix path), e.g. ``"pid 1234 (python3)"``.

    ``transport`` is ``tcp`` (or ``tls``), ``udp``, ``unix`` or
    ``unixgram``; for the Unix ones ``host`` is the path (``@name`` for the
    abstract namespace) and ``port`` is ignored.  ``host`` ``None`` or a
    wildcard matches any local address, and a socket bound to a wildcard
    matches any ``host``; a host name (not an IP address) matches any.
    An :class:`~sockkit.Endpoint` may be passed instead of the three:
    ``port_owner(endpoint)``, e.g. when ``open_listener(endpoint)`` raised
    :class:`~sockkit.AddressInUseError`.

    Returns ``None`` when no such socket is found.  When the socket exists
    but its process cannot be seen (another user's, without privilege), says
    so with the socket owner's uid.  Never raises for lack of privilege.
    """
    if not isinstance(transport, str):
        from sockkit._endpoint import resolve_service  # a service-name port becomes its number

        endpoint = resolve_service(transport)
        transport = endpoint.transport
        host, port = (endpoint.path, 0) if endpoint.is_unix else (endpoint.host, int(endpoint.port))
    if transport in ("unix", "unixgram"):
        if not host:
            return None
        records = _unix_holders(host, "u_dgr" if transport == "unixgram" else None)
    elif transport in ("tcp", "tls", "udp"):
        records = _inet_holders("udp" if transport == "udp" else "tcp", host, port)
    else:
        raise ValueError(f"unknown transport {transport!r}")
    if not records:
        return None
    owners = socket_owners({r.inode for r in records if r.inode})
    processes = sorted({(p.pid, p.name) for r in records for p in owners.get(r.inode, ())})
    if not processes:
        uid = records[0].uid
        who = f"uid {uid}" if uid is not None else "another user"
        return f"a socket of {who} (its process is not visible to this user)"
    named = ", ".join(f"pid {pid} ({name})" for pid, name in processes[:_MAX_NAMED])
    more = len(processes) - _MAX_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def _inet_holders(netid: str, host: str | None, port: int) -> list[SocketRecord]:
    states = ALL_STATES & ~(1 << TIME_WAIT)
    query = SocketQuery(netids=frozenset({netid}), states=states, sport=port)
    with SocketTable() as table:
        found = [
            r for r in table.read(query) if r.inode and _address_matches(host, r.local_address)
        ]
    listening = [r for r in found if r.state == "LISTEN" or netid == "udp"]
    return listening or found


def _normal(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _address_matches(host: str | None, local: str) -> bool:
    if host is None or host.strip("[]") in _WILDCARDS or local in _WILDCARDS:
        return True
    wanted = host.strip("[]")
    try:
        ipaddress.ip_address(wanted)
    except ValueError:
        return True  # a host name: the port alone decides
    return _normal(wanted) == _normal(local)


def _unix_holders(path: str, netid: str | None) -> list[SocketRecord]:
    file_id: tuple[int, int] | None = None
    if not path.startswith("@"):
        try:
            info = os.stat(path)
        except OSError:
            info = None
        if info is not None and stat.S_ISSOCK(info.st_mode):
            file_id = (info.st_ino, info.st_dev)
    bound: dict[int, tuple[int, int]] = {}
    try:
        with SockDiag() as diag:
            rows = diag.dump(
                unix_request(ALL_STATES, vfs=True),
                lambda chunk: parse_unix_dump(chunk, names=bound),
            )
        records = list(map(record_from_row, rows))
    except OSError:
        with SocketTable(source="proc") as table:
            records = table.read(
                SocketQuery(netids=frozenset({"u_str", "u_dgr", "u_seq"}), states=ALL_STATES)
            )
        bound = {}
    matches = [
        r
        for r in records
        if (netid is None or r.netid == netid)
        and (
            r.local_address == path
            or (file_id is not None and _same_file(bound.get(r.inode), file_id))
        )
    ]
    # The listener (or bound datagram socket) holds the path; accepted
    # connections carry the same name but do not block a bind.
    holders = [r for r in matches if r.state in ("LISTEN", "UNCONN") or r.netid == "u_dgr"]
    return holders or matches


def _same_file(vfs: tuple[int, int] | None, file_id: tuple[int, int]) -> bool:
    if vfs is None:
        return False
    # unix_diag reports the kernel's internal dev_t (major << 20 | minor);
    # stat() gives the user-space encoding, so re-encode before comparing.
    inode, device = vfs
    return inode == file_id[0] and os.makedev(device >> 20, device & 0xFFFFF) == file_id[1]
