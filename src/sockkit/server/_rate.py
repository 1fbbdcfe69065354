"""Per-source token buckets: how ``--dgram-rate`` keeps a datagram server from amplifying floods.

A UDP request's source address is not proven (it can be forged), so a server
that answers every datagram can be made to send its replies at a victim --
the amplification CERT advisory CA-1996-01 warned about for chargen and echo.
Each source address gets a bucket of ``rate`` tokens, refilled at ``rate``
per second; a reply spends one, and a datagram that finds the bucket empty
is dropped unanswered.  So one source gets at most ``rate`` replies a second
plus one burst of ``rate``.

The table of buckets is bounded: past :data:`MAX_SOURCES` addresses the
fullest ones (idle sources, which have refilled and lost nothing by being
forgotten) are dropped, so forged sources cannot grow it without limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["MAX_SOURCES", "SourceRate"]

#: Most source addresses remembered at once.
MAX_SOURCES = 65536


class SourceRate:
    """``allow(source)`` is True at most ``rate`` times a second per source, plus a burst of ``rate``.

    Not thread-safe: one datagram thread owns one.  ``clock`` is for tests.
    """

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.clock = clock
        #: source -> (tokens, when they were counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str) -> bool:
        now = self.clock()
        tokens, then = self._buckets.get(source, (self.rate, now))
        tokens = min(self.rate, tokens + (now - then) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= MAX_SOURCES and source not in self._buckets:
            self._forget_full(now)
        self._buckets[source] = (tokens, now)
        return allowed

    def _forget_full(self, now: float) -> None:
        """Drop the sources that would be full by now (and, if none are, the oldest half)."""
        full = [
            s for s, (t, then) in self._buckets.items() if t + (now - then) * self.rate >= self.rate
        ]
        if not full:
            full = list(self._buckets)[: len(self._buckets) // 2]
        for source in full:
            del self._buckets[source]
