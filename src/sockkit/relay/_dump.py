"""Seeing what passes: socat-like text (``-v``) and hex (``-x``) dumps, and a pcap file.

Each is an observer called with every piece a relay writes:
``(link, way, offset, data)`` where ``way`` is ``upstream`` (client to
target, shown ``>``) or ``downstream`` (shown ``<``) and ``offset`` counts the
bytes already written that way.

The pcap holds one synthetic IPv4/TCP packet per piece (LINKTYPE_RAW):
addresses and ports are the client's and the target's where they are IPv4,
stand-ins otherwise; sequence numbers are the byte offsets, so Wireshark's
"Follow TCP stream" shows the conversation.
"""

from __future__ import annotations

import datetime
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, BinaryIO, TextIO

if TYPE_CHECKING:
    from sockkit.relay._link import Link, Observer

__all__ = ["PcapWriter", "hex_lines", "make_observers", "visible_text"]

_ARROW = {"upstream": ">", "downstream": "<"}
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


def _header(link: Link, way: str, offset: int, data: bytes) -> str:
    stamp = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")
    return (
        f"{_ARROW[way]} {stamp} conn={link.number} length={len(data)}"
        f" from={offset} to={offset + len(data) - 1}"
    )


def make_observers(
    *, verbose: bool, hexdump: bool, pcap: str | None, stream: TextIO | None = None
) -> list[Observer]:
    """The observers the command line asked for; dumps go to ``stream`` (stderr)."""
    out = stream or sys.stderr
    observers: list[Observer] = []
    if verbose or hexdump:

        def dump(link: Link, way: str, offset: int, data: bytes) -> None:
            lines = [_header(link, way, offset, data)]
            if hexdump:
                lines.extend(hex_lines(data, offset))
            else:
                text = visible_text(data)
                lines.append(text[:-1] if text.endswith("\n") else text)
            out.write("\n".join(lines) + "\n")
            out.flush()

        observers.append(dump)
    if pcap:
        writer = PcapWriter(open(pcap, "wb"))
        observers.append(writer.observe)
    return observers


class PcapWriter:
    """Writes relayed pieces as IPv4/TCP packets to a pcap file."""

    _MAX = 65000  # payload per packet: an IPv4 packet is at most 65535 bytes

    def __init__(self, file: BinaryIO) -> None:
        self.file = file
        # magic, version 2.4, GMT offset, accuracy, snaplen, LINKTYPE_RAW (101)
        file.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101))
        file.flush()

    def observe(self, link: Link, way: str, offset: int, data: bytes) -> None:
        client = _ipv4(
            link.client.sock, peer=True, fallback=("10.0.0.1", 40000 + link.number % 20000)
        )
        target = _ipv4(link.upstream.sock, peer=True, fallback=("10.0.0.2", 80))
        src, dst = (client, target) if way == "upstream" else (target, client)
        other = "downstream" if way == "upstream" else "upstream"
        ack = link.sent[other] + 1
        for at in range(0, len(data), self._MAX):
            piece = data[at : at + self._MAX]
            self._packet(src, dst, offset + at + 1, ack, piece)
        self.file.flush()

    def _packet(
        self, src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, payload: bytes
    ) -> None:
        tcp = struct.pack(
            "!HHIIBBHHH",
            src[1],
            dst[1],
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            5 << 4,
            0x18,
            65535,
            0,
            0,
        )
        total = 20 + len(tcp) + len(payload)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            total,
            0,
            0x4000,
            64,
            socket.IPPROTO_TCP,
            0,
            socket.inet_aton(src[0]),
            socket.inet_aton(dst[0]),
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        now = time.time()
        seconds, micros = int(now), int((now % 1) * 1e6)
        self.file.write(struct.pack("<IIII", seconds, micros, total, total))
        self.file.write(ip + tcp + payload)


def _ipv4(sock: socket.socket, *, peer: bool, fallback: tuple[str, int]) -> tuple[str, int]:
    if sock.family != socket.AF_INET:
        return fallback
    try:
        host, port = sock.getpeername() if peer else sock.getsockname()
    except OSError:
        return fallback
    return str(host), int(port)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)
