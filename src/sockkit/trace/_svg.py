"""The ladder as a sequence diagram in SVG: two time lines, one slanted arrow per packet.

Plain SVG 1.1 with no script or external resource, so any browser (and any
README renderer) shows it.  Time runs down the page, one row per packet,
not to scale (loopback packets are microseconds apart; the time of each is
written at the left).  Every packet is one ``<line class="packet">`` with an
arrow head, labelled with flags, seq/ack, length and window; a box on an
end's time line shows its state whenever it changes.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from sockkit.trace._events import EndState, Trace
from sockkit.trace._ladder import arrow_label, payload_text
from sockkit.trace._packet import FIN, RST, SYN

__all__ = ["render_svg"]

_WIDTH = 860
_LEFT, _RIGHT = 250, 690
_TOP = 110
_ROW = 58
_SLANT = 26
_BOX_W, _BOX_H = 116, 22


def _colour(flags: int, protocol: str, length: int) -> str:
    if protocol == "icmp" or flags & RST:
        return "#c62828"
    if flags & SYN:
        return "#2e7d32"
    if flags & FIN:
        return "#ef6c00"
    return "#1565c0" if length else "#616161"


def _box(x: float, y: float, end: EndState) -> str:
    mark = " *" if end.agrees else ""
    return (
        f'<g class="state"><rect x="{x - _BOX_W / 2:.0f}" y="{y - _BOX_H / 2:.0f}" '
        f'width="{_BOX_W}" height="{_BOX_H}" rx="5" fill="#fff8e1" stroke="#8d6e63"/>'
        f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle" class="st">'
        f"{escape(end.state.value + mark)}</text></g>"
    )


def render_svg(trace: Trace) -> str:
    """The SVG document for ``trace``, as text."""
    rows = len(trace.events)
    height = _TOP + rows * _ROW + 90
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height}" '
        f'viewBox="0 0 {_WIDTH} {height}" font-family="DejaVu Sans Mono, monospace" font-size="12">',
        "<defs>",
        '<marker id="head" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="context-stroke"/></marker>',
        "<style>.st{font-size:11px;fill:#4e342e}.lbl{font-size:12px}.note{font-size:10px;"
        "fill:#555}.time{font-size:11px;fill:#777}.end{font-size:13px;font-weight:bold}</style>",
        "</defs>",
        f'<rect width="{_WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{_WIDTH / 2:.0f}" y="24" text-anchor="middle" font-size="15">'
        f"{escape(trace.title or 'sockkit trace')}</text>",
    ]
    bottom = height - 40
    for x, label, (host, port) in zip((_LEFT, _RIGHT), trace.labels, trace.ends, strict=True):
        out.append(f'<text x="{x}" y="52" text-anchor="middle" class="end">{escape(label)}</text>')
        out.append(
            f'<text x="{x}" y="68" text-anchor="middle" class="time">{escape(host)}:{port}</text>'
        )
        out.append(f'<line x1="{x}" y1="{_TOP - 24}" x2="{x}" y2="{bottom}" stroke="#9e9e9e"/>')
    if trace.initial is not None:
        out += [_box(_LEFT - _BOX_W / 2 - 8, _TOP - 16, trace.initial[0])]
        out += [_box(_RIGHT + _BOX_W / 2 + 8, _TOP - 16, trace.initial[1])]
    previous = trace.initial
    out.append(f'<text x="10" y="{_TOP - 30}" class="time">time (ms)</text>')
    for row, event in enumerate(trace.events):
        y = float(_TOP + row * _ROW + 10)
        start, end = (_LEFT, _RIGHT) if event.rightward else (_RIGHT, _LEFT)
        packet = event.packet
        colour = _colour(packet.flags, packet.protocol, packet.length)
        out.append(f'<text x="10" y="{y + 4}" class="time">{event.time * 1000:.3f}</text>')
        out.append(
            f'<line class="packet" x1="{start}" y1="{y}" x2="{end}" y2="{y + _SLANT}" '
            f'stroke="{colour}" stroke-width="1.6" marker-end="url(#head)"/>'
        )
        middle = (_LEFT + _RIGHT) / 2
        out.append(
            f'<text x="{middle:.0f}" y="{y + _SLANT / 2 - 10:.0f}" text-anchor="middle" '
            f'class="lbl" fill="{colour}">{escape(arrow_label(event))}</text>'
        )
        extra = list(event.notes)
        if packet.length:
            extra.insert(0, payload_text(packet.payload, packet.length))
        if event.isn is not None:
            extra.insert(0, packet.options.describe(with_timestamps=False))
        if extra:
            out.append(
                f'<text x="{middle:.0f}" y="{y + _SLANT + 12:.0f}" text-anchor="middle" '
                f'class="note">{escape("; ".join(extra))}</text>'
            )
        if event.states is not None:
            for index, side in ((0, _LEFT - _BOX_W / 2 - 8), (1, _RIGHT + _BOX_W / 2 + 8)):
                now = event.states[index]
                before = previous[index] if previous is not None else None
                if before is None or before.state is not now.state or now.agrees:
                    out.append(_box(side, y + _SLANT, now))
            previous = event.states
    notes = list(trace.notes)
    if any(e.states and any(s.agrees for s in e.states) for e in trace.events):
        notes.append("*: the kernel (sock_diag) showed this state too")
    for index, note in enumerate(notes[:3]):
        out.append(
            f'<text x="10" y="{bottom + 16 + index * 13}" class="note">{escape(note)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
