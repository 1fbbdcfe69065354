"""``/proc/net/{tcp,tcp6,udp,udp6,unix}`` text to rows, sans I/O: the fallback source.

Byte order is the trap here.  The kernel prints an IPv4 address with
``%08X`` of the raw ``__be32`` *as a host integer*, so on a little-endian
machine 127.0.0.1 reads ``0100007F``; IPv6 is four such 32-bit words.  Ports
are printed from host-order integers and read as they look.  Decoding packs
the words back in host order (``struct`` ``=I``), which gives the address
bytes on any machine.

What ``/proc`` cannot say, and netlink can: a listener's backlog (its Send-Q
reads 0 here), whether an IPv6 socket is v6-only (``v6only`` is ``None``
unless its binding settles it), a
Unix socket's queues and peer (0 here; iproute2 ss's own fallback has the
same gaps).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sockkit.inspect._query import (
    CLOSE,
    CLOSING,
    ESTABLISHED,
    LISTEN,
    NEW_SYN_RECV,
    STATE_NAMES,
    SYN_SENT,
)

if TYPE_CHECKING:
    from sockkit.inspect._record import ProcessRef, SocketRow

__all__ = ["decode_proc_address", "parse_proc_inet", "parse_proc_unix"]

_WORD = struct.Struct("=I")
_WORDS = struct.Struct("=IIII")

# /proc/net/unix's "St" column is the socket layer's state (SS_UNCONNECTED=1,
# SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING); ss maps it like this.
_UNIX_STATES = {1: CLOSE, 2: SYN_SENT, 3: ESTABLISHED, 4: CLOSING}
_UNIX_LISTENING = 1 << 16  # __SO_ACCEPTCON in the Flags column
_UNIX_NETIDS = {1: "u_str", 2: "u_dgr", 5: "u_seq"}


def decode_proc_address(text: str) -> tuple[str, int]:
    """``0100007F:1B5F`` -> ``("127.0.0.1", 7007)``; 32 hex digits decode as IPv6."""
    hex_address, _, hex_port = text.partition(":")
    if len(hex_address) == 8:
        raw = _WORD.pack(int(hex_address, 16))
        address = socket.inet_ntop(socket.AF_INET, raw)
    elif len(hex_address) == 32:
        words = [int(hex_address[i : i + 8], 16) for i in range(0, 32, 8)]
        address = socket.inet_ntop(socket.AF_INET6, _WORDS.pack(*words))
    else:
        raise ValueError(f"not a /proc/net address: {text!r}")
    return address, int(hex_port, 16)


def parse_proc_inet(
    text: str,
    netid: str,
    states: int = -1,
    owners: Mapping[int, tuple[ProcessRef, ...]] | None = None,
) -> list[SocketRow]:
    """Rows (:data:`SocketRow`) from the text of ``/proc/net/tcp``, ``tcp6``, ``udp`` or ``udp6``.

    ``netid`` is ``tcp`` or ``udp``; sockets whose state is not in the
    ``states`` bit mask are skipped.  The header line and malformed lines
    (a state outside the kernel's 1..12 among them) are skipped.
    """
    rows: list[SocketRow] = []
    cache: dict[str, tuple[str, int]] = {}
    lines = text.splitlines()
    for line in lines[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            state = int(fields[3], 16)
            # The kernel prints a TCP state (tcp_states.h, 1..12), UDP reusing
            # two of them; anything else is not a line of this file.  Checked
            # before the shift: 1 << state with a ten-digit state would ask
            # for a 2**40-bit integer.
            if not ESTABLISHED <= state <= NEW_SYN_RECV:
                continue
            if not states & (1 << state):
                continue
            local_text, peer_text = fields[1], fields[2]
            local = cache.get(local_text) or cache.setdefault(
                local_text, decode_proc_address(local_text)
            )
            peer = cache.get(peer_text) or cache.setdefault(
                peer_text, decode_proc_address(peer_text)
            )
            tx_text, _, rx_text = fields[4].partition(":")
            uid, inode = int(fields[7]), int(fields[9])
            send_q, recv_q = int(tx_text, 16), int(rx_text, 16)
        except ValueError:
            continue
        family = "inet6" if len(local_text) > 13 else "inet"
        rows.append(
            (
                netid,
                STATE_NAMES[state],
                recv_q,
                send_q,
                family,
                local[0],
                local[1],
                peer[0],
                peer[1],
                inode,
                uid,
                _v6only(local[0], peer[0]) if family == "inet6" else False,
                owners.get(inode, ()) if owners and inode else (),
                None,
                None,
            )
        )
    return rows


def _v6only(local: str, peer: str) -> bool | None:
    # Binding an IPv6 socket to a specific (not v4-mapped) address makes the
    # kernel set v6-only; that is the one case /proc lets us be sure of, and
    # the one where it changes how a "::" peer is shown.
    if peer == "::" and local != "::" and not local.startswith("::ffff:"):
        return True
    return None


def parse_proc_unix(
    text: str,
    states: int = -1,
    owners: Mapping[int, tuple[ProcessRef, ...]] | None = None,
) -> list[SocketRow]:
    """Rows (see :data:`SocketRow`) from the text of ``/proc/net/unix``.

    Its columns: ``Num RefCount Protocol Flags Type St Inode Path``.

    Queues and peers are not in this file: they read 0.
    """
    rows: list[SocketRow] = []
    lines = text.splitlines()
    for line in lines[1:]:
        fields = line.split(None, 7)
        if len(fields) < 7:
            continue
        try:
            flags, kind, socket_state, inode = (
                int(fields[3], 16),
                int(fields[4], 16),
                int(fields[5], 16),
                int(fields[6]),
            )
        except ValueError:
            continue
        state = LISTEN if flags & _UNIX_LISTENING else _UNIX_STATES.get(socket_state, 0)
        if not states & (1 << state):
            continue
        rows.append(
            (
                _UNIX_NETIDS.get(kind, "u_dgr"),
                STATE_NAMES[state],
                0,
                0,
                "unix",
                fields[7] if len(fields) > 7 else "",
                inode,
                "",
                0,
                inode,
                None,
                None,
                owners.get(inode, ()) if owners else (),
                None,
                None,
            )
        )
    return rows
