"""The byte pattern every request is cut from, so every echoed byte can be checked.

A connection's outgoing byte stream is ``PATTERN[seed:]`` read cyclically: byte
``i`` of the stream is ``PATTERN[(seed + i) % PERIOD]``.  Requests are consecutive
slices of that stream, so a reply that comes back from the wrong request, out of
order, shifted, truncated or with one flipped bit differs from what the stream
position predicts.  ``PERIOD`` is a prime near 1 MiB, so no request size lines up
with it and two requests on one connection never carry the same bytes.

``DOUBLE`` holds the pattern twice, so any slice of up to ``PERIOD`` bytes starting
anywhere is one contiguous ``DOUBLE[off:off + n]`` -- no wrap-around in the hot loop.
"""

from __future__ import annotations

import random

__all__ = ["DOUBLE", "PERIOD", "conn_seed", "expected"]

PERIOD = 1_048_573
_PATTERN = random.Random(0x5C0C).randbytes(PERIOD)
DOUBLE = _PATTERN + _PATTERN


def conn_seed(index: int, salt: int = 0) -> int:
    """A start offset for connection ``index`` (``salt``: a transaction number or process)."""
    return (index * 2_654_435_761 + salt * 40_503) % PERIOD


def expected(seed: int, position: int, n: int) -> bytes:
    """The ``n <= PERIOD`` bytes the stream from ``seed`` carries at ``position``."""
    off = (seed + position) % PERIOD
    return DOUBLE[off : off + n]
