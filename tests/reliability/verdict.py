"""A case's result: the figure it measured and every target it missed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Verdict", "percentile"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): p99 of 20 samples is the largest."""
    if not values:
        return math.inf
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Verdict:
    """Filled in by a case: ``figures`` to report, ``misses`` for each target not met."""

    figures: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    #: Set when the case does not apply to this engine (and why).
    skipped: str | None = None
    #: The misses that are latencies or rates, which another tenant's burst can cause.
    timing_misses: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.figures.append(text)

    def check(self, ok: bool, text: str, timing: bool = False) -> bool:
        """Record ``text`` as a figure, and as a miss unless ``ok``.

        ``timing`` marks a latency or throughput target (see :attr:`only_timing`).
        """
        self.figures.append(text if ok else f"{text} (MISS)")
        if not ok:
            self.misses.append(text)
            if timing:
                self.timing_misses.append(text)
        return ok

    @property
    def only_timing(self) -> bool:
        """True when every miss is a latency or rate: worth one more run on a shared machine."""
        return bool(self.misses) and len(self.timing_misses) == len(self.misses)

    @property
    def passed(self) -> bool:
        return not self.misses

    def summary(self) -> str:
        return "; ".join(self.figures)
