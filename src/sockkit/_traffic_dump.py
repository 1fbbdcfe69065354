"""How sockkit shows the bytes it moves: socat-like text (``-v``) and hex (``-x``) dumps.

One format for every command that dumps traffic (``relay -v/-x``, and
``connect``/``listen`` ``-vv/-x``), so a dump reads the same wherever it came from.
Each piece written one way gets a header line::

    > 2026/11/27 11:50:02.123456 conn=1 length=6 from=0 to=5

``>`` is the way *out* (client to target for a relay, stdin to the peer for
``connect``/``listen``), ``<`` the way back; ``from``/``to`` count the bytes
already moved that way on that connection.  Then either the bytes as text with
control bytes made visible (``\\r``, ``\\x00``; newlines kept), or 16 bytes a
line of offset, hex and printable ASCII.

This module sits below the client and relay layers and imports nothing of sockkit.
"""

from __future__ import annotations

import datetime
import sys
from typing import TextIO

__all__ = ["BACK", "OUT", "TrafficDump", "header", "hex_lines", "visible_text"]

#: The two ways, as the header shows them.
OUT = ">"
BACK = "<"

_ESCAPES = {0x0D: "\\r", 0x09: "\\t", 0x5C: "\\\\"}


def visible_text(data: bytes) -> str:
    """``data`` as text with control bytes made visible (``\\r``, ``\\x00``); newlines kept."""
    out = []
    for byte in data:
        if byte == 0x0A:
            out.append("\n")
        elif byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def hex_lines(data: bytes, offset: int = 0) -> list[str]:
    """16 bytes a line: offset, hex, printable ASCII (``.`` for the rest)."""
    lines = []
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        hexes = " ".join(f"{b:02x}" for b in row)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"  {offset + at:08x}  {hexes:<47}  {text}")
    return lines


def header(way: str, conn: int, offset: int, length: int) -> str:
    """The line before each piece: way (:data:`OUT`/:data:`BACK`), time, connection, byte range."""
    stamp = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")
    return f"{way} {stamp} conn={conn} length={length} from={offset} to={offset + length - 1}"


class TrafficDump:
    """Writes one dump entry per piece to ``stream`` (stderr by default).

    ``hexdump`` picks the hex form; otherwise the text form.  Call it with
    ``(way, conn, offset, data)`` for every piece, in the order they moved.
    """

    def __init__(self, *, hexdump: bool, stream: TextIO | None = None) -> None:
        self.hexdump = hexdump
        self._stream = stream

    def __call__(self, way: str, conn: int, offset: int, data: bytes) -> None:
        if not data:
            return
        lines = [header(way, conn, offset, len(data))]
        if self.hexdump:
            lines.extend(hex_lines(data, offset))
        else:
            text = visible_text(data)
            lines.append(text[:-1] if text.endswith("\n") else text)
        out = self._stream or sys.stderr
        out.write("\n".join(lines) + "\n")
        out.flush()
