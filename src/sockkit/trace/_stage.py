"""The stage a scenario plays on: a running capture, the kernel's view, and the recording.

A scenario makes its sockets, opens a :class:`Stage` on the port to watch,
names the connection's two ends, and after each step calls :meth:`Stage.look`:
that waits until the kernel shows the states the step should lead to (so a
slow, shared machine changes the timing but never the story), then until no
packet has arrived for a moment, and then reads both ends' states.  Those
reads become the "kernel" half of the states the trace shows.  Everything
recorded is plain data (:class:`Recording`), so a scenario played in a
private namespace, in another process, sends it back through a pipe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from sockkit._errors import SockkitError
from sockkit.trace._capture import Capture, CaptureStats, RawPacket
from sockkit.trace._events import Trace, build_trace
from sockkit.trace._kernel import Address, KernelSnapshot, KernelView
from sockkit.trace._packet import Packet, decode_frame
from sockkit.trace._states import TcpState

__all__ = ["Recording", "ScenarioError", "Stage", "decode_all"]

#: how long a step may take to reach its states: generous, for a busy machine
STEP_TIMEOUT = 10.0
#: no packet for this long means the step's packets are all in (delayed ACKs take 40 ms)
QUIET = 0.15


class ScenarioError(SockkitError):
    """A scenario could not be played as written (the machine did not do what it should)."""


@dataclass(frozen=True)
class Recording:
    """What a stage captured: raw packets, the kernel's reads, the ends, and notes for the reader."""

    title: str
    packets: tuple[RawPacket, ...]
    snapshots: tuple[KernelSnapshot, ...]
    ends: tuple[Address, Address] | None
    labels: tuple[str, str]
    stats: CaptureStats
    notes: tuple[str, ...]
    source: str = "lo"

    def trace(self) -> Trace:
        return build_trace(
            decode_all(self.packets),
            ends=self.ends,
            labels=self.labels,
            snapshots=self.snapshots,
            title=self.title,
            stats=self.stats,
            notes=self.notes,
            source=self.source,
        )


def decode_all(raw: Collection[RawPacket]) -> list[Packet]:
    """The packets among ``raw`` that decode (see :func:`decode_frame`)."""
    decoded = (decode_frame(packet.time, packet.frame) for packet in raw)
    return [packet for packet in decoded if packet is not None]


class Stage:
    """A capture of PORT plus the kernel's view; use ``with``, then :meth:`finish`."""

    def __init__(self, title: str, port: int) -> None:
        self.title = title
        self.capture = Capture(port)
        try:
            self.kernel: KernelView | None = KernelView()
        except SockkitError:
            self.kernel = None  # no sock_diag: the trace shows the table's states only
        self.packets: list[RawPacket] = []
        self.snapshots: list[KernelSnapshot] = []
        self.ends: tuple[Address, Address] | None = None
        self.labels = ("client", "server")
        self.notes: list[str] = []

    def connection(self, client: Address, server: Address) -> None:
        """Name the two ends whose states :meth:`look` reads."""
        self.ends = (client, server)

    def drain(self, timeout: float = 0.0) -> int:
        """Move the packets queued in the capture into the recording; return how many."""
        fresh = self.capture.read(timeout)
        self.packets += fresh
        return len(fresh)

    def settle(self, quiet: float = QUIET) -> None:
        """Wait until no packet has come for ``quiet`` seconds."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while self.drain(quiet) and time.monotonic() < deadline:
            pass

    def look(self, expect: Mapping[Address, Collection[TcpState]] | None = None) -> None:
        """Wait for the expected kernel states, then for quiet, then read both ends' states."""
        if self.ends is None:
            raise ScenarioError("look() needs connection() first")
        client, server = self.ends
        if expect and self.kernel is not None:
            deadline = time.monotonic() + STEP_TIMEOUT
            while True:
                now = self.kernel.states(client, server)
                if all(now[end] in wanted for end, wanted in expect.items()):
                    break
                if time.monotonic() > deadline:
                    seen = ", ".join(f"{a}:{p} {s.value}" for (a, p), s in now.items())
                    raise ScenarioError(
                        f"{self.title}: the kernel did not reach the next states ({seen})"
                    )
                self.drain(0.005)
        self.settle()
        if self.kernel is not None:
            self.snapshots.append(self.kernel.snapshot(client, server))

    def wait_for(self, done: Callable[[Trace], bool], what: str) -> None:
        """Keep capturing until ``done`` holds for the trace so far (at most STEP_TIMEOUT)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not done(self.trace()):
            if time.monotonic() > deadline:
                raise ScenarioError(f"{self.title}: no {what} within {STEP_TIMEOUT:g} s")
            self.drain(0.05)

    def trace(self) -> Trace:
        return build_trace(decode_all(self.packets), ends=self.ends, labels=self.labels)

    def finish(self) -> Recording:
        """Stop watching and hand back what was recorded."""
        self.drain()
        return Recording(
            self.title,
            tuple(self.packets),
            tuple(self.snapshots),
            self.ends,
            self.labels,
            self.capture.stats(),
            tuple(self.notes),
        )

    def close(self) -> None:
        self.capture.close()
        if self.kernel is not None:
            self.kernel.close()

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
