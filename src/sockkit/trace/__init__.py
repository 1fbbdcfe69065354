"""Tracing a TCP (or UDP) flow on loopback, packet by packet, with both ends' states.

* :func:`capture` / :class:`Capture` -- a packet socket on ``lo`` with a
  kernel filter for one port, reporting drops (:mod:`._capture`, :mod:`._bpf`);
* :func:`decode_frame`, :class:`Packet` -- the headers (:mod:`._packet`);
* :class:`TcpState`, :data:`TRANSITIONS` -- RFC 9293's state machine as one
  table (:mod:`._states`);
* :func:`build_trace`, :class:`Trace`, :class:`TraceEvent`, :class:`EndState`
  -- packets to events (:mod:`._events`); the kernel's states come from
  :mod:`sockkit.inspect` (:mod:`._kernel`);
* the scenarios as functions -- :func:`handshake`, :func:`transfer`, ...,
  :func:`play` by name, :data:`SCENARIOS` (:mod:`._scenarios`, :mod:`._play`);
* following a live port as it goes: :func:`follow` (:mod:`._live`);
* output: :func:`ladder_lines` (or piece by piece: :func:`header_lines`,
  :func:`event_lines`, :func:`footer_lines`), :func:`render_svg`,
  :func:`read_pcap`, :func:`write_pcap`.

Imports are lazy: ``import sockkit.trace`` costs nothing until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sockkit.trace._capture import Capture, CaptureStats, CaptureUnavailable, RawPacket, capture
    from sockkit.trace._events import EndState, Trace, TraceEvent, build_trace
    from sockkit.trace._ladder import event_lines, footer_lines, header_lines, ladder_lines
    from sockkit.trace._live import follow
    from sockkit.trace._packet import Packet, TcpOptions, decode_frame
    from sockkit.trace._pcap import read_pcap, write_pcap
    from sockkit.trace._play import (
        backlog_full,
        close,
        half_close,
        handshake,
        play,
        record,
        refused,
        reset,
        simultaneous_close,
        transfer,
        udp,
        zero_window,
    )
    from sockkit.trace._records import event_record, summary_record
    from sockkit.trace._scenarios import SCENARIOS
    from sockkit.trace._states import TRANSITIONS, Event, TcpState
    from sockkit.trace._svg import render_svg

_EXPORTS = {
    "Capture": "sockkit.trace._capture",
    "CaptureStats": "sockkit.trace._capture",
    "CaptureUnavailable": "sockkit.trace._capture",
    "RawPacket": "sockkit.trace._capture",
    "capture": "sockkit.trace._capture",
    "EndState": "sockkit.trace._events",
    "Trace": "sockkit.trace._events",
    "TraceEvent": "sockkit.trace._events",
    "build_trace": "sockkit.trace._events",
    "event_lines": "sockkit.trace._ladder",
    "footer_lines": "sockkit.trace._ladder",
    "header_lines": "sockkit.trace._ladder",
    "ladder_lines": "sockkit.trace._ladder",
    "follow": "sockkit.trace._live",
    "Packet": "sockkit.trace._packet",
    "TcpOptions": "sockkit.trace._packet",
    "decode_frame": "sockkit.trace._packet",
    "read_pcap": "sockkit.trace._pcap",
    "write_pcap": "sockkit.trace._pcap",
    "backlog_full": "sockkit.trace._play",
    "close": "sockkit.trace._play",
    "half_close": "sockkit.trace._play",
    "handshake": "sockkit.trace._play",
    "play": "sockkit.trace._play",
    "record": "sockkit.trace._play",
    "refused": "sockkit.trace._play",
    "reset": "sockkit.trace._play",
    "simultaneous_close": "sockkit.trace._play",
    "transfer": "sockkit.trace._play",
    "udp": "sockkit.trace._play",
    "zero_window": "sockkit.trace._play",
    "event_record": "sockkit.trace._records",
    "summary_record": "sockkit.trace._records",
    "SCENARIOS": "sockkit.trace._scenarios",
    "TRANSITIONS": "sockkit.trace._states",
    "Event": "sockkit.trace._states",
    "TcpState": "sockkit.trace._states",
    "render_svg": "sockkit.trace._svg",
}

__all__ = [
    "SCENARIOS",
    "TRANSITIONS",
    "Capture",
    "CaptureStats",
    "CaptureUnavailable",
    "EndState",
    "Event",
    "Packet",
    "RawPacket",
    "TcpOptions",
    "TcpState",
    "Trace",
    "TraceEvent",
    "backlog_full",
    "build_trace",
    "capture",
    "close",
    "decode_frame",
    "event_lines",
    "event_record",
    "follow",
    "footer_lines",
    "half_close",
    "handshake",
    "header_lines",
    "ladder_lines",
    "play",
    "read_pcap",
    "record",
    "refused",
    "render_svg",
    "reset",
    "simultaneous_close",
    "summary_record",
    "transfer",
    "udp",
    "write_pcap",
    "zero_window",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sockkit.trace' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
