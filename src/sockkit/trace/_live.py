"""Following a port live: capture, and hand out the new events a batch at a time.

Packets are read as they come; once a burst is over (nothing more for a
moment) the kernel's states of the flow's two ends are read, so they stand
beside the last packet of the burst, and the new events are handed out.
The flow is the first one seen on the port (its SYN's, when the capture
saw one); packets of other connections are counted, not shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from sockkit._errors import SockkitError
from sockkit.trace._capture import Capture, RawPacket
from sockkit.trace._events import Trace, TraceEvent, build_trace, flow_ends
from sockkit.trace._kernel import Address, KernelSnapshot, KernelView
from sockkit.trace._stage import decode_all

__all__ = ["follow"]

_BURST_QUIET = 0.03  # seconds without a packet that end a burst


def follow(
    port: int,
    *,
    count: int | None = None,
    duration: float | None = None,
    interface: str = "lo",
    on_ready: Callable[[], None] | None = None,
) -> Iterator[tuple[Trace, list[TraceEvent]]]:
    """Yield (trace so far, its new events) after each burst on PORT.

    Stops after ``count`` packets or ``duration`` seconds (never, without
    either: the caller stops on Ctrl-C).  ``on_ready`` is called once the
    capture is running, so a caller can say so before any packet comes.  Raises
    :class:`~sockkit.trace.CaptureUnavailable` without the privilege to capture.
    """
    deadline = None if duration is None else time.monotonic() + duration
    raw: list[RawPacket] = []
    snapshots: list[KernelSnapshot] = []
    ends: tuple[Address, Address] | None = None
    shown = 0
    with Capture(port, interface) as capture:
        kernel = KernelView()
        if on_ready is not None:
            on_ready()
        try:
            while count is None or len(raw) < count:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                fresh = capture.read(0.25 if left is None else min(0.25, left))
                if not fresh:
                    continue
                raw += fresh
                while count is None or len(raw) < count:
                    more = capture.read(_BURST_QUIET)
                    if not more:
                        break
                    raw += more
                del raw[count if count is not None else len(raw) :]
                packets = decode_all(raw)
                if not packets:
                    continue
                ends = ends or flow_ends(packets)
                try:
                    snapshots.append(kernel.snapshot(*ends))
                except SockkitError:
                    pass  # no sock_diag: the table's states alone
                trace = build_trace(
                    packets, ends=ends, snapshots=snapshots, title=f"port {port}",
                    stats=capture.stats(), source=interface,
                )  # fmt: skip
                yield trace, list(trace.events[shown:])
                shown = len(trace.events)
        finally:
            kernel.close()
