"""The PROXY protocol (versions 1 and 2): the header a load balancer puts before a connection.

A proxy such as HAProxy opens its own connection to the server, so the
server's peer is the proxy.  With ``send-proxy`` (v1, one text line) or
``send-proxy-v2`` (binary) the proxy first sends a header naming the real
client and the address it connected to; then the client's bytes follow.

This module is sans-I/O: :class:`ProxyHeaderReader` is fed bytes as they
arrive and answers with a :class:`ProxyHeader` once the header is complete,
leaving whatever followed it in :attr:`ProxyHeaderReader.leftover` (the
client's first bytes, which belong to the service).  :func:`build_v1` and
:func:`build_v2` make headers for the sending side.

Rules, and why:

- A header is required, never guessed.  The server decides *by the peer's
  address* whether a connection comes from a trusted proxy; bytes that are not
  a header from a trusted proxy are an error, and bytes from anyone else are
  never parsed as one -- a server that sniffed for a header would let any
  client claim any address.
- v1 is one line of at most 107 bytes including CRLF (the spec's limit, which
  fits ``TCP6`` with two full IPv6 addresses and ports).  Without a CRLF in the
  first 107 bytes the header is malformed: the reader never waits for more.
- v2 is a 16-byte fixed part (12-byte signature, version/command, family/
  protocol, 16-bit length) and exactly ``length`` more bytes.  The reader asks
  for no byte past ``16 + length``.
- ``LOCAL`` (v2) and ``UNKNOWN`` (v1) headers carry no addresses: the proxy
  made the connection itself (a health check), so the connection's own
  addresses stand and :attr:`ProxyHeader.source` is ``None``.
- v2 TLVs after the addresses are exposed as ``(type, value)`` pairs, in order;
  one whose length runs past the header is malformed.

Anything else wrong raises :class:`ProxyHeaderError` with a reason for the log.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from typing import Literal

from sockkit._errors import SockkitError

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "build_v1",
    "build_v2",
]

V1_PREFIX = b"PROXY "
#: The spec's bound on a v1 line, CRLF included.
V1_MAX_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_FIXED = 16
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
# v2 family nibble -> (socket family, size of the address block)
_V2_FAMILIES = {0x1: (socket.AF_INET, 12), 0x2: (socket.AF_INET6, 36), 0x3: (socket.AF_UNIX, 216)}
_V2_PROTOCOLS: dict[int, Literal["stream", "dgram"] | None] = {0: None, 1: "stream", 2: "dgram"}

Address = tuple[str, int] | str


class ProxyHeaderError(SockkitError):
    """The bytes do not begin with a valid PROXY header; the message says why in a few words."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed PROXY header.

    ``source``/``destination`` are ``(host, port)`` for TCP/UDP over IPv4 or IPv6,
    a path (``@name`` for the abstract namespace) for Unix, or ``None`` when the
    header carries no addresses (v2 ``LOCAL``, v1 ``UNKNOWN``, v2 ``UNSPEC``):
    then the connection's own addresses stand.  ``length`` is how many bytes the
    header took.
    """

    version: Literal[1, 2]
    local: bool
    family: int | None
    protocol: Literal["stream", "dgram"] | None
    source: Address | None
    destination: Address | None
    tlvs: tuple[tuple[int, bytes], ...]
    length: int

    def tlv(self, kind: int) -> bytes | None:
        """The value of the first TLV of type ``kind``, or ``None``."""
        return next((value for t, value in self.tlvs if t == kind), None)


class ProxyHeaderReader:
    """Reads one PROXY header from a connection's first bytes.

    Call :meth:`feed` with each chunk received until it returns a
    :class:`ProxyHeader`; then :attr:`leftover` holds the bytes after the header.
    :meth:`feed` raises :class:`ProxyHeaderError` as soon as the bytes cannot
    begin a valid header, and :attr:`wanted` says how many more bytes can be
    read without reading past the header (so a caller that must not consume
    payload can ``recv(wanted)``).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.header: ProxyHeader | None = None
        self.leftover = b""

    @property
    def wanted(self) -> int:
        """Most bytes that may still belong to the header (0 once it is complete)."""
        if self.header is not None:
            return 0
        buf = self._buffer
        if buf.startswith(V2_SIGNATURE) and len(buf) >= _V2_FIXED:
            size: int = struct.unpack_from("!H", buf, 14)[0]
            return _V2_FIXED + size - len(buf)
        if len(buf) < _V2_FIXED and buf.startswith(V2_SIGNATURE[: len(buf)]):
            # Either version may follow; 16 bytes never run past a v2 header,
            # and past a v1 line only when it is shorter than 16 bytes.
            return _V2_FIXED - len(buf)
        # Where a v1 line ends is known only once its CRLF has arrived.
        return V1_MAX_LENGTH - len(buf)

    def feed(self, data: bytes) -> ProxyHeader | None:
        """Add ``data``; return the header once complete, ``None`` while more is needed."""
        if self.header is not None:
            self.leftover += data
            return self.header
        self._buffer += data
        buf = bytes(self._buffer)
        if buf[:1] == b"P":
            found = _parse_v1(buf)
        elif buf[:1] == b"\r":
            found = _parse_v2(buf)
        else:
            raise ProxyHeaderError("no PROXY header: the connection did not begin with one")
        if found is None:
            return None
        self.header = found
        self.leftover = buf[found.length :]
        self._buffer.clear()
        return found


def _parse_v1(buf: bytes) -> ProxyHeader | None:
    if not buf.startswith(V1_PREFIX[: len(buf)]):
        raise ProxyHeaderError("no PROXY header: the connection did not begin with one")
    end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(buf) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v1 line without CRLF in {V1_MAX_LENGTH} bytes")
        if b"\n" in buf or b"\r" in buf[:-1]:
            raise ProxyHeaderError("PROXY v1 line with a stray CR or LF")
        return None
    length = end + 2
    try:
        line = buf[len(V1_PREFIX) : end].decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 line is not ASCII") from None
    if line == "UNKNOWN" or line.startswith("UNKNOWN "):
        # The spec lets the rest of an UNKNOWN line be anything; it is ignored.
        return ProxyHeader(1, False, None, None, None, None, (), length)
    parts = line.split(" ")
    if len(parts) != 5:
        raise ProxyHeaderError("PROXY v1 line needs TCP4|TCP6 SRC DST SPORT DPORT")
    proto, src, dst, sport, dport = parts
    if proto not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"PROXY v1 protocol {proto[:8]!r} is not TCP4, TCP6 or UNKNOWN")
    version = 4 if proto == "TCP4" else 6
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    return ProxyHeader(
        1,
        False,
        family,
        "stream",
        (_v1_address(src, version), _v1_port(sport)),
        (_v1_address(dst, version), _v1_port(dport)),
        (),
        length,
    )


def _v1_address(text: str, version: int) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ProxyHeaderError(f"PROXY v1 address {text[:45]!r} is not an IP address") from None
    if addr.version != version or "%" in text:
        raise ProxyHeaderError(f"PROXY v1 address {text!r} is not IPv{version}")
    return str(addr)


def _v1_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise ProxyHeaderError(f"PROXY v1 port {text[:8]!r} is not 0-65535")
    return int(text)


def _parse_v2(buf: bytes) -> ProxyHeader | None:
    if not buf.startswith(V2_SIGNATURE[: len(buf)]):
        raise ProxyHeaderError("no PROXY header: the connection did not begin with one")
    if len(buf) < _V2_FIXED:
        return None
    version_command, family_protocol, size = struct.unpack_from("!BBH", buf, 12)
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"PROXY v2 version {version_command >> 4} is not 2")
    command = version_command & 0x0F
    if command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"PROXY v2 command {command} is not LOCAL or PROXY")
    length = _V2_FIXED + size
    if len(buf) < length:
        return None
    body = buf[_V2_FIXED:length]
    family_code, protocol_code = family_protocol >> 4, family_protocol & 0x0F
    if protocol_code not in _V2_PROTOCOLS or (family_code not in _V2_FAMILIES and family_code):
        raise ProxyHeaderError(f"PROXY v2 family/protocol byte 0x{family_protocol:02x} is unknown")
    if command == _V2_LOCAL or family_code == 0:
        # No addresses to read (LOCAL: a health check; UNSPEC: unknown family);
        # the spec says the receiver skips the body, TLVs included.
        return ProxyHeader(2, command == _V2_LOCAL, None, None, None, None, (), length)
    family, block = _V2_FAMILIES[family_code]
    if size < block:
        raise ProxyHeaderError(f"PROXY v2 length {size} is too short for its addresses")
    source, destination = _v2_addresses(family, body[:block])
    tlvs = _v2_tlvs(body[block:])
    return ProxyHeader(
        2, False, family, _V2_PROTOCOLS[protocol_code], source, destination, tlvs, length
    )


def _v2_addresses(family: int, block: bytes) -> tuple[Address, Address]:
    if family == socket.AF_UNIX:
        return _unix_path(block[:108]), _unix_path(block[108:])
    size = 4 if family == socket.AF_INET else 16
    src = socket.inet_ntop(family, block[:size])
    dst = socket.inet_ntop(family, block[size : 2 * size])
    sport, dport = struct.unpack_from("!HH", block, 2 * size)
    return (src, sport), (dst, dport)


def _unix_path(raw: bytes) -> str:
    if raw.startswith(b"\x00"):
        return "@" + raw[1:].rstrip(b"\x00").decode("utf-8", "backslashreplace")
    return os.fsdecode(raw.split(b"\x00", 1)[0])


def _v2_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    tlvs = []
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise ProxyHeaderError("PROXY v2 TLV cut short")
        kind, size = struct.unpack_from("!BH", data, at)
        at += 3
        if at + size > len(data):
            raise ProxyHeaderError(f"PROXY v2 TLV 0x{kind:02x} runs past the header")
        tlvs.append((kind, data[at : at + size]))
        at += size
    return tuple(tlvs)


# -- building -----------------------------------------------------------------


def build_v1(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """A v1 header line for a TCP connection from ``source`` to ``destination``.

    ``None`` for either (or a pair of different IP versions, or a non-IP address)
    gives ``PROXY UNKNOWN``, as the spec asks when the addresses cannot be told.
    An IPv4-mapped IPv6 address (``::ffff:1.2.3.4``) is written as IPv4.
    """
    if source is None or destination is None:
        return b"PROXY UNKNOWN\r\n"
    try:
        src, dst = _ip(source[0]), _ip(destination[0])
    except ValueError:
        return b"PROXY UNKNOWN\r\n"
    if src.version != dst.version:
        return b"PROXY UNKNOWN\r\n"
    proto = "TCP4" if src.version == 4 else "TCP6"
    line = f"PROXY {proto} {src} {dst} {source[1]} {destination[1]}\r\n"
    return line.encode("ascii")


def build_v2(
    source: Address | None,
    destination: Address | None,
    *,
    protocol: Literal["stream", "dgram"] = "stream",
    tlvs: tuple[tuple[int, bytes], ...] = (),
    local: bool = False,
) -> bytes:
    """A v2 header: ``PROXY`` from ``source`` to ``destination``, or ``LOCAL`` if ``local``.

    Addresses are ``(host, port)`` (IPv4 or IPv6) or Unix paths (``@name`` for the
    abstract namespace); ``None`` for either, or mixed families, sends family
    UNSPEC with no addresses.  ``tlvs`` are appended as they are.
    Raises :class:`ValueError` for a TLV over 65535 bytes or a header over 64 KiB.
    """
    tail = b"".join(struct.pack("!BH", kind, len(value)) + value for kind, value in tlvs)
    command = _V2_LOCAL if local else _V2_PROXY
    family_code, block = 0, b""
    if not local and source is not None and destination is not None:
        family_code, block = _v2_block(source, destination)
    proto_code = {"stream": 1, "dgram": 2}[protocol] if family_code else 0
    body = block + tail
    if len(body) > 0xFFFF:
        raise ValueError("a PROXY v2 header holds at most 65535 bytes after its first 16")
    return (
        V2_SIGNATURE
        + struct.pack("!BBH", 0x20 | command, family_code << 4 | proto_code, len(body))
        + body
    )


def _v2_block(source: Address, destination: Address) -> tuple[int, bytes]:
    if isinstance(source, str) and isinstance(destination, str):
        return 0x3, _unix_bytes(source) + _unix_bytes(destination)
    if isinstance(source, str) or isinstance(destination, str):
        return 0, b""
    try:
        src, dst = _ip(source[0]), _ip(destination[0])
    except ValueError:
        return 0, b""
    if src.version != dst.version:
        return 0, b""
    ports = struct.pack("!HH", source[1], destination[1])
    return (0x1 if src.version == 4 else 0x2), src.packed + dst.packed + ports


def _unix_bytes(path: str) -> bytes:
    raw = b"\x00" + path[1:].encode() if path.startswith("@") else os.fsencode(path)
    return raw[:108].ljust(108, b"\x00")


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr
