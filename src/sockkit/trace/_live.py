"""Following a port live: capture, and hand out the new events a batch at a time.

Packets are read as they come; once a burst is over (nothing more for a
moment) the kernel's states of the flow's two ends are read, so they stand
beside the last packet of the burst, and the new events are handed out.
The flow is the first one seen on the port (its SYN's, when the capture
saw one); packets of other connections are counted, not shown -- except
that once the traced connection is over (both ends CLOSED or in
TIME-WAIT), the next SYN to the port begins a new trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from sockkit._errors import SockkitError
from sockkit.trace._capture import Capture
from sockkit.trace._events import Trace, TraceEvent, build_trace, flow_ends
from sockkit.trace._kernel import Address, KernelSnapshot, KernelView
from sockkit.trace._packet import ACK, SYN, Packet
from sockkit.trace._stage import decode_all
from sockkit.trace._states import TcpState

__all__ = ["follow"]

_BURST_QUIET = 0.03  # seconds without a packet that end a burst


_OVER = frozenset({TcpState.CLOSED, TcpState.TIME_WAIT, TcpState.LISTEN})


def _next_connection(trace: Trace, packets: list[Packet]) -> int | None:
    """Where a new connection starts in ``packets``, if the traced one is over; else ``None``."""
    if not trace.events:
        return None
    last = trace.events[-1]
    if last.states is None or not all(end.state in _OVER for end in last.states):
        return None
    flow = set(trace.ends)
    for index, packet in enumerate(packets):
        if packet.time <= last.packet.time or packet.protocol != "tcp":
            continue
        opening = packet.flags & SYN and not packet.flags & ACK
        if opening and {(packet.src, packet.sport), (packet.dst, packet.dport)} != flow:
            return index
    return None


def follow(
    port: int,
    *,
    count: int | None = None,
    duration: float | None = None,
    interface: str = "lo",
    on_ready: Callable[[], None] | None = None,
) -> Iterator[tuple[Trace, list[TraceEvent]]]:
    """Yield (trace so far, its new events) after each burst on PORT.

    A new connection after the traced one is over comes as a trace with new
    ``ends`` (see the module docstring).
    Stops after ``count`` packets or ``duration`` seconds (never, without
    either: the caller stops on Ctrl-C).  ``on_ready`` is called once the
    capture is running, so a caller can say so before any packet comes.  Raises
    :class:`~sockkit.trace.CaptureUnavailable` without the privilege to capture.
    """
    deadline = None if duration is None else time.monotonic() + duration
    total = 0
    packets: list[Packet] = []
    snapshots: list[KernelSnapshot] = []
    ends: tuple[Address, Address] | None = None
    shown = 0
    with Capture(port, interface) as capture:
        kernel = KernelView()
        if on_ready is not None:
            on_ready()

        def look(ends: tuple[Address, Address]) -> None:
            try:
                snapshots.append(kernel.snapshot(*ends))
            except SockkitError:
                pass  # no sock_diag: the table's states alone

        def trace_of(flow: list[Packet]) -> Trace:
            return build_trace(
                flow, ends=ends, snapshots=snapshots, title=f"port {port}",
                stats=capture.stats(), source=interface,
            )  # fmt: skip

        try:
            while count is None or total < count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                batch = capture.read(0.25 if left is None else min(0.25, left))
                while batch and (count is None or total + len(batch) < count):
                    more = capture.read(_BURST_QUIET)
                    if not more:
                        break
                    batch += more
                batch = batch if count is None else batch[: count - total]
                total += len(batch)
                packets += decode_all(batch)
                if not batch or not packets:
                    continue
                ends = ends or flow_ends(packets)
                look(ends)
                trace = trace_of(packets)
                following = _next_connection(trace, packets)
                if following is not None:  # this one is over and another began
                    trace = trace_of(packets[:following])
                    yield trace, list(trace.events[shown:])
                    packets, snapshots, shown = packets[following:], [], 0
                    ends = flow_ends(packets)
                    look(ends)
                    trace = trace_of(packets)
                yield trace, list(trace.events[shown:])
                shown = len(trace.events)
        finally:
            kernel.close()
