"""Records to text: ss's table, its ``-p`` and ``-i`` annotations, and the JSON form.

Table layout, as ss prints it: ``Netid`` (only when several tables are
shown), ``State`` (only when several states can appear), ``Recv-Q``,
``Send-Q``, ``Local Address:Port`` and ``Peer Address:Port`` with the
addresses right-aligned against the ``:`` and the ports left-aligned after
it (Unix sockets use a space there, and their "ports" are inode numbers),
then ``Process``.  Column widths fit the widest entry.  ``-i`` adds a second,
tab-indented line of TCP internals under each TCP socket that has them.

Everything here is pure; the optional service-name look-up is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sockkit.inspect._record import ProcessRef, SocketRecord, TcpInfo, display_address

if TYPE_CHECKING:
    from sockkit.inspect._watch import SocketEvent

__all__ = [
    "event_to_dict",
    "format_event",
    "format_processes",
    "format_table",
    "format_tcp_info",
    "record_to_dict",
]

#: (port, protocol) -> the text to show for a TCP/UDP port
PortNamer = Callable[[int, str], str]

_HEADER = (
    "Netid",
    "State",
    "Recv-Q",
    "Send-Q",
    "Local Address",
    ":",
    "Port",
    "Peer Address",
    ":",
    "Port",
)


def format_processes(processes: Sequence[ProcessRef]) -> str:
    """``users:(("python3",pid=1234,fd=3),...)`` as ss prints it, or ``""`` for none."""
    if not processes:
        return ""
    inner = ",".join(f'("{p.name}",pid={p.pid},fd={p.fd})' for p in processes)
    return f"users:({inner})"


def _numeric_port(port: int, _protocol: str) -> str:
    return str(port) if port else "*"


def format_table(
    records: Iterable[SocketRecord],
    *,
    netid_column: bool = True,
    state_column: bool = True,
    header: bool = True,
    tcp_info: bool = False,
    port_name: PortNamer | None = None,
) -> str:
    """The table for ``records``, each line ending in a newline ("" when there is nothing to print).

    ``port_name`` turns a port into text (a service name without ``-n``);
    by default ports are numeric and port 0 prints as ``*``.
    """
    name = port_name or _numeric_port
    rows: list[tuple[str, ...]] = []
    infos: list[str | None] = []
    for r in records:
        if r.family == "unix":
            local_addr = r.local_address or "*"
            peer_addr = "*"
            local_port, peer_port, sep = str(r.local_port), str(r.peer_port), " "
        else:
            local_addr = r.local_address
            if ":" in local_addr:
                local_addr = display_address(local_addr, r.v6only)
            peer_addr = r.peer_address
            if ":" in peer_addr:
                peer_addr = display_address(peer_addr, r.v6only)
            local_port, peer_port, sep = (
                name(r.local_port, r.netid),
                name(r.peer_port, r.netid),
                ":",
            )
        rows.append(
            (
                r.netid,
                r.state,
                str(r.recv_q),
                str(r.send_q),
                local_addr,
                sep,
                local_port,
                peer_addr,
                sep,
                peer_port,
                format_processes(r.processes) if r.processes else "",
            )
        )
        if tcp_info:
            infos.append(format_tcp_info(r.tcp_info) if r.tcp_info is not None else None)
    if not rows and not header:
        return ""
    columns = list(zip(*rows, strict=True)) if rows else [()] * 11
    widths = [max(len(_HEADER[i]), max(map(len, columns[i]), default=0)) for i in range(10)]
    widths[2] = max(widths[2], 6)
    widths[3] = max(widths[3], 6)
    has_process = any(columns[10]) if rows else False
    fields = []
    if netid_column:
        fields.append(f"%-{widths[0]}s ")
    if state_column:
        fields.append(f"%-{widths[1]}s ")
    fields.append(f"%-{widths[2]}s %-{widths[3]}s %{widths[4]}s%s%-{widths[6]}s %{widths[7]}s%s")
    with_process = "".join((*fields, f"%-{widths[9]}s %s"))
    template = with_process if has_process else "".join((*fields, "%s"))
    first = (0 if netid_column else 1) + (0 if state_column else 1)
    lines: list[str] = []
    if header:
        lines.append((with_process % (*_HEADER, "Process")[first:]).rstrip())
    if has_process:
        body = [(template % row[first:]).rstrip() for row in rows]
    else:
        body = [template % row[first:10] for row in rows]
    if tcp_info:
        for line, info in zip(body, infos, strict=True):
            lines.append(line)
            if info is not None:
                lines.append("\t " + info)
    else:
        lines += body
    lines.append("")
    return "\n".join(lines)


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:g}"


def format_tcp_info(info: TcpInfo) -> str:
    """ss's ``-i`` line for one socket: the non-zero fields among ss's usual ones, in ss's order."""
    parts: list[str] = []
    add = parts.append
    if info.congestion:
        add(info.congestion)
    if info.options is not None and info.options & 0x04 and info.snd_wscale is not None:
        add(f"wscale:{info.snd_wscale},{info.rcv_wscale}")
    if info.rto and info.rto != 3_000_000:
        add(f"rto:{_ms(info.rto)}")
    if info.backoff:
        add(f"backoff:{info.backoff}")
    if info.rtt:
        add(f"rtt:{_ms(info.rtt)}/{_ms(info.rttvar or 0)}")
    if info.ato:
        add(f"ato:{_ms(info.ato)}")
    for label, value in (
        ("mss", info.snd_mss),
        ("pmtu", info.pmtu),
        ("rcvmss", info.rcv_mss),
        ("advmss", info.advmss),
        ("cwnd", info.snd_cwnd),
    ):
        if value:
            add(f"{label}:{value}")
    if info.snd_ssthresh and info.snd_ssthresh < 0xFFFF:
        add(f"ssthresh:{info.snd_ssthresh}")
    for label, value in (
        ("bytes_sent", info.bytes_sent),
        ("bytes_retrans", info.bytes_retrans),
        ("bytes_acked", info.bytes_acked),
        ("bytes_received", info.bytes_received),
        ("segs_out", info.segs_out),
        ("segs_in", info.segs_in),
        ("data_segs_out", info.data_segs_out),
        ("data_segs_in", info.data_segs_in),
        ("lastsnd", info.last_data_sent),
        ("lastrcv", info.last_data_recv),
        ("lastack", info.last_ack_recv),
        ("delivered", info.delivered),
        ("unacked", info.unacked),
        ("lost", info.lost),
    ):
        if value:
            add(f"{label}:{value}")
    if info.retrans or info.total_retrans:
        add(f"retrans:{info.retrans or 0}/{info.total_retrans or 0}")
    if info.rcv_rtt:
        add(f"rcv_rtt:{_ms(info.rcv_rtt)}")
    for label, value in (
        ("rcv_space", info.rcv_space),
        ("rcv_ssthresh", info.rcv_ssthresh),
        ("notsent", info.notsent_bytes),
    ):
        if value:
            add(f"{label}:{value}")
    if info.min_rtt and info.min_rtt != 0xFFFFFFFF:
        add(f"minrtt:{_ms(info.min_rtt)}")
    if info.snd_wnd:
        add(f"snd_wnd:{info.snd_wnd}")
    if info.rcv_wnd:
        add(f"rcv_wnd:{info.rcv_wnd}")
    return " ".join(parts)


def record_to_dict(record: SocketRecord) -> dict[str, Any]:
    """The JSON object for one socket (the schema is in the ``sockkit ss`` documentation)."""
    return {
        "netid": record.netid,
        "state": record.state,
        "recv_q": record.recv_q,
        "send_q": record.send_q,
        "family": record.family,
        "local": record.local,
        "peer": record.peer,
        "local_address": record.local_address,
        "local_port": record.local_port,
        "peer_address": record.peer_address,
        "peer_port": record.peer_port,
        "inode": record.inode,
        "uid": record.uid,
        "v6only": record.v6only,
        "processes": [{"name": p.name, "pid": p.pid, "fd": p.fd} for p in record.processes],
        "tcp_info": record.tcp_info.as_dict() if record.tcp_info is not None else None,
    }


def format_event(event: SocketEvent, arrow: str = "→") -> str:
    """One ``--watch`` line: ``+`` appeared, ``~`` changed state, ``-`` disappeared.

    ``+ tcp 127.0.0.1:41122 → 127.0.0.1:7007 SYN-SENT``,
    ``~ tcp 127.0.0.1:41122 → 127.0.0.1:7007 SYN-SENT → ESTAB``; the
    processes follow when known.
    """
    r = event.record
    if event.kind == "changed":
        mark, states = "~", f"{event.old_state} {arrow} {r.state}"
    else:
        mark, states = ("+" if event.kind == "appeared" else "-"), r.state
    line = f"{mark} {r.netid} {r.local} {arrow} {r.peer} {states}"
    if r.processes:
        line += " " + format_processes(r.processes)
    return line


def event_to_dict(event: SocketEvent) -> dict[str, Any]:
    """The JSON object for one ``--watch`` event."""
    return {
        "event": event.kind,
        "time": event.time,
        "state": event.record.state,
        "old_state": event.old_state,
        "socket": record_to_dict(event.record),
    }
