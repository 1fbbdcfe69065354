"""The values the inspector hands out: one :class:`SocketRecord` per socket.

Records are frozen dataclasses.  The parsers build thousands of them per
listing, so they go through :func:`make_record`, which fills the instance
dictionary in one step instead of running the generated ``__init__`` (that
costs ~2 µs a record with its per-field ``object.__setattr__``; with 10,000
sockets it would be most of ``sockkit ss``'s time budget).  The result is an
ordinary instance: equality, hashing, ``repr`` and immutability all hold.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ProcessRef", "SocketRecord", "TcpInfo", "make_process", "make_record"]


@dataclass(frozen=True)
class ProcessRef:
    """A process holding a socket open: its command name, pid and the descriptor number."""

    name: str
    pid: int
    fd: int


@dataclass(frozen=True)
class TcpInfo:
    """The kernel's ``struct tcp_info`` for one TCP socket, names without ``tcpi_``.

    Times are in microseconds (``rtt``, ``rttvar``, ``rto``, ``ato``,
    ``min_rtt``, ``rcv_rtt``) or milliseconds (``last_data_sent``,
    ``last_data_recv``, ``last_ack_recv``), rates in bytes per second,
    ``snd_cwnd`` in segments.  A field is ``None`` when the running kernel's
    struct is too short to hold it (older kernels give fewer fields).
    ``congestion`` is the congestion-control algorithm's name, when known.
    """

    state: int | None = None
    ca_state: int | None = None
    retransmits: int | None = None
    probes: int | None = None
    backoff: int | None = None
    options: int | None = None
    snd_wscale: int | None = None
    rcv_wscale: int | None = None
    delivery_rate_app_limited: bool | None = None
    rto: int | None = None
    ato: int | None = None
    snd_mss: int | None = None
    rcv_mss: int | None = None
    unacked: int | None = None
    sacked: int | None = None
    lost: int | None = None
    retrans: int | None = None
    fackets: int | None = None
    last_data_sent: int | None = None
    last_ack_sent: int | None = None
    last_data_recv: int | None = None
    last_ack_recv: int | None = None
    pmtu: int | None = None
    rcv_ssthresh: int | None = None
    rtt: int | None = None
    rttvar: int | None = None
    snd_ssthresh: int | None = None
    snd_cwnd: int | None = None
    advmss: int | None = None
    reordering: int | None = None
    rcv_rtt: int | None = None
    rcv_space: int | None = None
    total_retrans: int | None = None
    pacing_rate: int | None = None
    max_pacing_rate: int | None = None
    bytes_acked: int | None = None
    bytes_received: int | None = None
    segs_out: int | None = None
    segs_in: int | None = None
    notsent_bytes: int | None = None
    min_rtt: int | None = None
    data_segs_in: int | None = None
    data_segs_out: int | None = None
    delivery_rate: int | None = None
    busy_time: int | None = None
    rwnd_limited: int | None = None
    sndbuf_limited: int | None = None
    delivered: int | None = None
    delivered_ce: int | None = None
    bytes_sent: int | None = None
    bytes_retrans: int | None = None
    dsack_dups: int | None = None
    reord_seen: int | None = None
    rcv_ooopack: int | None = None
    snd_wnd: int | None = None
    rcv_wnd: int | None = None
    congestion: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields the kernel gave, as a plain dict (``None`` fields left out)."""
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


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
    ``processes`` is filled when asked for, ``tcp_info`` likewise (TCP only).
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


def display_address(address: str, v6only: bool | None) -> str:
    """An IP address as ss prints it: IPv6 in brackets, a dual-stack ``::`` as ``*``."""
    if ":" not in address:
        return address
    if address == "::" and not v6only:
        return "*"
    return f"[{address}]"


_new = object.__new__
_set = object.__setattr__


def make_record(
    netid: str,
    state: str,
    recv_q: int,
    send_q: int,
    family: str,
    local_address: str,
    local_port: int,
    peer_address: str,
    peer_port: int,
    inode: int,
    uid: int | None,
    v6only: bool | None,
    processes: tuple[ProcessRef, ...],
    tcp_info: TcpInfo | None,
) -> SocketRecord:
    """A :class:`SocketRecord` built without the generated ``__init__`` (see module docstring)."""
    record = _new(SocketRecord)
    _set(
        record,
        "__dict__",
        {
            "netid": netid,
            "state": state,
            "recv_q": recv_q,
            "send_q": send_q,
            "family": family,
            "local_address": local_address,
            "local_port": local_port,
            "peer_address": peer_address,
            "peer_port": peer_port,
            "inode": inode,
            "uid": uid,
            "v6only": v6only,
            "processes": processes,
            "tcp_info": tcp_info,
        },
    )
    return record


def make_process(name: str, pid: int, fd: int) -> ProcessRef:
    """A :class:`ProcessRef` built the fast way (``-p`` makes one per socket)."""
    ref = _new(ProcessRef)
    _set(ref, "__dict__", {"name": name, "pid": pid, "fd": fd})
    return ref
