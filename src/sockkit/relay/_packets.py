"""Packet faults for datagram proxies: what one datagram becomes on its way.

:class:`PacketFaults` holds the state of one direction of one proxy (the
Gilbert-Elliott chain's state, a datagram held back for reordering) and
turns each datagram into a list of ``(delay, datagram)`` sends: ``[]`` when
lost, two entries when duplicated, a held one released after the next when
reordered.  No I/O here; the relay does the sending.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from sockkit.relay._toxics import Toxic

__all__ = ["PacketFaults"]


class PacketFaults:
    """One direction's packet faults."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.bad = False  # Gilbert-Elliott state
        self.held: bytes | None = None  # a datagram waiting to be overtaken
        self.lost = 0
        self.passed = 0

    def apply(self, data: bytes, toxics: Sequence[Toxic]) -> list[tuple[float, bytes]]:
        """The sends ``data`` becomes through ``toxics`` (in order)."""
        rng = self.rng
        delay = 0.0
        copies = 1
        for toxic in toxics:
            kind = toxic.type
            if kind == "loss" and self._lost(toxic):
                self.lost += 1
                return []
            if kind == "corrupt" and data and rng.random() < toxic.attr("probability"):
                at = rng.randrange(len(data))
                data = data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]
            elif kind == "duplicate" and rng.random() < toxic.attr("probability"):
                copies = 2
            elif kind == "latency":
                jitter = toxic.attr("jitter")
                delay += max(0.0, toxic.attr("latency") + rng.uniform(-jitter, jitter)) / 1000
        self.passed += 1
        sends = [(delay, data)] * copies
        reorder = next((t for t in toxics if t.type == "reorder"), None)
        if self.held is not None:
            sends.append((delay, self.held))  # the held one goes after the one that overtook it
            self.held = None
        elif reorder is not None and rng.random() < reorder.attr("probability"):
            self.held = data
            return sends[1:]
        return sends

    def _lost(self, toxic: Toxic) -> bool:
        rng = self.rng
        p = toxic.attr("p")
        if not p:
            return rng.random() < toxic.attr("probability")
        # Move the chain first, then lose with the new state's loss rate.
        if self.bad:
            self.bad = rng.random() >= toxic.attr("r")
        else:
            self.bad = rng.random() < p
        rate = toxic.attr("loss_bad") if self.bad else toxic.attr("loss_good")
        return rng.random() < rate
