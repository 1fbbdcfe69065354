"""The classic small services: echo (RFC 862), discard (RFC 863), daytime (RFC 867), time (RFC 868).

Each comes as a stream :class:`~sockkit.services.Service` and a
:class:`~sockkit.services.DatagramService`.  They keep no per-connection state
beyond what the base class already has, so an idle connection costs one small
object.  daytime and time take a ``clock`` (seconds since the Unix epoch, like
:func:`time.time`) so they can be checked at any instant, 2036 included.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sockkit.services._base import HALF_CLOSE, DatagramService, Service, borrows_input

__all__ = [
    "DaytimeDatagram",
    "DaytimeService",
    "DiscardDatagram",
    "DiscardService",
    "EchoDatagram",
    "EchoService",
    "TimeDatagram",
    "TimeService",
    "daytime_line",
    "rfc868_time",
]

Clock = Callable[[], float]

#: Seconds from 1900-01-01 (RFC 868's origin) to 1970-01-01 (the Unix epoch).
RFC868_EPOCH_OFFSET = 2_208_988_800

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def daytime_line(now: float) -> bytes:
    """The daytime reply for ``now`` (Unix seconds): one ASCII line in UTC, ending in CRLF.

    RFC 867 leaves the syntax free; this follows its own example,
    ``Weekday, Month Day, Year HH:MM:SS-Zone``, e.g.
    ``Saturday, November 21, 2026 16:11:44-UTC``.  Names are spelt here rather
    than with ``strftime`` so the reply never depends on the process locale.
    """
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {_MONTHS[t.tm_mon - 1]} {t.tm_mday}, {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}-UTC\r\n"
    ).encode("ascii")


def rfc868_time(now: float) -> bytes:
    """The time reply for ``now`` (Unix seconds): 4 bytes, big-endian seconds since 1900.

    The field is an unsigned 32-bit number, so it runs out on 2036-02-07
    06:28:16 UTC.  We send the count modulo 2**32, as NTP does with its eras:
    a reader that knows roughly what year it is can recover the full value,
    while raising or clamping would give every reader a wrong or no answer.
    """
    return ((int(now) + RFC868_EPOCH_OFFSET) % 2**32).to_bytes(4, "big")


class EchoService(Service):
    """RFC 862: send back every byte received; close after the peer's EOF once all is sent."""

    @borrows_input
    def received(self, data: bytes) -> bytes:
        # The hot path of every benchmark: hand the same object back, no copy.
        return data


class DiscardService(Service):
    """RFC 863: read and drop everything; close after the peer's EOF."""

    @borrows_input
    def received(self, data: bytes) -> bytes:
        return b""


class DaytimeService(Service):
    """RFC 867: on connect send one date line (see :func:`daytime_line`), then close.

    Anything the peer sends is thrown away, as the RFC says.  The close is a
    half-close followed by the full close once the peer has finished: closing
    a socket with the peer's bytes still unread makes the kernel send a reset,
    which can destroy the line before the peer reads it (``echo | sockkit
    connect`` lost it most of the time).  A peer that never closes is the
    engine's idle timeout's business.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock

    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return daytime_line(self._clock())

    def received(self, data: bytes) -> bytes:
        return b""


class TimeService(Service):
    """RFC 868: on connect send 4 bytes of seconds since 1900 (:func:`rfc868_time`), then close.

    Input is thrown away; the close is a half-close first, for the reason
    given at :class:`DaytimeService`.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock

    def connected(self, peer: str) -> bytes:
        self.state = HALF_CLOSE
        return rfc868_time(self._clock())

    def received(self, data: bytes) -> bytes:
        return b""


class EchoDatagram(DatagramService):
    """RFC 862 over datagrams: send each datagram back to its sender.

    A datagram longer than :attr:`max_reply` (possible on ``unixgram``) is
    dropped rather than cut: a truncated echo would be a wrong answer.
    """

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return data if len(data) <= self.max_reply else None


class DiscardDatagram(DatagramService):
    """RFC 863 over datagrams: drop every datagram, answer nothing."""

    max_reply = 0

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return None


class DaytimeDatagram(DatagramService):
    """RFC 867 over datagrams: answer any datagram with one date line."""

    #: Room for the longest :func:`daytime_line` (45 bytes: "Wednesday, September 30, ...").
    max_reply = 64

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return daytime_line(self._clock())


class TimeDatagram(DatagramService):
    """RFC 868 over datagrams: answer any datagram with the 4-byte time."""

    max_reply = 4

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock

    def datagram(self, data: bytes, peer: str) -> bytes | None:
        return rfc868_time(self._clock())
