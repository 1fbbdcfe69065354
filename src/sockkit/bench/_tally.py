"""What one load-generator process counted, and how several are merged.

A :class:`Tally` is mutable while its process runs (the hot loop bumps its fields
directly), then travels to the parent as JSON (:meth:`Tally.to_dict`) and is
merged there.  Throughput counters cover the measured phase only; ``errors``,
``conn_failures`` and ``lost`` cover the whole run, because a server that breaks
during warm-up is broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from sockkit.bench._histogram import Histogram

__all__ = ["Tally"]


@dataclass(slots=True)
class Tally:
    """Counters of one generator process (see the module docstring for the phases)."""

    requests: int = 0
    payload_bytes: int = 0
    errors: int = 0
    conn_failures: int = 0
    lost: int = 0
    established: int = 0
    port_retries: int = 0
    measured_s: float = 0.0
    connect_s: float = 0.0
    cpu_s: float = 0.0
    cpu_pct_max: float = 0.0
    first_error: str = ""
    #: the run was stopped early (Ctrl-C): the figures cover what was measured
    interrupted: bool = False
    hist: Histogram = field(default_factory=Histogram)

    def note_error(self, reason: str, count: int = 1) -> None:
        """Count ``count`` failed requests; remember the first reason for the report."""
        self.errors += count
        if not self.first_error:
            self.first_error = reason

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "hist"
        }
        data["hist"] = self.hist.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tally:
        values = dict(data)
        hist = Histogram.from_dict(values.pop("hist"))
        return cls(**values, hist=hist)

    def merge(self, other: Tally) -> None:
        """Add ``other`` (another process's tally of the same run) into this one.

        Counts add; durations take the longest (processes run side by side); CPU adds.
        """
        for name in ("requests", "payload_bytes", "errors", "conn_failures", "lost"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.established += other.established
        self.port_retries += other.port_retries
        self.measured_s = max(self.measured_s, other.measured_s)
        self.connect_s = max(self.connect_s, other.connect_s)
        self.cpu_s += other.cpu_s
        self.cpu_pct_max = max(self.cpu_pct_max, other.cpu_pct_max)
        self.first_error = self.first_error or other.first_error
        self.interrupted = self.interrupted or other.interrupted
        self.hist.merge(other.hist)
