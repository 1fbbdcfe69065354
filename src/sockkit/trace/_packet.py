"""Decoding a captured frame: Ethernet or raw IP, IPv4/IPv6, TCP/UDP/ICMP, TCP options.

A small parser of our own rather than dpkt or scapy.  The reasons: a trace
needs five fixed headers and one option list, about a hundred lines with
``struct``; the result is our own frozen, typed values rather than a
library's mutable objects; and no third-party package has to be installed.
Start-up was not the deciding cost -- ``sockkit trace --help`` imports no
parser at all -- but it was measured (``python -X importtime``, busy
machine; benchmarks/trace_startup.md): ``import dpkt`` (1.9.8) 33-39 ms,
``import scapy.all`` 475-577 ms, this module 25 ms with the ``socket`` and
``dataclasses`` modules the capture loads anyway.  Anything
else -- IP options we cannot skip, other protocols, truncated headers --
yields ``None`` and is left out of the trace.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "IcmpError",
    "Packet",
    "TcpOptions",
    "decode_frame",
    "decode_ip",
    "flag_names",
]

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_FLAG_ORDER = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"))

_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD


def flag_names(flags: int) -> str:
    """``SYN``, ``SYN+ACK``, ``PSH+ACK``, ``FIN+ACK``, ``RST+ACK``, ...; ``none`` for no flag."""
    names = [name for bit, name in _FLAG_ORDER if flags & bit]
    return "+".join(names) or "none"


@dataclass(frozen=True)
class TcpOptions:
    """The TCP options of one segment (those a trace shows; ``others`` are the remaining kinds)."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None
    sack_blocks: tuple[tuple[int, int], ...] = ()
    others: tuple[int, ...] = ()

    def describe(self, *, with_timestamps: bool = True) -> str:
        """``mss 65495, sackOK, ts 1234/0, wscale 7`` (empty when there are none)."""
        parts = []
        if self.mss is not None:
            parts.append(f"mss {self.mss}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.timestamps is not None and with_timestamps:
            parts.append(f"ts {self.timestamps[0]}/{self.timestamps[1]}")
        if self.wscale is not None:
            parts.append(f"wscale {self.wscale}")
        if self.sack_blocks:
            parts.append("sack " + " ".join(f"{a}-{b}" for a, b in self.sack_blocks))
        parts += [f"opt{kind}" for kind in self.others]
        return ", ".join(parts)


@dataclass(frozen=True)
class IcmpError:
    """An ICMP error and the datagram it quotes (whose ports name the flow it is about)."""

    type: int
    code: int
    quoted_protocol: str

    @property
    def description(self) -> str:
        if self.type in (3, 1) and self.code in (3, 4):  # v4 3/3, v6 1/4
            return "port unreachable"
        return f"type {self.type} code {self.code}"


@dataclass(frozen=True)
class Packet:
    """One decoded packet.

    ``protocol`` is ``tcp``, ``udp`` or ``icmp``.  For an ICMP error the ports
    are those of the quoted datagram, turned round so that ``src``/``sport``
    is the end that could not be reached: the error then sits in the flow it
    is about.  ``payload`` holds the captured bytes, ``length`` the payload
    length on the wire.  TCP fields are 0 (and options empty) otherwise.
    ``frame`` is the frame as captured, for writing it out again.
    """

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    protocol: str
    length: int
    payload: bytes
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    options: TcpOptions = TcpOptions()
    icmp: IcmpError | None = None
    frame: bytes = b""

    @property
    def flag_text(self) -> str:
        return flag_names(self.flags)

    @property
    def segment_length(self) -> int:
        """Sequence space used: payload, plus one each for SYN and FIN."""
        return self.length + bool(self.flags & SYN) + bool(self.flags & FIN)


def decode_frame(time: float, frame: bytes) -> Packet | None:
    """The packet in an Ethernet frame (as ``lo`` frames them), or ``None`` if it is not one we show."""
    if len(frame) < 14:
        return None
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    if ethertype not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    return decode_ip(time, frame[14:], frame)


def decode_ip(time: float, data: bytes, frame: bytes | None = None) -> Packet | None:
    """The packet in a bare IPv4/IPv6 datagram, or ``None``."""
    parsed = _ip_header(data)
    if parsed is None:
        return None
    src, dst, protocol, body = parsed
    whole = data if frame is None else frame
    if protocol == socket.IPPROTO_TCP:
        return _tcp(time, src, dst, body, whole)
    if protocol == socket.IPPROTO_UDP and len(body) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", body)
        size = max(0, length - 8)
        return Packet(time, src, sport, dst, dport, "udp", size, body[8 : 8 + size], frame=whole)
    if protocol in (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6) and len(body) >= 8:
        return _icmp_error(time, body, whole)
    return None


def _ip_header(data: bytes) -> tuple[str, str, int, bytes] | None:
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        header = (data[0] & 0x0F) * 4
        (total,) = struct.unpack_from("!H", data, 2)
        (fragment,) = struct.unpack_from("!H", data, 6)
        if fragment & 0x1FFF or header < 20:
            return None
        src = socket.inet_ntop(socket.AF_INET, data[12:16])
        dst = socket.inet_ntop(socket.AF_INET, data[16:20])
        return src, dst, data[9], data[header : max(header, total)]
    if version == 6 and len(data) >= 40:
        (payload,) = struct.unpack_from("!H", data, 4)
        src = socket.inet_ntop(socket.AF_INET6, data[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, data[24:40])
        return src, dst, data[6], data[40 : 40 + payload]
    return None


def _tcp(time: float, src: str, dst: str, body: bytes, frame: bytes) -> Packet | None:
    if len(body) < 20:
        return None
    sport, dport, seq, ack, offset, flags, window = struct.unpack_from("!HHIIBBH", body)
    header = (offset >> 4) * 4
    if header < 20 or header > len(body):
        return None
    payload = body[header:]
    return Packet(
        time, src, sport, dst, dport, "tcp", len(payload), payload,
        seq, ack, flags, window, _options(body[20:header]), frame=frame,
    )  # fmt: skip


def _options(raw: bytes) -> TcpOptions:
    mss = wscale = None
    sack_permitted = False
    timestamps = None
    blocks: list[tuple[int, int]] = []
    others: list[int] = []
    i = 0
    while i < len(raw):
        kind = raw[i]
        if kind == 0:  # end of options
            break
        if kind == 1:  # no-operation padding
            i += 1
            continue
        if i + 1 >= len(raw) or raw[i + 1] < 2:
            break  # malformed: stop rather than guess
        size = raw[i + 1]
        if i + size > len(raw):
            break  # an option that runs past the header: malformed, as above
        value = raw[i + 2 : i + size]
        if kind == 2 and size == 4:
            (mss,) = struct.unpack("!H", value)
        elif kind == 3 and size == 3:
            wscale = value[0]
        elif kind == 4 and size == 2:
            sack_permitted = True
        elif kind == 8 and size == 10:
            timestamps = struct.unpack("!II", value)
        elif kind == 5 and (size - 2) % 8 == 0:
            blocks += [struct.unpack_from("!II", value, j) for j in range(0, size - 2, 8)]
        else:
            others.append(kind)
        i += size
    return TcpOptions(mss, wscale, sack_permitted, timestamps, tuple(blocks), tuple(others))


def _icmp_error(time: float, body: bytes, frame: bytes) -> Packet | None:
    kind, code = body[0], body[1]
    quoted = _ip_header(body[8:])
    if quoted is None:
        return None
    qsrc, qdst, qprotocol, qbody = quoted
    if len(qbody) < 4 or qprotocol not in (socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    qsport, qdport = struct.unpack_from("!HH", qbody)
    name = "tcp" if qprotocol == socket.IPPROTO_TCP else "udp"
    return Packet(
        time, qdst, qdport, qsrc, qsport, "icmp", 0, b"",
        icmp=IcmpError(kind, code, name), frame=frame,
    )  # fmt: skip
