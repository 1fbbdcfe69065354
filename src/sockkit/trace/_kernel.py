"""What the kernel says each end's state is, read through :mod:`sockkit.inspect` (sock_diag).

An end is the socket whose local address is that end's and whose peer is
the other end.  Several sockets can match while a connection closes: the
socket an application still holds (CLOSE once the kernel has moved the
connection to a TIME-WAIT socket) and the TIME-WAIT socket itself; the one
not in CLOSE wins.  A server end with no connection socket yet is its
listener (LISTEN) -- until it has had one: after that, no socket means the
connection is over, and the end is CLOSED though the listener lives on.  No
socket at all is CLOSED.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sockkit.inspect import ALL_STATES, SocketQuery, SocketRecord, SocketTable
from sockkit.trace._states import TcpState

__all__ = ["KERNEL_NAMES", "Address", "KernelSnapshot", "KernelView"]

Address = tuple[str, int]

#: ss's state names -> RFC 9293's
KERNEL_NAMES: dict[str, TcpState] = {
    "ESTAB": TcpState.ESTABLISHED,
    "SYN-SENT": TcpState.SYN_SENT,
    "SYN-RECV": TcpState.SYN_RECEIVED,
    "FIN-WAIT-1": TcpState.FIN_WAIT_1,
    "FIN-WAIT-2": TcpState.FIN_WAIT_2,
    "TIME-WAIT": TcpState.TIME_WAIT,
    "UNCONN": TcpState.CLOSED,
    "CLOSE-WAIT": TcpState.CLOSE_WAIT,
    "LAST-ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
}


@dataclass(frozen=True)
class KernelSnapshot:
    """Both ends' kernel states at ``time`` (seconds since the epoch, the capture's clock)."""

    time: float
    states: tuple[tuple[Address, TcpState], ...]

    def state_of(self, end: Address) -> TcpState | None:
        for address, state in self.states:
            if address == end:
                return state
        return None


class KernelView:
    """Reads the states of a connection's two ends; reuse it, then :meth:`close`."""

    def __init__(self) -> None:
        self._table = SocketTable("netlink")
        self._connected: set[Address] = set()

    def states(self, client: Address, server: Address) -> dict[Address, TcpState]:
        """The kernel's state for each end, by the rules in this module's docstring."""
        query = SocketQuery(
            netids=frozenset({"tcp"}),
            families=frozenset({"inet", "inet6"}),
            states=ALL_STATES,
            port=server[1],
        )
        records = self._table.read(query)
        states = {
            client: _end_state(records, client, server, listener=False),
            server: _end_state(records, server, client, listener=server not in self._connected),
        }
        if states[server] not in (TcpState.LISTEN, TcpState.CLOSED):
            self._connected.add(server)
        return states

    def snapshot(self, client: Address, server: Address) -> KernelSnapshot:
        taken = time.time()
        states = self.states(client, server)
        return KernelSnapshot(taken, tuple(states.items()))

    def close(self) -> None:
        self._table.close()


def _end_state(
    records: list[SocketRecord], local: Address, peer: Address, *, listener: bool
) -> TcpState:
    found: list[TcpState] = []
    listening = False
    for record in records:
        if record.local_port != local[1]:
            continue
        address = _norm(record.local_address)
        if record.state == "LISTEN":
            listening = listening or address in (local[0], "0.0.0.0", "::")
        elif address == local[0] and (_norm(record.peer_address), record.peer_port) == peer:
            found.append(KERNEL_NAMES.get(record.state, TcpState.CLOSED))
    live = [state for state in found if state is not TcpState.CLOSED]
    if live:
        return live[0]
    if found:
        return TcpState.CLOSED
    return TcpState.LISTEN if listener and listening else TcpState.CLOSED


def _norm(address: str) -> str:
    # a dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d
    return address[7:] if address.startswith("::ffff:") else address
