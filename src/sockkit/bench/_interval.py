"""Interval reports, iperf3-style: what each ``--interval`` seconds of the measured phase did.

The generator's hot loop never looks at intervals; its once-per-loop tick asks
an :class:`IntervalClock` whether an interval has ended.  When one has, the
clock takes the difference of the running tally since the last mark (requests,
bytes, errors and the latency histogram's counts) as an :class:`IntervalTally`,
which travels between processes as JSON and merges like a :class:`Tally`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sockkit.bench._histogram import Histogram
from sockkit.bench._tally import Tally

__all__ = ["IntervalCallback", "IntervalClock", "IntervalTally"]

_NS = 1_000_000_000
#: A last, partial interval shorter than this share of ``every`` is not reported.
_MIN_LAST_SHARE = 0.1


@dataclass(slots=True)
class IntervalTally:
    """One interval of one generator process: seconds from the start of the measured phase."""

    index: int
    start_s: float
    end_s: float
    requests: int
    payload_bytes: int
    errors: int
    hist: Histogram

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start_s": self.start_s,
            "end_s": self.end_s,
            "requests": self.requests,
            "payload_bytes": self.payload_bytes,
            "errors": self.errors,
            "hist": self.hist.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntervalTally:
        values = dict(data)
        return cls(**values | {"hist": Histogram.from_dict(values["hist"])})

    def merge(self, other: IntervalTally) -> None:
        """Add another process's same interval: counts add, the span is the widest."""
        self.start_s = min(self.start_s, other.start_s)
        self.end_s = max(self.end_s, other.end_s)
        self.requests += other.requests
        self.payload_bytes += other.payload_bytes
        self.errors += other.errors
        self.hist.merge(other.hist)


IntervalCallback = Callable[[IntervalTally], None]


class IntervalClock:
    """Cuts the measured phase into intervals of ``every`` seconds and reports each one.

    Call :meth:`start` when measuring starts (after the tally was reset),
    :meth:`tick` as often as convenient, and :meth:`finish` when measuring ends.
    """

    def __init__(self, every: float, on_interval: IntervalCallback) -> None:
        self.every_ns = int(every * _NS)
        self.on_interval = on_interval
        self.index = 0
        self.t0 = self.t_mark = self.t_next = 0
        self.requests = self.payload_bytes = self.errors = 0
        self.counts: list[int] = []

    def start(self, now: int, tally: Tally) -> None:
        self.t0 = now
        self.t_next = now + self.every_ns
        self._mark(now, tally)

    def tick(self, now: int, tally: Tally) -> None:
        if now >= self.t_next:
            self._emit(now, tally)
            while self.t_next <= now:
                self.t_next += self.every_ns

    def finish(self, now: int, tally: Tally) -> None:
        if now - self.t_mark >= self.every_ns * _MIN_LAST_SHARE:
            self._emit(now, tally)

    def _mark(self, now: int, tally: Tally) -> None:
        self.t_mark = now
        self.requests, self.payload_bytes = tally.requests, tally.payload_bytes
        self.errors = tally.errors
        self.counts = list(tally.hist.counts)

    def _emit(self, now: int, tally: Tally) -> None:
        hist = Histogram()
        hist.counts = [a - b for a, b in zip(tally.hist.counts, self.counts, strict=True)]
        self.on_interval(
            IntervalTally(
                index=self.index,
                start_s=round((self.t_mark - self.t0) / _NS, 3),
                end_s=round((now - self.t0) / _NS, 3),
                requests=tally.requests - self.requests,
                payload_bytes=tally.payload_bytes - self.payload_bytes,
                errors=tally.errors - self.errors,
                hist=hist,
            )
        )
        self.index += 1
        self._mark(now, tally)
