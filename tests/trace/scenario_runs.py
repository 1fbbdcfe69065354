"""What the trace tests share: one played trace per scenario, and whether this process may capture."""

from __future__ import annotations

import os

import pytest

from sockkit.trace import Trace, play

CAN_CAPTURE = os.geteuid() == 0

needs_capture = pytest.mark.skipif(
    not CAN_CAPTURE, reason="capturing on the machine's lo needs root (CAP_NET_RAW)"
)

_played: dict[str, Trace] = {}


def played(name: str) -> Trace:
    """The trace of scenario ``name``, played once per test session."""
    if name not in _played:
        _played[name] = play(name)
    return _played[name]
