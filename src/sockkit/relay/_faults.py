"""Faults a relay can inject, as one value, and the pacing they imply."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from sockkit._errors import UsageError

__all__ = ["Faults", "parse_rate", "parse_size"]

_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def parse_size(text: str, what: str = "size") -> int:
    """``65536``, ``64k``, ``1M``, ``1Mi`` -> bytes; :class:`UsageError` if not a size."""
    body = text.strip().lower().removesuffix("/s").removesuffix("b")
    digits = body.rstrip("kmgi")
    unit = body[len(digits) :]
    try:
        value = float(digits)
    except ValueError:
        raise UsageError(
            f"bad {what} {text!r}: expected a number of bytes like 65536, 64k or 1M"
        ) from None
    # float() also reads nan and inf, which no byte count is: refused here
    # rather than left for int() to fail on.
    if unit not in _UNITS or not math.isfinite(value) or value < 0:
        raise UsageError(f"bad {what} {text!r}: expected a number of bytes like 65536, 64k or 1M")
    size = value * _UNITS[unit]
    if not math.isfinite(size):
        raise UsageError(f"bad {what} {text!r}: too large")
    return int(size)


def parse_rate(text: str) -> float:
    """A drop probability: ``0.1`` or ``10%``; :class:`UsageError` otherwise (nan too)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise UsageError(f"bad rate {text!r}: expected a probability like 0.1 or 10%") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"bad rate {text!r}: expected a probability between 0 and 1")
    return value


@dataclass(frozen=True, slots=True)
class Faults:
    """What a relay does to the bytes it forwards; all zero means a faithful relay.

    ``latency``/``jitter`` are seconds added to every chunk (order is kept: a chunk
    never overtakes an earlier one); ``bandwidth`` caps bytes/second per
    direction; ``slice`` splits writes into pieces of at most that many bytes;
    ``reset_after`` resets both sides once that many bytes have passed in total;
    ``drop`` is the probability a datagram is lost.
    """

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int = 0
    slice: int = 0
    reset_after: int = 0
    drop: float = 0.0

    def toxics(self, *, datagram: bool) -> list[dict[str, Any]]:
        """The same faults as toxiproxy toxic bodies, one per fault and direction."""
        out: list[dict[str, Any]] = []

        def both(kind: str, **attributes: float) -> None:
            for stream in ("upstream", "downstream"):
                out.append({"type": kind, "stream": stream, "attributes": attributes})

        if self.latency or self.jitter:
            both("latency", latency=self.latency * 1000, jitter=self.jitter * 1000)
        if self.drop:
            both("loss", probability=self.drop)
        if datagram:
            return out
        if self.bandwidth:
            both("bandwidth", rate=self.bandwidth / 1000)
        if self.slice:
            both("slicer", average_size=self.slice)
        if self.reset_after:
            for stream in ("upstream", "downstream"):
                out.append(
                    {
                        "type": "reset_peer",
                        "stream": stream,
                        "when": {"after_bytes": self.reset_after},
                    }
                )
        return out

    def delay(self, rng: random.Random) -> float:
        """How long to hold the next chunk."""
        if not self.jitter:
            return self.latency
        return max(0.0, self.latency + rng.uniform(-self.jitter, self.jitter))

    def pieces(self, data: bytes) -> list[bytes]:
        """``data`` cut into the writes the peer will see."""
        if not self.slice or len(data) <= self.slice:
            return [data]
        return [data[i : i + self.slice] for i in range(0, len(data), self.slice)]
