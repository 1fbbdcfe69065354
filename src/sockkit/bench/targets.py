"""Goals to judge a comparison by, and the two ratios they are made of.

A :class:`Target` is a value against a limit.  :func:`worst_cpu_ratio` and
:func:`ratio_of` give ``(value, None)`` or ``(None, why not)``: a side that
was not measured, or whose figures cannot be trusted (errors, too few
connections, memory that did not grow), is never judged -- :func:`judged` turns
either into a :class:`Target` whose ``met`` is then ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sockkit.bench._measure import Measurement

__all__ = ["Results", "Target", "judged", "ratio_of", "worst_cpu_ratio"]

#: ``results[server][workload key]``: the medians a comparison holds
Results = dict[str, dict[str, Measurement]]


@dataclass(frozen=True, slots=True)
class Target:
    """One recorded goal: ``value`` compared with ``limit`` (``<=`` or ``>=``)."""

    text: str
    value: float | None
    limit: float
    at_most: bool
    #: why it could not be judged (a side not measured, or not trustworthy)
    reason: str | None = None

    @property
    def met(self) -> bool | None:
        if self.value is None or self.reason is not None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit


def _pair(
    results: Results, mine: str, theirs: str, key: str
) -> tuple[Measurement | None, Measurement | None, str | None]:
    """Both sides of a comparison on workload ``key``, and why it cannot be judged, if so."""
    a, b = results.get(mine, {}).get(key), results.get(theirs, {}).get(key)
    for name, m in ((mine, a), (theirs, b)):
        if m is None:
            return a, b, f"{name} ({key}) not measured"
        if m.problem is not None:
            return a, b, f"{name} ({key}): {m.problem}"
    return a, b, None


def worst_cpu_ratio(results: Results, server: str, base: str) -> tuple[float | None, str | None]:
    """``(worst server-CPU-per-op ratio over (a)-(d), None)``, or ``(None, why not)``.

    Not judged when either side of any workload is missing or untrusted.
    """
    ratios = []
    for key in "abcd":
        mine, theirs, reason = _pair(results, server, base, key)
        if reason is not None:
            return None, reason
        assert mine is not None and theirs is not None
        if mine.server_cpu_us_per_op is None or not theirs.server_cpu_us_per_op:
            return None, f"server CPU not sampled for ({key})"
        ratios.append(mine.server_cpu_us_per_op / theirs.server_cpu_us_per_op)
    return max(ratios), None


def ratio_of(
    results: Results, mine: str, theirs: str, key: str, field_name: str
) -> tuple[float | None, str | None]:
    """``(mine / theirs for one field of workload key, None)``, or ``(None, why not)``."""
    a, b, reason = _pair(results, mine, theirs, key)
    if reason is not None:
        return None, reason
    assert a is not None and b is not None
    base = getattr(b, field_name)
    if not base:
        return None, f"{theirs} ({key}) measured no {field_name}"
    return getattr(a, field_name) / base, None


def judged(
    text: str, found: tuple[float | None, str | None], limit: float, at_most: bool
) -> Target:
    """A :class:`Target` from a ``(value, reason)`` pair as the two functions above give."""
    value, reason = found
    return Target(text, value, limit, at_most, reason)
