"""The ladder: a trace as text, one packet a line, the two ends as columns.

::

        time  client 127.0.0.1:40312                       server 127.0.0.1:7007
              CLOSED*                                      LISTEN*
       0.000  SYN-SENT      --- SYN seq=0 win=65495 ----->  SYN-RECEIVED
                            ISN 2259944819; mss 65495, sackOK, ts, wscale 7

Each end's state after the packet is the transition table's; a ``*`` says
the kernel showed the same state at that moment, and a note names the
kernel's state when it differs.  Times are milliseconds since the first
packet.  Colour (flags and states) only when asked for.
"""

from __future__ import annotations

import re

from sockkit.trace._events import EndState, Trace, TraceEvent
from sockkit.trace._packet import ACK, FIN, RST, SYN

__all__ = [
    "arrow_label",
    "event_lines",
    "footer_lines",
    "header_lines",
    "ladder_lines",
    "payload_text",
]

_TIME, _STATE, _ARROW = 10, 14, 50
_PAYLOAD_SHOWN = 24

_ESCAPES = re.compile("\x1b\\[[0-9;]*m")
_RESET = "\x1b[0m"
_FLAG_COLOURS = ((RST, "\x1b[31m"), (SYN, "\x1b[32m"), (FIN, "\x1b[33m"))
_STATE_COLOUR, _DIM, _BOLD = "\x1b[36m", "\x1b[2m", "\x1b[1m"


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color and code else text


def arrow_label(event: TraceEvent) -> str:
    """``SYN seq=0 win=65495``, ``PSH+ACK seq=1 ack=1 len=11 win=65536``, ``UDP len=6``."""
    packet = event.packet
    if packet.protocol == "udp":
        return f"UDP len={packet.length}"
    if packet.protocol == "icmp":
        return f"ICMP {packet.icmp.description if packet.icmp else 'error'}"
    parts = [packet.flag_text, f"seq={event.seq}"]
    if packet.flags & ACK:
        parts.append(f"ack={event.ack}")
    if packet.length:
        parts.append(f"len={packet.length}")
    if not packet.flags & RST:
        parts.append(f"win={event.window}" if event.window is not None else f"win={packet.window}?")
    return " ".join(parts)


def payload_text(payload: bytes, length: int, *, quoted: bool = True) -> str:
    """The first bytes of a payload, printable ASCII as is and the rest escaped."""
    shown = payload[:_PAYLOAD_SHOWN]
    text = "".join(
        chr(b)
        if 32 <= b < 127 and b != 0x22
        else {10: "\\n", 13: "\\r", 9: "\\t"}.get(b, f"\\x{b:02x}")
        for b in shown
    )
    more = "..." if length > len(shown) else ""
    return f'"{text}"{more}' if quoted else text + more


def _arrow(label: str, rightward: bool) -> str:
    body = f" {label} "
    dashes = max(3, _ARROW - len(body) - 2)
    left = dashes // 2 if rightward else dashes - dashes // 2
    if rightward:
        return "-" * left + body + "-" * (dashes - left) + "> "
    return "<" + "-" * left + body + "-" * (dashes - left) + " "


def _state(end: EndState | None, color: bool, changed: bool = True) -> str:
    if end is None:
        return ""
    text = end.state.value + ("*" if end.agrees else "")
    return _paint(text, _STATE_COLOUR if changed else _DIM, color)


def _pad(text: str, width: int) -> str:
    visible = len(_ESCAPES.sub("", text))
    return text + " " * max(1, width - visible)


def header_lines(trace: Trace, color: bool = False) -> list[str]:
    """The column heads (each end's label and address) and the states before the first packet."""
    (a_host, a_port), (b_host, b_port) = trace.ends
    left = f"{trace.labels[0]} {a_host}:{a_port}"
    right = f"{trace.labels[1]} {b_host}:{b_port}"
    head = f"{'time ms':>{_TIME}}  " + left.ljust(_STATE + _ARROW) + right
    lines = [_paint(head, _BOLD, color)]
    if trace.initial is not None:
        start = " " * (_TIME + 2) + _pad(_state(trace.initial[0], color), _STATE + _ARROW)
        lines.append(start + _state(trace.initial[1], color))
    return lines


def event_lines(
    event: TraceEvent, previous: TraceEvent | None = None, color: bool = False
) -> list[str]:
    """The line for one packet, then its details (options, payload, notes) indented under it."""
    packet = event.packet
    label = arrow_label(event)
    code = next((c for bit, c in _FLAG_COLOURS if packet.flags & bit), "")
    arrow = _arrow(label, event.rightward)
    if color and code:
        arrow = arrow.replace(label, _paint(label, code, color))
    states = event.states
    before = previous.states if previous is not None else None
    left = right = ""
    if states is not None:
        left = _state(states[0], color, before is None or before[0].state is not states[0].state)
        right = _state(states[1], color, before is None or before[1].state is not states[1].state)
    line = f"{event.time * 1000:>{_TIME}.3f}  " + _pad(left, _STATE) + arrow + right
    indent = " " * (_TIME + 2 + _STATE)
    details = []
    if event.isn is not None:
        options = packet.options.describe(with_timestamps=False)
        if packet.options.timestamps is not None:
            options = ", ".join(filter(None, (options, "ts")))
        details.append(f"ISN {event.isn}" + (f"; {options}" if options else ""))
    if packet.length:
        details.append(f"{packet.length} bytes: {payload_text(packet.payload, packet.length)}")
    details += event.notes
    if states is not None:
        for name, end in zip(("left", "right"), states, strict=True):
            if end.agrees is False and end.kernel is not None:
                details.append(f"the kernel showed {end.kernel.value} on the {name}")
    return [line.rstrip()] + [indent + detail for detail in details]


def ladder_lines(trace: Trace, color: bool = False) -> list[str]:
    """The whole ladder: a title, the columns, one block per packet, and the trace's notes."""
    lines = [_title(trace)]
    lines += header_lines(trace, color)
    previous = None
    for event in trace.events:
        lines += event_lines(event, previous, color)
        previous = event
    lines += footer_lines(trace)
    return lines


def footer_lines(trace: Trace) -> list[str]:
    lines = [f"note: {note}" for note in trace.notes]
    if trace.left_out:
        lines.append(f"note: {trace.left_out} packets of other flows were left out")
    if any(e.states and any(s.agrees for s in e.states) for e in trace.events):
        lines.append("*: the kernel (sock_diag) showed this state too")
    return lines


def _title(trace: Trace) -> str:
    count = len(trace.events)
    what = f"{trace.title}: " if trace.title else ""
    text = f"{what}{count} packet{'s' if count != 1 else ''}"
    if trace.source:
        text += f" on {trace.source}"
    if trace.stats is not None:
        dropped = trace.stats.dropped
        text += ", none dropped" if not dropped else f", {dropped} DROPPED by the capture"
    return text
