"""Seeing what passes: socat-like text (``-v``) and hex (``-x``) dumps, and a pcap file.

The dump format itself is sockkit's one traffic dump (:mod:`sockkit._traffic_dump`),
shared with ``connect`` and ``listen``; this module feeds it a relay's pieces.

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

import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, BinaryIO, TextIO

from sockkit._traffic_dump import BACK, OUT, TrafficDump

if TYPE_CHECKING:
    from sockkit.relay._host import Observer
    from sockkit.relay._link import Link

__all__ = ["PcapWriter", "make_observers"]

_WAY = {"upstream": OUT, "downstream": BACK}


def make_observers(
    *, verbose: bool, hexdump: bool, pcap: str | None, stream: TextIO | None = None
) -> list[Observer]:
    """The observers the command line asked for; dumps go to ``stream`` (stderr)."""
    observers: list[Observer] = []
    if verbose or hexdump:
        dump = TrafficDump(hexdump=hexdump, stream=stream or sys.stderr)

        def observe(link: Link, way: str, offset: int, data: bytes) -> None:
            dump(_WAY[way], link.number, offset, data)

        observers.append(observe)
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
