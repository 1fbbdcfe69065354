"""From packets (and the kernel's states, where read) to a trace: one event per packet.

The values here are what every output -- ladder, JSON, SVG -- draws, and
what the library hands to Python users.  Numbers follow tcpdump's and
Wireshark's habits: sequence and acknowledgement numbers relative to each
end's ISN (the absolute ISN is kept for the SYNs), the window scaled by the
shift both SYNs agreed on (unknown, so ``None``, when the handshake was not
captured), the time in seconds since the first packet.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from sockkit.trace._capture import CaptureStats
from sockkit.trace._kernel import Address, KernelSnapshot
from sockkit.trace._packet import ACK, RST, SYN, Packet
from sockkit.trace._states import EndModel, TcpState

__all__ = ["EndState", "Trace", "TraceEvent", "build_trace", "flow_ends"]

_MOD = 1 << 32


@dataclass(frozen=True)
class EndState:
    """One end's state after a packet: the transition table's, and the kernel's when it was read."""

    state: TcpState
    kernel: TcpState | None = None

    @property
    def agrees(self) -> bool | None:
        """Whether the kernel showed the same state (``None`` when it was not read)."""
        return None if self.kernel is None else self.kernel is self.state


@dataclass(frozen=True)
class TraceEvent:
    """One packet of the flow, as a trace shows it.

    ``rightward`` is true for packets from the first end (the client) to the
    second.  ``seq``/``ack`` are relative (``ack`` is 0 without the ACK flag),
    ``isn`` is the absolute sequence number on SYNs and ``None`` elsewhere.
    ``states`` holds both ends' states after the packet (client, server);
    it is ``None`` for UDP and ICMP, which have no connection states.
    """

    index: int
    time: float
    packet: Packet
    rightward: bool
    seq: int
    ack: int
    isn: int | None
    window: int | None
    states: tuple[EndState, EndState] | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Trace:
    """A traced flow: its two ends, the events, and how complete the capture was."""

    title: str
    ends: tuple[Address, Address]
    labels: tuple[str, str]
    initial: tuple[EndState, EndState] | None
    events: tuple[TraceEvent, ...]
    stats: CaptureStats | None = None
    notes: tuple[str, ...] = ()
    left_out: int = 0
    source: str = ""


def flow_ends(packets: Sequence[Packet]) -> tuple[Address, Address]:
    for packet in packets:
        if packet.protocol == "tcp" and packet.flags & SYN and not packet.flags & ACK:
            return (packet.src, packet.sport), (packet.dst, packet.dport)
    first = packets[0]
    return (first.src, first.sport), (first.dst, first.dport)


def build_trace(
    packets: Sequence[Packet],
    *,
    ends: tuple[Address, Address] | None = None,
    labels: tuple[str, str] = ("client", "server"),
    snapshots: Sequence[KernelSnapshot] = (),
    title: str = "",
    stats: CaptureStats | None = None,
    notes: Sequence[str] = (),
    source: str = "",
) -> Trace:
    """The trace of one flow among ``packets`` (the first SYN's, else the first packet's).

    ``snapshots`` are the kernel's states read during the capture; each is
    shown beside the last packet captured before it was read (one read before
    any packet gives the starting states).  Packets of other flows are left
    out and counted in :attr:`Trace.left_out`.  ``source`` says where the
    packets come from (``lo``, a file name).
    """
    if not packets:
        return Trace(
            title, ends or (("", 0), ("", 0)), labels, None, (), stats, tuple(notes), 0, source
        )
    ends = ends or flow_ends(packets)
    flow = [p for p in packets if {(p.src, p.sport), (p.dst, p.dport)} == set(ends)]
    left_out = len(packets) - len(flow)
    notes = list(notes)
    if not flow:
        return Trace(title, ends, labels, None, (), stats, tuple(notes), left_out, source)
    start = flow[0].time
    by_packet = _attach(flow, snapshots)
    tcp = [p for p in flow if p.protocol == "tcp"]
    initial = _initial_states(tcp, ends, snapshots, notes) if tcp else None
    models = None if initial is None else (EndModel(initial[0].state), EndModel(initial[1].state))
    numbers = _Numbers(tcp, ends)
    dropped = _unanswered_syns(flow)
    release = _delivery(flow, dropped)
    inbox: dict[Address, list[int]] = {ends[0]: [], ends[1]: []}
    model_of = {} if models is None else {ends[0]: models[0], ends[1]: models[1]}

    def deliver(end: Address, until: int) -> None:
        queue = inbox[end]
        while queue and release[queue[0]] <= until:
            model_of[end].received(flow[queue.pop(0)])

    events = []
    for index, packet in enumerate(flow):
        rightward = (packet.src, packet.sport) == ends[0]
        sender, target = (ends[0], ends[1]) if rightward else (ends[1], ends[0])
        states = None
        if models is not None and packet.protocol == "tcp":
            deliver(sender, index)  # what the sender had received before it sent this
            model_of[sender].sent(packet)
            if index not in dropped:
                inbox[target].append(index)
            deliver(target, index)
            snapshot = by_packet.get(index)
            if snapshot is not None or index == len(flow) - 1:
                for end in ends:
                    deliver(end, len(flow))
            states = (
                EndState(models[0].state, snapshot.state_of(ends[0]) if snapshot else None),
                EndState(models[1].state, snapshot.state_of(ends[1]) if snapshot else None),
            )
        event_notes = numbers.notes(packet, rightward)
        if index in dropped:
            event_notes.append("no answer: the receiver dropped it")
        events.append(
            TraceEvent(
                index,
                packet.time - start,
                packet,
                rightward,
                *numbers.relative(packet, rightward),
                states,
                tuple(event_notes),
            )
        )
    return Trace(title, ends, labels, initial, tuple(events), stats, tuple(notes), left_out, source)


def _attach(
    flow: Sequence[Packet], snapshots: Sequence[KernelSnapshot]
) -> dict[int, KernelSnapshot]:
    times = [packet.time for packet in flow]  # capture order: kernel timestamps never go back
    attached: dict[int, KernelSnapshot] = {}
    for snapshot in sorted(snapshots, key=lambda s: s.time):
        last = bisect.bisect_right(times, snapshot.time) - 1
        if last >= 0:
            attached[last] = snapshot
    return attached


def _initial_states(
    tcp: Sequence[Packet],
    ends: tuple[Address, Address],
    snapshots: Sequence[KernelSnapshot],
    notes: list[str],
) -> tuple[EndState, EndState]:
    before = [s for s in snapshots if s.time < tcp[0].time]
    if before:
        first = before[-1]
        kernel = (first.state_of(ends[0]), first.state_of(ends[1]))
        if kernel[0] is not None and kernel[1] is not None:
            return EndState(kernel[0], kernel[0]), EndState(kernel[1], kernel[1])
    opening = tcp[0]
    if opening.flags & SYN and not opening.flags & ACK:
        server_first = next((p for p in tcp if (p.src, p.sport) == ends[1]), None)
        refused = server_first is not None and bool(server_first.flags & RST)
        server = TcpState.CLOSED if refused else TcpState.LISTEN
        return EndState(TcpState.CLOSED), EndState(server)
    notes.append("the capture began inside a connection: both ends start as ESTABLISHED")
    return EndState(TcpState.ESTABLISHED), EndState(TcpState.ESTABLISHED)


def _delivery(flow: Sequence[Packet], dropped: set[int]) -> dict[int, int]:
    """When each packet takes effect at its receiver: the index of the packet before which it does.

    The capture sees packets in the order they arrive, which is the order a
    receiver processes them -- except when two segments cross.  A segment
    that uses sequence space (SYN, FIN, data) has been processed by its
    receiver once the receiver acknowledges it.  If the receiver's next packet
    does *not* acknowledge it, that packet was sent before the segment was
    processed (the FINs of a simultaneous close), so the segment takes effect
    only just before the receiver's first packet that does.
    """
    release: dict[int, int] = {}
    for index, packet in enumerate(flow):
        release[index] = index
        if packet.protocol != "tcp" or not packet.segment_length or index in dropped:
            continue
        target = (packet.dst, packet.dport)
        end = (packet.seq + packet.segment_length) % _MOD
        first_reply = True
        for later in range(index + 1, len(flow)):
            reply = flow[later]
            if (reply.src, reply.sport) != target or reply.protocol != "tcp":
                continue
            if _covers(reply, end):
                if not first_reply:
                    release[index] = later
                break
            first_reply = False
    return release


def _covers(reply: Packet, end: int) -> bool:
    return bool(reply.flags & RST) or (bool(reply.flags & ACK) and _not_after(end, reply.ack))


def _unanswered_syns(flow: Sequence[Packet]) -> set[int]:
    """SYNs the receiver never answered: the same SYN came again before any reply."""
    dropped = set()
    for index, packet in enumerate(flow):
        if packet.protocol != "tcp" or not packet.flags & SYN:
            continue
        for later in flow[index + 1 :]:
            if (later.src, later.sport) != (packet.src, packet.sport):
                break
            if later.flags & SYN and later.seq == packet.seq:
                dropped.add(index)
                break
    return dropped


class _Numbers:
    """Per-direction bookkeeping: ISNs, window scale, highest sequence sent, last window."""

    def __init__(self, tcp: Sequence[Packet], ends: tuple[Address, Address]) -> None:
        self.isn: dict[Address, int] = {}
        scales: dict[Address, int | None] = {}
        for packet in tcp:
            src = (packet.src, packet.sport)
            if packet.flags & SYN and src not in scales:
                self.isn[src] = packet.seq
                scales[src] = packet.options.wscale
            self.isn.setdefault(src, packet.seq)
        for end in ends:
            if end not in self.isn:
                other = next((p.ack for p in tcp if (p.dst, p.dport) == end and p.flags & ACK), 0)
                self.isn[end] = other
        # scaling is on only when both SYNs offered it; without both SYNs it is unknown
        both = len(scales) == 2
        agreed = both and all(value is not None for value in scales.values())
        self.scale = {end: (scales[end] or 0) if agreed else 0 for end in scales} if both else {}
        self.ends = ends
        self.sent_end: dict[Address, int] = {}
        self.last_window: dict[Address, int] = {}

    def relative(self, packet: Packet, rightward: bool) -> tuple[int, int, int | None, int | None]:
        """(seq, ack, isn, scaled window) for ``packet``."""
        if packet.protocol != "tcp":
            return 0, 0, None, None
        src, dst = self.ends if rightward else self.ends[::-1]
        seq = (packet.seq - self.isn[src]) % _MOD
        ack = (packet.ack - self.isn[dst]) % _MOD if packet.flags & ACK else 0
        isn = packet.seq if packet.flags & SYN else None
        if packet.flags & SYN:
            window: int | None = packet.window
        else:
            shift = self.scale.get(src)
            window = None if shift is None else packet.window << shift
        return seq, ack, isn, window

    def notes(self, packet: Packet, rightward: bool) -> list[str]:
        """What a learner should notice about ``packet`` (and remember it for the next ones)."""
        if packet.protocol == "icmp" and packet.icmp is not None:
            return [
                f"ICMP {packet.icmp.description} (about a {packet.icmp.quoted_protocol} datagram)"
            ]
        if packet.protocol != "tcp":
            return []
        src, dst = self.ends if rightward else self.ends[::-1]
        notes = []
        end = (packet.seq + packet.segment_length) % _MOD
        highest = self.sent_end.get(src)
        peer_window = self.last_window.get(dst)
        if packet.flags & RST:
            notes.append("reset: the connection is aborted")
        elif (
            peer_window == 0
            and highest is not None
            and packet.length <= 1
            and packet.seq == (highest - 1) % _MOD
        ):
            notes.append("window probe: is there room yet?")
        elif highest is not None and packet.segment_length and _not_after(end, highest):
            notes.append("retransmission")
        if not packet.flags & RST:
            if packet.window == 0:
                notes.append("window 0: the receiver's buffer is full")
            elif self.last_window.get(src) == 0:
                notes.append("window opens again")
            self.last_window[src] = packet.window
        if highest is None or not _not_after(end, highest):
            self.sent_end[src] = end
        return notes


def _not_after(seq: int, mark: int) -> bool:
    return (mark - seq) % _MOD < (1 << 31)
