"""sockkit's load generator and engine comparison.

:func:`run_bench` loads an echo server on loopback or a Unix socket from an
epoll loop, verifies every echoed byte and returns a :class:`BenchResult`;
:class:`Histogram` is the log-linear latency histogram it uses.  The comparison
of engines and peer servers lives in :mod:`sockkit.bench.compare`.
"""

from __future__ import annotations

from sockkit.bench._histogram import Histogram
from sockkit.bench._loadgen import MODES, Mode
from sockkit.bench._result import BenchResult, Interval
from sockkit.bench._runner import run_bench

__all__ = ["MODES", "BenchResult", "Histogram", "Interval", "Mode", "run_bench"]
