"""Classic pcap files: written as tcpdump writes them, read as tcpdump and Wireshark do.

The format is a 24-byte file header (magic, version 2.4, snap length, link
type) and per packet a 16-byte record header (seconds, fraction, captured
and original length) -- a few ``struct`` calls, so no library.  We write
microsecond timestamps and Ethernet framing (link type 1, what ``tcpdump -i
lo -w`` writes).  We read either byte order, micro- or nanosecond
timestamps, and the link types a loopback capture comes in: Ethernet, raw
IP, Linux "cooked" (v1 and v2) and BSD loopback.  pcapng is refused with a
message saying how to convert it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

from sockkit._errors import SockkitError
from sockkit.trace._capture import RawPacket
from sockkit.trace._packet import Packet, decode_frame, decode_ip

__all__ = ["PcapError", "read_pcap", "write_pcap"]

_MAGIC_MICRO, _MAGIC_NANO = 0xA1B2C3D4, 0xA1B23C4D
_PCAPNG = 0x0A0D0D0A
_ETHERNET, _NULL, _RAW, _RAW_ALT, _SLL, _SLL2 = 1, 0, 101, 12, 113, 276
_SNAPLEN = 262144


class PcapError(SockkitError):
    """A file that is not a pcap capture this reader understands."""


def write_pcap(path: str | Path, packets: Iterable[RawPacket | Packet]) -> int:
    """Write Ethernet frames to ``path`` as a classic pcap file; return how many."""
    count = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", _MAGIC_MICRO, 2, 4, 0, 0, _SNAPLEN, _ETHERNET))
        for packet in packets:
            seconds = int(packet.time)
            micros = round((packet.time - seconds) * 1e6)
            if micros >= 1_000_000:
                seconds, micros = seconds + 1, micros - 1_000_000
            frame = packet.frame
            out.write(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
            count += 1
    return count


def read_pcap(path: str | Path) -> list[Packet]:
    """The TCP/UDP/ICMP packets in a pcap file, decoded; :class:`PcapError` if it is not one."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SockkitError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) < 24:
        raise PcapError(f"{path} is not a pcap file (too short)")
    (magic,) = struct.unpack_from("<I", data)
    if magic == _PCAPNG:
        raise PcapError(
            f"{path} is pcapng; convert it with 'tshark -F pcap -r {path} -w out.pcap' or"
            " capture with 'tcpdump -w' instead"
        )
    order = "<" if magic in (_MAGIC_MICRO, _MAGIC_NANO) else ">"
    (magic,) = struct.unpack_from(order + "I", data)
    if magic not in (_MAGIC_MICRO, _MAGIC_NANO):
        raise PcapError(f"{path} is not a pcap file (magic {data[:4].hex()})")
    scale = 1e-6 if magic == _MAGIC_MICRO else 1e-9
    (linktype,) = struct.unpack_from(order + "I", data, 20)
    linktype &= 0x0FFFFFFF  # the upper bits may carry FCS information
    packets = []
    offset = 24
    record = struct.Struct(order + "IIII")
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        packet = _decode(linktype, seconds + fraction * scale, frame, path)
        if packet is not None:
            packets.append(packet)
    return packets


def _decode(linktype: int, time: float, frame: bytes, path: str | Path) -> Packet | None:
    if linktype == _ETHERNET:
        return decode_frame(time, frame)
    if linktype in (_RAW, _RAW_ALT):
        return decode_ip(time, frame, _as_ethernet(frame))
    if linktype == _SLL:
        return decode_ip(time, frame[16:], _as_ethernet(frame[16:]))
    if linktype == _SLL2:
        return decode_ip(time, frame[20:], _as_ethernet(frame[20:]))
    if linktype == _NULL:
        return decode_ip(time, frame[4:], _as_ethernet(frame[4:]))
    raise PcapError(f"{path}: link type {linktype} is not one a loopback capture uses")


def _as_ethernet(ip: bytes) -> bytes:
    """An IP datagram in the zero-address Ethernet frame ``lo`` uses (so --pcap can write it)."""
    ethertype = 0x86DD if ip and ip[0] >> 4 == 6 else 0x0800
    return bytes(12) + struct.pack("!H", ethertype) + ip
