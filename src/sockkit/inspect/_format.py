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
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sockkit.inspect._address_text import display_address

if TYPE_CHECKING:
    from sockkit.inspect._record import ProcessRef, SocketRecord, SocketRow
    from sockkit.inspect._watch import SocketEvent

__all__ = [
    "event_to_dict",
    "format_event",
    "format_processes",
    "format_table",
    "record_to_dict",
]

#: (port, protocol) -> the text to show for a TCP/UDP port
PortNamer = Callable[[int, str], str]
#: row -> (text after its columns, text of a second line under it)
Annotator = Callable[["SocketRow"], tuple[str, "str | None"]]


def format_processes(processes: Sequence[ProcessRef]) -> str:
    """``users:(("python3",pid=1234,fd=3),...)`` as ss prints it, or ``""`` for none."""
    if not processes:
        return ""
    inner = ",".join(f'("{p.name}",pid={p.pid},fd={p.fd})' for p in processes)
    return f"users:({inner})"


def format_table(
    sockets: Iterable[SocketRecord] | Iterable[SocketRow],
    *,
    netid_column: bool = True,
    state_column: bool = True,
    header: bool = True,
    tcp_info: bool = False,
    port_name: PortNamer | None = None,
    annotate: Annotator | None = None,
) -> str:
    """The table for ``sockets`` (records or rows), each line ending in a newline.

    Returns "" when there is nothing to print.  ``port_name`` turns a port
    into text (a service name without ``-n``); by default ports are numeric
    and port 0 prints as ``*``.  ``annotate`` adds ss's ``-o``/``-e``/``-m``/``-i``
    texts (an :class:`~sockkit.inspect._annotations.Annotations`); ``tcp_info``
    is the short form for ``-i`` alone.
    """
    # Built a column at a time with map()/itemgetter, which keeps the
    # per-socket work in C: ``sockkit ss`` formats 10,000 rows in a few ms.
    given: list[Any] = list(sockets)
    rows: list[SocketRow] = given if not given or isinstance(given[0], tuple) else []
    if given and not rows:
        from sockkit.inspect._record import row_from_record

        rows = list(map(row_from_record, given))
    if not rows and not header:
        return ""
    netids = list(map(_NETID, rows))
    families = list(map(_FAMILY, rows))
    local_addrs = list(map(_LOCAL_ADDRESS, rows))
    peer_addrs = list(map(_PEER_ADDRESS, rows))
    numbers_local = list(map(_LOCAL_PORT, rows))
    numbers_peer = list(map(_PEER_PORT, rows))
    local_ports: list[int | str]
    peer_ports: list[int | str]
    if port_name is None:
        # ports stay ints for "%s" to print; only 0 needs replacing, by "*"
        local_ports = (
            ["*" if p == 0 else p for p in numbers_local] if 0 in numbers_local else numbers_local
        )
        peer_ports = (
            ["*" if p == 0 else p for p in numbers_peer] if 0 in numbers_peer else numbers_peer
        )
        local_width, peer_width = _number_width(numbers_local), _number_width(numbers_peer)
    else:
        local_ports = list(map(port_name, numbers_local, netids))
        peer_ports = list(map(port_name, numbers_peer, netids))
        local_width, peer_width = _text_width(local_ports), _text_width(peer_ports)
    unix_rows = False
    if set(families) != {"inet"}:
        for i, family in enumerate(families):
            if family == "inet":
                continue
            row = rows[i]
            if family == "unix":
                # ss: the path (or "*") and the inode, the peer's inode even if 0
                unix_rows = True
                local_addrs[i] = row[5] or "*"
                peer_addrs[i] = "*"
                local_ports[i], peer_ports[i] = row[6], row[8]
                local_width = max(local_width, len(str(row[6])))
                peer_width = max(peer_width, len(str(row[8])))
            else:
                local_addrs[i] = display_address(row[5], row[11])
                peer_addrs[i] = display_address(row[7], row[11])
    states = list(map(_STATE, rows))
    recv_qs = list(map(_RECV_Q, rows))
    send_qs = list(map(_SEND_Q, rows))
    widths = (
        max(5, _text_width(netids)),
        max(5, _text_width(states)),
        max(6, _number_width(recv_qs)),
        max(6, _number_width(send_qs)),
        max(13, _text_width(local_addrs)),
        max(4, local_width),
        max(12, _text_width(peer_addrs)),
        max(4, peer_width),
    )
    if tcp_info and annotate is None:
        from sockkit.inspect._annotations import Annotations

        annotate = Annotations(tcp_info=True)
    processes = list(map(_PROCESSES, rows))
    # the last column: processes, then what annotate adds (built only when needed)
    has_process = any(processes)
    tails: list[str] = [format_processes(p) if p else "" for p in processes] if has_process else []
    below: list[str | None] = []
    if annotate is not None:
        notes = list(map(annotate, rows))
        heads = tails or [""] * len(rows)
        tails = [" ".join(filter(None, (h, n[0]))) for h, n in zip(heads, notes, strict=True)]
        below = [note[1] for note in notes]
        has_process = any(tails)
    # A Unix row puts a space between address and "port" where TCP/UDP put
    # a colon; with no Unix rows the colon goes into the template itself.
    sep = "%s" if unix_rows else ":"
    fields = []
    if netid_column:
        fields.append(f"%-{widths[0]}s ")
    if state_column:
        fields.append(f"%-{widths[1]}s ")
    fields.append(
        f"%-{widths[2]}s %-{widths[3]}s %{widths[4]}s{sep}%-{widths[5]}s %{widths[6]}s{sep}"
    )
    with_process = "".join((*fields, f"%-{widths[7]}s %s"))
    template = with_process if has_process else "".join((*fields, "%s"))
    shown: list[list[str] | list[int] | list[int | str]] = []
    if netid_column:
        shown.append(netids)
    if state_column:
        shown.append(states)
    if unix_rows:
        seps = [" " if family == "unix" else ":" for family in families]
        shown += [recv_qs, send_qs, local_addrs, seps, local_ports, peer_addrs, seps, peer_ports]
    else:
        shown += [recv_qs, send_qs, local_addrs, local_ports, peer_addrs, peer_ports]
    if has_process:
        shown.append(tails)
    lines: list[str] = []
    if header:
        titles = ["Netid"] if netid_column else []
        titles += ["State"] if state_column else []
        titles += ["Recv-Q", "Send-Q", "Local Address", *([":"] if unix_rows else []), "Port"]
        titles += ["Peer Address", *([":"] if unix_rows else []), "Port", "Process"]
        lines.append((with_process % tuple(titles)).rstrip())
    body = list(map(template.__mod__, zip(*shown, strict=True)))
    if has_process:
        body = [line.rstrip() for line in body]
    if any(note is not None for note in below):
        for line, note in zip(body, below, strict=True):
            lines.append(line)
            if note is not None:
                lines.append(("\t " + note).rstrip(" "))
    else:
        lines += body
    lines.append("")
    return "\n".join(lines)


def _text_width(column: list[str] | list[int | str]) -> int:
    # few distinct texts (states, addresses): measure each once
    return max(map(len, map(str, set(column))), default=0)


def _number_width(column: list[int]) -> int:
    return len(str(max(column, default=0)))


# positions in a row (SocketRecord's field order)
_NETID = itemgetter(0)
_STATE = itemgetter(1)
_RECV_Q = itemgetter(2)
_SEND_Q = itemgetter(3)
_FAMILY = itemgetter(4)
_LOCAL_ADDRESS = itemgetter(5)
_LOCAL_PORT = itemgetter(6)
_PEER_ADDRESS = itemgetter(7)
_PEER_PORT = itemgetter(8)
_PROCESSES = itemgetter(12)
_TCP_INFO = itemgetter(13)


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
        "details": _details_dict(record),
    }


def _details_dict(record: SocketRecord) -> dict[str, Any] | None:
    details = record.details
    if details is None:
        return None
    from dataclasses import asdict

    data = asdict(details)
    if details.file is not None:
        data["file"] = {"inode": details.file[0], "device": details.file[1]}
    if details.peers is not None:
        data["peers"] = list(details.peers)
    return data


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
