"""Where a scenario runs, and the scenarios as functions that return a :class:`Trace`.

With root (or CAP_NET_RAW) a scenario runs right here and is captured on the
machine's ``lo`` through the kernel filter.  Without it, it runs in a private
user + network namespace (see :mod:`._namespace`).  ``simultaneous-close``
always runs in a private network namespace, because it slows that
namespace's loopback down (see :mod:`._closing`).
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable

from sockkit._errors import UsageError
from sockkit.trace._capture import CaptureUnavailable
from sockkit.trace._events import Trace
from sockkit.trace._namespace import NamespaceUnavailable, run_in_private_network
from sockkit.trace._scenarios import RECORDERS, SCENARIOS
from sockkit.trace._stage import Recording

__all__ = [
    "backlog_full",
    "can_capture_here",
    "close",
    "half_close",
    "handshake",
    "play",
    "record",
    "refused",
    "reset",
    "simultaneous_close",
    "transfer",
    "udp",
    "zero_window",
]

#: scenarios that must have a loopback of their own
_PRIVATE = frozenset({"simultaneous-close"})


def can_capture_here() -> bool:
    """Whether this process may open a packet socket (root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return False
    return True


def record(name: str, *, private: bool | None = None) -> Recording:
    """Play scenario ``name`` and return what was captured.

    ``private`` forces (``True``) or forbids (``False``) a private network
    namespace; by default one is used only when needed.  Raises
    :class:`UsageError` for an unknown name and :class:`CaptureUnavailable`
    (one line saying what is missing) when nothing can capture.
    """
    recorder = RECORDERS.get(name)
    if recorder is None:
        raise UsageError(f"unknown scenario {name!r}; expected one of: {', '.join(SCENARIOS)}")
    if private is None:
        private = name in _PRIVATE or not can_capture_here()
    if not private:
        return recorder()
    try:
        recording = run_in_private_network(recorder)
    except NamespaceUnavailable as exc:
        raise CaptureUnavailable(str(exc)) from exc
    return dataclasses.replace(recording, source="lo of a private network namespace")


def play(name: str, *, private: bool | None = None) -> Trace:
    """Play scenario ``name`` (see :data:`SCENARIOS`) and return its trace."""
    return record(name, private=private).trace()


def _scenario(name: str) -> Callable[[], Trace]:
    def run() -> Trace:
        return play(name)

    run.__name__ = name.replace("-", "_")
    run.__doc__ = f"Play the {name!r} scenario and return its trace: {SCENARIOS[name]}."
    return run


handshake = _scenario("handshake")
transfer = _scenario("transfer")
close = _scenario("close")
half_close = _scenario("half-close")
simultaneous_close = _scenario("simultaneous-close")
refused = _scenario("refused")
reset = _scenario("reset")
backlog_full = _scenario("backlog-full")
zero_window = _scenario("zero-window")
udp = _scenario("udp")
