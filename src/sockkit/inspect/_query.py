"""Which sockets to show: ss's state names, state groups and table-selection rules.

Rules, as iproute2 ``ss`` applies them (and ``sockkit ss`` copies):

* A socket state is a number 0-11, the kernel's TCP state numbering, which
  UDP and Unix sockets reuse (a bound or unconnected one is CLOSE, shown as
  ``UNCONN``; a connected one is ESTABLISHED).  A state filter is a bit mask
  of those numbers, the same mask the kernel's sock_diag dump takes.
* With no state option, ss shows *connected* sockets only: everything but
  LISTEN, UNCONN, TIME-WAIT and SYN-RECV.  ``-a`` shows every state, ``-l``
  shows LISTEN and UNCONN.  ``state NAME`` (our ``--state``) replaces those,
  and several are or-ed together.
* ``-t``/``-u`` choose tables, ``-x``/``-4``/``-6`` choose address families;
  each brings along what the other needs (``-4`` alone means TCP and UDP over
  IPv4, ``-t`` alone means TCP over both IPv4 and IPv6).  With none of them,
  everything is shown.
* The Netid column appears when more than one table is shown, the State
  column when more than one state is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from sockkit._errors import UsageError

if TYPE_CHECKING:
    from sockkit.inspect._filter_tree import Node

__all__ = [
    "ALL_STATES",
    "CONNECTED_STATES",
    "DEFAULT_STATES",
    "INET_NETIDS",
    "NETIDS",
    "STATE_NAMES",
    "UNIX_NETIDS",
    "SocketQuery",
    "parse_state",
    "select_query",
]

# kernel TCP state numbers (include/net/tcp_states.h)
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT = 1, 2, 3, 4, 5, 6
CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING, NEW_SYN_RECV = 7, 8, 9, 10, 11, 12

#: state number -> the name ss prints in its State column
STATE_NAMES: tuple[str, ...] = (
    "UNKNOWN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
    "SYN-RECV",  # a request socket; the kernel reports it as SYN-RECV anyway
    "BOUND-INACTIVE",  # bound, never listened (newer kernels, only on request)
)


def _bits(*states: int) -> int:
    mask = 0
    for state in states:
        mask |= 1 << state
    return mask


#: every state ss knows (its SS_ALL: bits 0-11)
ALL_STATES = (1 << 12) - 1
#: ss's default: neither listening, unconnected, TIME-WAIT nor SYN-RECV (its SS_CONN)
DEFAULT_STATES = ALL_STATES & ~_bits(LISTEN, CLOSE, TIME_WAIT, SYN_RECV)
#: the ``connected`` group: everything but LISTEN and UNCONN
CONNECTED_STATES = ALL_STATES & ~_bits(CLOSE, LISTEN)

#: ``--state`` words -> state mask; the single names are ss's, and so are the groups
_STATE_WORDS: dict[str, int] = {
    "all": ALL_STATES,
    "connected": CONNECTED_STATES,
    "synchronized": CONNECTED_STATES & ~_bits(SYN_SENT),
    "bucket": _bits(SYN_RECV, TIME_WAIT),
    "big": ALL_STATES & ~_bits(SYN_RECV, TIME_WAIT),
    "established": _bits(ESTABLISHED),
    "syn-sent": _bits(SYN_SENT),
    "syn-recv": _bits(SYN_RECV),
    "syn-rcv": _bits(SYN_RECV),
    "fin-wait-1": _bits(FIN_WAIT1),
    "fin-wait-2": _bits(FIN_WAIT2),
    "time-wait": _bits(TIME_WAIT),
    "closed": _bits(CLOSE),
    "close": _bits(CLOSE),
    "unconnected": _bits(CLOSE),
    "close-wait": _bits(CLOSE_WAIT),
    "last-ack": _bits(LAST_ACK),
    "listening": _bits(LISTEN),
    "closing": _bits(CLOSING),
}

INET_NETIDS: frozenset[str] = frozenset({"tcp", "udp"})
UNIX_NETIDS: frozenset[str] = frozenset({"u_str", "u_dgr", "u_seq"})
NETIDS: frozenset[str] = INET_NETIDS | UNIX_NETIDS
FAMILIES: frozenset[str] = frozenset({"inet", "inet6", "unix"})


def parse_state(word: str) -> int:
    """The state mask for one ``--state`` word (any case); :class:`UsageError` if unknown."""
    mask = _STATE_WORDS.get(word.lower())
    if mask is None:
        known = ", ".join(_STATE_WORDS)
        raise UsageError(f"unknown socket state {word!r}; expected one of: {known}")
    return mask


class SocketQuery(NamedTuple):
    """What :func:`~sockkit.inspect.list_sockets` returns; an immutable value.

    (A named tuple rather than a frozen dataclass: ``sockkit ss`` must start
    fast, and this keeps the ``dataclasses`` module out of a plain listing.
    ``query._replace(port=7007)`` makes a changed copy.)

    ``netids`` (``tcp``, ``udp``, ``u_str``, ``u_dgr``, ``u_seq``) and
    ``families`` (``inet``, ``inet6``, ``unix``) must both admit a socket.
    ``states`` is a bit mask of state numbers (``1 << 10`` is LISTEN).
    ``sport``/``dport`` keep TCP/UDP sockets whose local/peer port is that
    number, ``port`` those with it on either side; any port filter leaves Unix
    sockets out, as they have no ports.  ``processes`` fills
    :attr:`SocketRecord.processes`, ``tcp_info`` fills :attr:`SocketRecord.tcp_info`.
    """

    netids: frozenset[str] = NETIDS
    families: frozenset[str] = FAMILIES
    states: int = DEFAULT_STATES
    sport: int | None = None
    dport: int | None = None
    port: int | None = None
    processes: bool = False
    tcp_info: bool = False
    expression: Node | None = None
    details: bool = False
    memory: bool = False

    @property
    def has_port_filter(self) -> bool:
        return self.sport is not None or self.dport is not None or self.port is not None

    def wants(self, netid: str) -> bool:
        """Whether any socket of table ``netid`` can pass this query."""
        if netid not in self.netids:
            return False
        if netid in UNIX_NETIDS:
            return "unix" in self.families and not self.has_port_filter
        return bool(self.families & {"inet", "inet6"})

    def port_matches(self, local_port: int, peer_port: int) -> bool:
        """Whether a TCP/UDP socket with these ports passes the port filters."""
        if self.sport is not None and local_port != self.sport:
            return False
        if self.dport is not None and peer_port != self.dport:
            return False
        return self.port is None or self.port in (local_port, peer_port)


def select_query(
    *,
    tcp: bool = False,
    udp: bool = False,
    unix: bool = False,
    ipv4: bool = False,
    ipv6: bool = False,
    listening: bool = False,
    all_states: bool = False,
    states: tuple[str, ...] = (),
    sport: int | None = None,
    dport: int | None = None,
    port: int | None = None,
    processes: bool = False,
    tcp_info: bool = False,
    state_mask: int | None = None,
    expression: Node | None = None,
    details: bool = False,
    memory: bool = False,
) -> SocketQuery:
    """Turn ss-style flags (``-t -u -x -4 -6 -l -a``, ``state NAME``) into a :class:`SocketQuery`.

    Follows the rules in this module's docstring; raises :class:`UsageError`
    for an unknown state word.  ``state_mask`` (from a filter's ``state`` and
    ``exclude`` words) replaces every other state choice.
    """
    netids: set[str] = set()
    families: set[str] = set()
    default_states = 0
    if tcp:
        netids.add("tcp")
        default_states |= DEFAULT_STATES
    if udp:
        netids.add("udp")
        default_states |= _bits(ESTABLISHED)
    if unix:
        families.add("unix")
        default_states |= DEFAULT_STATES
    if ipv4:
        families.add("inet")
        default_states |= DEFAULT_STATES
    if ipv6:
        families.add("inet6")
        default_states |= DEFAULT_STATES
    if not netids and not families:
        netids, families = set(NETIDS), set(FAMILIES)
        default_states = DEFAULT_STATES
    else:
        if netids & INET_NETIDS and not families & {"inet", "inet6"}:
            families |= {"inet", "inet6"}
        if "unix" in families and not netids & UNIX_NETIDS:
            netids |= UNIX_NETIDS
        if families & {"inet", "inet6"} and not netids & INET_NETIDS:
            netids |= INET_NETIDS
    mask = 0
    for word in states:
        mask |= parse_state(word)
    if state_mask is not None:
        mask = state_mask
    elif not states:
        if all_states:
            mask = ALL_STATES
        elif listening:
            mask = _bits(LISTEN, CLOSE)
        else:
            mask = default_states
    return SocketQuery(
        netids=frozenset(netids),
        families=frozenset(families),
        states=mask,
        sport=sport,
        dport=dport,
        port=port,
        processes=processes,
        tcp_info=tcp_info,
        expression=expression,
        details=details,
        memory=memory,
    )
