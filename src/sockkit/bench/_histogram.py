"""A log-linear (HDR-style) latency histogram over non-negative integers (nanoseconds).

Layout: values below ``2 * SUB`` (256) each have their own bucket, so small values
are exact.  Above that, every power-of-two range ``[2**k, 2**(k+1))`` is split into
``SUB`` (128) equal buckets, so a bucket is never wider than 1/128 of the values it
holds: a percentile read from it is within 0.8 % of the exact one (we report the
bucket's midpoint, clamped to the recorded min/max, so the error is at most half
that).  The bucket of ``v`` is one ``bit_length`` and one shift, cheap enough to
compute inline in the load generator's hot loop (:func:`bucket_index` is the
reference the inline copy must match).

Histograms merge by adding counts, which is how ``--processes N`` combines its
children; :meth:`Histogram.to_dict` / :meth:`Histogram.from_dict` carry one across
a pipe as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

__all__ = ["SUB_BITS", "Histogram", "bucket_index", "bucket_range"]

SUB_BITS = 7
SUB = 1 << SUB_BITS
# 2**47 ns is about 39 hours: far beyond any bounded run, so no value overflows.
_MAX_SHIFT = 40
_NBUCKETS = (_MAX_SHIFT + 2) * SUB


def bucket_index(value: int) -> int:
    """The bucket holding ``value`` (``value >= 0``)."""
    shift = value.bit_length() - SUB_BITS - 1
    if shift <= 0:
        return value
    return shift * SUB + (value >> shift)


def bucket_range(index: int) -> tuple[int, int]:
    """``(low, high)``: the inclusive range of values that land in bucket ``index``."""
    if index < 2 * SUB:
        return index, index
    shift = index // SUB - 1
    top = index - shift * SUB
    low = top << shift
    return low, low + (1 << shift) - 1


class Histogram:
    """Counts of recorded values; percentiles within the bucket precision.

    ``counts`` is a plain list the load generator may bump directly (with the same
    index as :func:`bucket_index`), after which it must call :meth:`note_extremes`
    or accept that ``min``/``max`` are known only to the bucket.
    """

    __slots__ = ("counts", "max", "min")

    def __init__(self) -> None:
        self.counts: list[int] = [0] * _NBUCKETS
        self.min: int | None = None
        self.max: int | None = None

    def record(self, value: int) -> None:
        """Add one value (clamped to 0 and to the largest bucket)."""
        value = min(max(value, 0), (1 << (_MAX_SHIFT + SUB_BITS + 1)) - 1)
        self.counts[bucket_index(value)] += 1
        self.note_extremes(value, value)

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def note_extremes(self, low: int, high: int) -> None:
        """Widen the exact min/max to include ``low`` and ``high``."""
        if self.min is None or low < self.min:
            self.min = low
        if self.max is None or high > self.max:
            self.max = high

    @property
    def count(self) -> int:
        return sum(self.counts)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this one."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        if other.min is not None and other.max is not None:
            self.note_extremes(other.min, other.max)

    def percentile(self, q: float) -> int | None:
        """The nearest-rank ``q``-quantile (0 < q <= 1), or ``None`` when empty.

        The exact answer is the ``ceil(q * n)``-th smallest value; this returns the
        midpoint of the bucket holding it, clamped to the recorded min/max.
        """
        if not 0 < q <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {q}")
        n = self.count
        if n == 0:
            return None
        rank = max(1, math.ceil(q * n - 1e-9))
        seen = 0
        for index, c in enumerate(self.counts):
            if c:
                seen += c
                if seen >= rank:
                    low, high = bucket_range(index)
                    value = (low + high + 1) // 2
                    if self.max is not None:
                        value = min(value, self.max)
                    if self.min is not None:
                        value = max(value, self.min)
                    return value
        raise AssertionError("counts changed during percentile")  # pragma: no cover

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: sparse counts plus min/max."""
        sparse = {str(i): c for i, c in enumerate(self.counts) if c}
        return {"counts": sparse, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        hist = cls()
        for key, c in data["counts"].items():
            hist.counts[int(key)] = int(c)
        hist.min, hist.max = data.get("min"), data.get("max")
        return hist
