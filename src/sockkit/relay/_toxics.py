"""Toxics: the faults a relay proxy applies, as values, in toxiproxy's JSON shape.

A toxic has a ``type``, a ``name`` (default ``TYPE_STREAM``), a ``stream``
(``upstream`` = client to target, ``downstream`` = target to client, the
default), a ``toxicity`` (the probability that a new connection is affected,
drawn once per connection) and type-specific ``attributes``, with
toxiproxy's units: milliseconds, KB/s (1 KB = 1000 bytes), bytes, and
microseconds for the slicer's delay.

sockkit adds ``when`` (all optional, all must hold): ``from_connection`` /
``until_connection`` (1-based numbers of the proxy's connections),
``after_bytes`` (bytes already passed in the toxic's direction),
``after_seconds`` (age of the connection) and ``pattern`` (text that must have
passed in the toxic's direction first).  So ``reset_peer`` with
``until_connection: 2`` fails the first two connections and lets the rest by.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATAGRAM_TYPES",
    "STREAM_TYPES",
    "Toxic",
    "ToxicError",
    "parse_toxic",
    "write_pieces",
]

# type -> attribute -> default; every attribute is a number >= 0.
STREAM_TYPES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "bandwidth": {"rate": 0},
    "slicer": {"average_size": 0, "size_variation": 0, "delay": 0},
    "reset_peer": {"timeout": 0},
    "limit_data": {"bytes": 0},
    "timeout": {"timeout": 0},
    "slow_close": {"delay": 0},
}
# Packet faults for datagram proxies.  ``loss`` is random (``probability``) or,
# with ``p`` > 0, a Gilbert-Elliott chain: good->bad with probability ``p``,
# bad->good with ``r`` (mean burst 1/r), losing ``loss_bad`` in the bad state
# and ``loss_good`` in the good one.
DATAGRAM_TYPES: dict[str, dict[str, float]] = {
    "latency": {"latency": 0, "jitter": 0},
    "loss": {"probability": 0, "p": 0, "r": 1, "loss_bad": 1, "loss_good": 0},
    "duplicate": {"probability": 0},
    "reorder": {"probability": 0},
    "corrupt": {"probability": 0},
}
_PROBABILITIES = {"probability", "p", "r", "loss_bad", "loss_good"}
_WHEN_KEYS = {"from_connection", "until_connection", "after_bytes", "after_seconds", "pattern"}
STREAMS = ("upstream", "downstream")


class ToxicError(ValueError):
    """A toxic description that cannot be used; the message says why (HTTP 400)."""


@dataclass(slots=True)
class Toxic:
    """One toxic of a proxy.  ``serial`` changes on every update, so connections
    draw their toxicity again for the new version."""

    type: str
    name: str
    stream: str = "downstream"
    toxicity: float = 1.0
    attributes: dict[str, float] = field(default_factory=dict)
    when: dict[str, Any] = field(default_factory=dict)
    serial: int = 0

    def attr(self, key: str) -> float:
        return self.attributes[key]

    @property
    def upstream(self) -> bool:
        return self.stream == "upstream"

    def applies_to_connection(self, number: int) -> bool:
        first = self.when.get("from_connection")
        last = self.when.get("until_connection")
        return (first is None or number >= first) and (last is None or number <= last)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "stream": self.stream,
            "toxicity": self.toxicity,
            "attributes": {k: _plain(v) for k, v in self.attributes.items()},
        }
        if self.when:
            out["when"] = dict(self.when)
        return out


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToxicError(f"{what} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ToxicError(f"{what} must be a finite number >= 0, not {value!r}")
    return float(value)


def parse_toxic(
    body: object, *, datagram: bool, old: Toxic | None = None, serial: int = 0
) -> Toxic:
    """A :class:`Toxic` from a decoded JSON ``body`` (create, or update of ``old``).

    Raises :class:`ToxicError` naming the first thing that is wrong.
    """
    if not isinstance(body, dict):
        raise ToxicError("a toxic is a JSON object")
    kinds = DATAGRAM_TYPES if datagram else STREAM_TYPES
    if old is None:
        kind = body.get("type")
        if kind not in kinds:
            where = "datagram" if datagram else "stream"
            raise ToxicError(
                f"invalid toxic type {kind!r} for a {where} proxy; choose from {', '.join(kinds)}"
            )
        stream = body.get("stream", "downstream") or "downstream"
        if stream not in STREAMS:
            raise ToxicError("stream was invalid, can be either upstream or downstream")
        name = body.get("name") or f"{kind}_{stream}"
        if not isinstance(name, str):
            raise ToxicError("name must be a string")
        attributes = dict(kinds[kind])
        toxicity: object = body.get("toxicity", 1.0)
        when: dict[str, Any] = {}
    else:
        kind, stream, name = old.type, old.stream, old.name
        attributes = dict(old.attributes)
        toxicity = body.get("toxicity", old.toxicity)
        when = dict(old.when)
    given = body.get("attributes", {}) or {}
    if not isinstance(given, dict):
        raise ToxicError("attributes must be a JSON object")
    for key, value in given.items():
        if key not in attributes:
            raise ToxicError(
                f"unknown attribute {key!r} for {kind}; it has {', '.join(attributes)}"
            )
        attributes[key] = _number(value, f"{kind}.{key}")
        if key in _PROBABILITIES and attributes[key] > 1:
            raise ToxicError(f"{kind}.{key} is a probability between 0 and 1")
    level = _number(toxicity, "toxicity")
    if level > 1:
        raise ToxicError("toxicity is a probability between 0 and 1")
    when.update(_parse_when(body.get("when", {})))
    return Toxic(kind, name, stream, level, attributes, when, serial)


def _parse_when(given: object) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ToxicError("when must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in given.items():
        if key not in _WHEN_KEYS:
            raise ToxicError(f"unknown condition {key!r}; choose from {', '.join(_WHEN_KEYS)}")
        if key == "pattern":
            if not isinstance(value, str) or not value:
                raise ToxicError("when.pattern must be a non-empty string")
            out[key] = value
        elif key == "after_seconds":
            out[key] = _number(value, f"when.{key}")
        else:
            number = _number(value, f"when.{key}")
            if not number.is_integer():
                raise ToxicError(f"when.{key} must be a whole number")
            out[key] = int(number)
    return out


def write_pieces(
    data: bytes, slicer: Toxic | None, rate: float, rng: random.Random
) -> list[tuple[bytes, float]]:
    """The writes ``data`` becomes: (piece, pause before it)."""
    if slicer is not None and slicer.attr("average_size") > 0:
        average, spread = int(slicer.attr("average_size")), int(slicer.attr("size_variation"))
        pause = slicer.attr("delay") / 1e6
        out, at = [], 0
        while at < len(data):
            size = max(1, average + rng.randint(-spread, spread) if spread else average)
            out.append((data[at : at + size], pause if at else 0.0))
            at += size
        return out
    if rate:
        step = max(1, int(rate / 200))  # 5 ms of the rate per write keeps pacing smooth
        return [(data[i : i + step], 0.0) for i in range(0, len(data), step)]
    return [(data, 0.0)]
