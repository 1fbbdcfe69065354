"""The values the inspector hands out: one :class:`SocketRecord` per socket.

Records are frozen dataclasses.  Underneath them is the *row*: the same
fields, in the same order, as a plain tuple (:data:`SocketRow`).  The
parsers produce rows, because a listing of 10,000 sockets has a budget of a
few tens of milliseconds and a tuple costs a fraction of an object; the
table printer works on rows directly, and :func:`record_from_row` turns a
row into a record for everything else.  It fills the instance dictionary in
one step instead of running the generated ``__init__`` (whose per-field
``object.__setattr__`` costs ~2 µs a record); the result is an ordinary
instance: equality, hashing, ``repr`` and immutability all hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING

from sockkit.inspect._address_text import display_address

if TYPE_CHECKING:
    from sockkit.inspect._details import SocketDetails
    from sockkit.inspect._tcp_info import TcpInfo

__all__ = [
    "FIELDS",
    "ProcessRef",
    "SocketRecord",
    "SocketRow",
    "display_address",
    "make_process",
    "record_from_row",
    "row_from_record",
]


@dataclass(frozen=True)
class ProcessRef:
    """A process holding a socket open: its command name, pid and the descriptor number."""

    name: str
    pid: int
    fd: int


@dataclass(frozen=True)
class SocketRecord:
    """One socket, with what ``ss`` shows of it.

    ``netid`` is ss's table name: ``tcp``, ``udp``, ``u_str``, ``u_dgr`` or
    ``u_seq``.  ``family`` is ``inet``, ``inet6`` or ``unix``.  ``state`` is
    ss's state name (``ESTAB``, ``LISTEN``, ``UNCONN``, ``TIME-WAIT``, ...).

    ``recv_q``/``send_q`` have ss's meaning: for a listener the accept queue's
    length and its backlog, otherwise the bytes not yet read by the
    application / not yet acknowledged by the peer (TCP), or queued in the
    socket buffers (UDP, Unix).

    For TCP/UDP, ``local_address``/``peer_address`` are IP addresses in text
    form (``127.0.0.1``, ``::1``; the wildcard is ``0.0.0.0`` or ``::``) and
    the ports are numbers (0 when unset).  For Unix sockets the local address
    is the bound path (``@name`` in the abstract namespace, ``""`` unnamed),
    the peer address is ``""``, and the "ports" are the socket's and its
    peer's inode numbers, as ss shows them.

    ``inode`` is 0 for sockets no process holds (TIME-WAIT, not yet
    accepted, orphaned).  ``uid`` is ``None`` when the source does not say.
    ``v6only`` is ``None`` when unknown (``/proc`` does not say).
    ``processes`` is filled when asked for, ``tcp_info`` likewise (TCP only),
    and ``details`` (cookie, timer, shutdown, memory: what ``-e``, ``-o``
    and ``-m`` show; netlink only).
    """

    netid: str
    state: str
    recv_q: int
    send_q: int
    family: str
    local_address: str
    local_port: int
    peer_address: str
    peer_port: int
    inode: int
    uid: int | None = None
    v6only: bool | None = None
    processes: tuple[ProcessRef, ...] = ()
    tcp_info: TcpInfo | None = None
    details: SocketDetails | None = None

    @property
    def local(self) -> str:
        """The local end as ss prints it: ``127.0.0.1:7007``, ``[::1]:7007``, ``/tmp/s:1234``."""
        return _endpoint_text(self, self.local_address, self.local_port)

    @property
    def peer(self) -> str:
        """The peer end as ss prints it: ``127.0.0.1:41122``, ``0.0.0.0:*``, ``*:1235``."""
        return _endpoint_text(self, self.peer_address, self.peer_port)


def _endpoint_text(record: SocketRecord, address: str, port: int) -> str:
    if record.family == "unix":
        return f"{address or '*'}:{port}"
    return f"{display_address(address, record.v6only)}:{port or '*'}"


#: a socket as a tuple of :class:`SocketRecord`'s fields, in their order
SocketRow = tuple[
    str,  # netid
    str,  # state
    int,  # recv_q
    int,  # send_q
    str,  # family
    str,  # local_address
    int,  # local_port
    str,  # peer_address
    int,  # peer_port
    int,  # inode
    "int | None",  # uid
    "bool | None",  # v6only
    "tuple[ProcessRef, ...]",  # processes
    "TcpInfo | None",  # tcp_info
    "SocketDetails | None",  # details
]

FIELDS: tuple[str, ...] = (
    "netid",
    "state",
    "recv_q",
    "send_q",
    "family",
    "local_address",
    "local_port",
    "peer_address",
    "peer_port",
    "inode",
    "uid",
    "v6only",
    "processes",
    "tcp_info",
    "details",
)

_new = object.__new__
_set = object.__setattr__
_as_row = attrgetter(*FIELDS)


def record_from_row(row: SocketRow) -> SocketRecord:
    """The :class:`SocketRecord` for a row (built the fast way; see the module docstring)."""
    record = _new(SocketRecord)
    _set(
        record,
        "__dict__",
        {
            "netid": row[0],
            "state": row[1],
            "recv_q": row[2],
            "send_q": row[3],
            "family": row[4],
            "local_address": row[5],
            "local_port": row[6],
            "peer_address": row[7],
            "peer_port": row[8],
            "inode": row[9],
            "uid": row[10],
            "v6only": row[11],
            "processes": row[12],
            "tcp_info": row[13],
            "details": row[14],
        },
    )
    return record


def row_from_record(record: SocketRecord) -> SocketRow:
    """A record's fields as a row."""
    row: SocketRow = _as_row(record)
    return row


def make_process(name: str, pid: int, fd: int) -> ProcessRef:
    """A :class:`ProcessRef` built the fast way (``-p`` makes one per socket)."""
    ref = _new(ProcessRef)
    _set(ref, "__dict__", {"name": name, "pid": pid, "fd": fd})
    return ref
