"""The TCP state machine of RFC 9293 (section 3.3.2's diagram), as one transition table.

Rules:

* Each end of a connection has one state.  A packet is two events: the
  sender *sends* it and the receiver *receives* it, and each end's state
  moves by looking (state, event) up in :data:`TRANSITIONS`.
* A received segment can be more than one event; they are applied in the
  order the RFC processes a segment: RST, then SYN, then the ACK (of our SYN
  or of our FIN), then FIN.  So FIN-WAIT-1 receiving "FIN+ACK of my FIN"
  goes through FIN-WAIT-2 to TIME-WAIT, as the RFC's diagram draws it.
* An event with no entry leaves the state alone: data and plain ACKs in
  ESTABLISHED, a retransmitted SYN in SYN-SENT.  The calls an application
  makes (connect, listen, close, shutdown) are not on the wire; the packets
  they cause are (connect sends SYN, close or SHUT_WR sends FIN), and that
  is what the table keys on.  LISTEN itself is never seen: the trace starts
  an end in LISTEN when the kernel shows a listener, or when that end's
  first packet is a SYN it receives and answers with SYN+ACK.
* The 2MSL wait in TIME-WAIT ends with a timer, not a packet; a trace ends
  first, so TIME-WAIT is the last state it shows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sockkit.trace._packet import ACK, FIN, RST, SYN, Packet

__all__ = ["TRANSITIONS", "EndModel", "Event", "TcpState", "step"]


class TcpState(enum.Enum):
    """The eleven states, with RFC 9293's names."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN-SENT"
    SYN_RECEIVED = "SYN-RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN-WAIT-1"
    FIN_WAIT_2 = "FIN-WAIT-2"
    CLOSE_WAIT = "CLOSE-WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST-ACK"
    TIME_WAIT = "TIME-WAIT"


class Event(enum.Enum):
    """What a packet is to one end: something it sent or received."""

    SEND_SYN = "send SYN"
    SEND_SYN_ACK = "send SYN+ACK"
    SEND_FIN = "send FIN"
    SEND_RST = "send RST"
    RECV_SYN = "receive SYN"
    RECV_SYN_ACK = "receive SYN+ACK"
    RECV_ACK_OF_SYN = "receive ACK of SYN"
    RECV_ACK_OF_FIN = "receive ACK of FIN"
    RECV_FIN = "receive FIN"
    RECV_RST = "receive RST"


S = TcpState
E = Event

#: (state, event) -> next state.  Anything not here leaves the state unchanged.
TRANSITIONS: dict[tuple[TcpState, Event], TcpState] = {
    # opening
    (S.CLOSED, E.SEND_SYN): S.SYN_SENT,  # active open: connect()
    (S.LISTEN, E.RECV_SYN): S.SYN_RECEIVED,  # passive open meets a SYN
    (S.LISTEN, E.SEND_SYN): S.SYN_SENT,
    (S.SYN_SENT, E.RECV_SYN_ACK): S.ESTABLISHED,  # ...and it answers with ACK
    (S.SYN_SENT, E.RECV_SYN): S.SYN_RECEIVED,  # simultaneous open
    (S.SYN_RECEIVED, E.RECV_ACK_OF_SYN): S.ESTABLISHED,
    # closing: the side that sends FIN first takes the left path of the diagram
    (S.ESTABLISHED, E.SEND_FIN): S.FIN_WAIT_1,  # close() or shutdown(SHUT_WR)
    (S.SYN_RECEIVED, E.SEND_FIN): S.FIN_WAIT_1,
    (S.FIN_WAIT_1, E.RECV_ACK_OF_FIN): S.FIN_WAIT_2,
    (S.FIN_WAIT_1, E.RECV_FIN): S.CLOSING,  # the FINs crossed: simultaneous close
    (S.FIN_WAIT_2, E.RECV_FIN): S.TIME_WAIT,
    (S.CLOSING, E.RECV_ACK_OF_FIN): S.TIME_WAIT,
    (S.TIME_WAIT, E.RECV_FIN): S.TIME_WAIT,  # a retransmitted FIN restarts the 2MSL wait
    # ...and the side that receives it first, the right path
    (S.ESTABLISHED, E.RECV_FIN): S.CLOSE_WAIT,
    (S.CLOSE_WAIT, E.SEND_FIN): S.LAST_ACK,
    (S.LAST_ACK, E.RECV_ACK_OF_FIN): S.CLOSED,
    # resets
    (S.SYN_SENT, E.RECV_RST): S.CLOSED,  # connection refused
    (S.SYN_RECEIVED, E.RECV_RST): S.LISTEN,  # a passive open goes back to listening
    (S.ESTABLISHED, E.RECV_RST): S.CLOSED,
    (S.FIN_WAIT_1, E.RECV_RST): S.CLOSED,
    (S.FIN_WAIT_2, E.RECV_RST): S.CLOSED,
    (S.CLOSE_WAIT, E.RECV_RST): S.CLOSED,
    (S.CLOSING, E.RECV_RST): S.CLOSED,
    (S.LAST_ACK, E.RECV_RST): S.CLOSED,
    (S.SYN_SENT, E.SEND_RST): S.CLOSED,
    (S.SYN_RECEIVED, E.SEND_RST): S.CLOSED,
    (S.ESTABLISHED, E.SEND_RST): S.CLOSED,  # abort: close() with SO_LINGER 0
    (S.FIN_WAIT_1, E.SEND_RST): S.CLOSED,
    (S.FIN_WAIT_2, E.SEND_RST): S.CLOSED,
    (S.CLOSE_WAIT, E.SEND_RST): S.CLOSED,
    (S.CLOSING, E.SEND_RST): S.CLOSED,
    (S.LAST_ACK, E.SEND_RST): S.CLOSED,
}


def step(state: TcpState, event: Event) -> TcpState:
    """The state after ``event`` in ``state`` (unchanged when the table has no entry)."""
    return TRANSITIONS.get((state, event), state)


def _after(seq: int, mark: int) -> bool:
    """Whether sequence number ``seq`` is at or beyond ``mark`` (modulo 2**32)."""
    return (seq - mark) % (1 << 32) < (1 << 31)


@dataclass
class EndModel:
    """One end's state as the table computes it from the packets it sends and receives.

    It remembers the sequence numbers its own SYN and FIN use, so that it can
    tell an ACK that covers them from any other.  Call :meth:`sent` or
    :meth:`received` for each packet of the flow, in order.
    """

    state: TcpState
    syn_seq: int | None = None
    fin_seq: int | None = None
    events: list[Event] = field(default_factory=list)

    def sent(self, packet: Packet) -> TcpState:
        flags = packet.flags
        if flags & RST:
            self._apply(E.SEND_RST)
        elif flags & SYN:
            self.syn_seq = packet.seq
            self._apply(E.SEND_SYN_ACK if flags & ACK else E.SEND_SYN)
        if flags & FIN:
            self.fin_seq = (packet.seq + packet.length) % (1 << 32)
            self._apply(E.SEND_FIN)
        return self.state

    def received(self, packet: Packet) -> TcpState:
        flags = packet.flags
        if flags & RST:
            self._apply(E.RECV_RST)
            return self.state
        if flags & SYN:
            self._apply(E.RECV_SYN_ACK if flags & ACK else E.RECV_SYN)
            return self.state
        if flags & ACK:
            if self.syn_seq is not None and self.state is S.SYN_RECEIVED:
                if _after(packet.ack, self.syn_seq + 1):
                    self._apply(E.RECV_ACK_OF_SYN)
            if self.fin_seq is not None and _after(packet.ack, self.fin_seq + 1):
                self._apply(E.RECV_ACK_OF_FIN)
        if flags & FIN:
            self._apply(E.RECV_FIN)
        return self.state

    def _apply(self, event: Event) -> None:
        self.events.append(event)
        self.state = step(self.state, event)
