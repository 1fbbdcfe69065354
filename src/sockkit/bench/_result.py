"""``BenchResult``: what one ``sockkit bench`` run measured, as a value and as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SATURATED_PCT", "BenchResult", "Interval"]

#: A generator process at or above this share of one core measured itself, not the server.
SATURATED_PCT = 90.0


@dataclass(frozen=True, slots=True)
class Interval:
    """One ``--interval`` report: seconds ``start_s``-``end_s`` of the measured phase.

    ``requests`` verified in it, their rate, the echoed payload rate (10**6
    bytes/s, one direction), the interval's own p99 latency and its errors.
    """

    start_s: float
    end_s: float
    requests: int
    msgs_per_s: float
    mb_per_s: float
    p99_us: float | None
    errors: int


@dataclass(frozen=True, slots=True)
class BenchResult:
    """The outcome of one run.  JSON keys (:meth:`to_json`) are these field names.

    - ``target``, ``mode``, ``conns``, ``depth``, ``size``, ``processes``: what was run.
    - ``duration_s``: the measured phase (idle: the hold), excluding warm-up.
    - ``requests``: verified requests completed in the measured phase (connect
      mode: connections that completed connect + echo + close; idle: connections
      still open at the end).
    - ``msgs_per_s``: ``requests / duration_s``; ``mb_per_s``: verified echoed
      payload per second, one direction, in 10**6 bytes.
    - ``p50_us`` ... ``max_us``: latency percentiles in microseconds, from a
      log-linear histogram (within 0.4 %); ``None`` when nothing completed.
    - ``errors``: requests whose echo was wrong, short, reset or missing, plus
      unsolicited bytes -- over the whole run including warm-up.  Any error
      makes the command exit with status 1.
    - ``conn_failures``: connections refused, reset or closed early.
    - ``lost``: datagrams without a reply within the loss timeout (UDP only).
    - ``established``: connections open after the connect phase;
      ``connect_s``: how long that phase took.
    - ``client_cpu_pct``: the generator's CPU (all processes) during the
      measured phase, in % of one core; ``client_cpu_pct_max``: the busiest
      process; ``saturated``: that process was at or above ``SATURATED_PCT``,
      so the figures measure the client rather than the server.
    - ``first_error``: the first error's reason, or ``""``.
    - ``warnings``: sentences for a person (saturation, port exhaustion).
    - ``intervals``: the ``--interval`` reports, in order (empty without it).
    - ``interrupted``: the run was stopped early (Ctrl-C); everything above
      covers the part that was measured.
    """

    target: str
    mode: str
    conns: int
    depth: int
    size: int
    processes: int
    duration_s: float
    requests: int
    msgs_per_s: float
    mb_per_s: float
    p50_us: float | None
    p90_us: float | None
    p99_us: float | None
    p999_us: float | None
    max_us: float | None
    errors: int
    conn_failures: int
    lost: int
    established: int
    connect_s: float
    client_cpu_pct: float
    client_cpu_pct_max: float
    saturated: bool
    first_error: str
    warnings: tuple[str, ...]
    intervals: tuple[Interval, ...] = ()
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when every echoed byte verified and no connection failed."""
        return self.errors == 0 and self.conn_failures == 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        data["intervals"] = [asdict(i) for i in self.intervals]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchResult:
        fields = dict(data)
        fields["warnings"] = tuple(fields.get("warnings", ()))
        fields["intervals"] = tuple(Interval(**i) for i in fields.get("intervals", ()))
        return cls(**fields)
