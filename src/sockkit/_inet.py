"""Byte order, address conversion and service-name look-ups: the classic socket toolbox.

These mirror the C calls (``inet_pton``, ``inet_ntop``, ``htons``, ``htonl``,
``ntohs``, ``ntohl``, ``getservbyname``, ``getservbyport``) with Python values
and errors a person can read.  Network byte order is big-endian; "host order"
is whatever this machine uses (see :func:`byte_order`).
"""

from __future__ import annotations

import ctypes
import socket
import sys
from dataclasses import dataclass

from sockkit._errors import SockkitError, UsageError

__all__ = [
    "ByteOrder",
    "PackedAddress",
    "byte_order",
    "hton16",
    "hton32",
    "ntoh16",
    "ntoh32",
    "ntop",
    "parse_int",
    "pton",
    "service_name",
    "service_port",
]


@dataclass(frozen=True, slots=True)
class PackedAddress:
    """An address in network byte order, as ``inet_pton`` gives it."""

    family: int
    packed: bytes

    @property
    def family_name(self) -> str:
        return "AF_INET6" if self.family == socket.AF_INET6 else "AF_INET"

    @property
    def hex(self) -> str:
        return self.packed.hex()

    @property
    def bytes_text(self) -> str:
        """Dotted decimal bytes for IPv4, colon-separated hex bytes for IPv6."""
        if self.family == socket.AF_INET:
            return ".".join(str(b) for b in self.packed)
        return ":".join(f"{b:02x}" for b in self.packed)


def pton(text: str) -> PackedAddress:
    """``inet_pton``: IPv4 or IPv6 text to network-order bytes; :class:`UsageError` if neither."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return PackedAddress(family, socket.inet_pton(family, text))
        except (OSError, ValueError):
            continue
    raise UsageError(f"bad address {text!r}: expected an IPv4 (1.2.3.4) or IPv6 (::1) address")


def ntop(data: bytes | str) -> str:
    """``inet_ntop``: 4 or 16 network-order bytes (or their hex text) to address text."""
    if isinstance(data, str):
        digits = data.lower().removeprefix("0x").replace(":", "").replace(".", "").replace(" ", "")
        try:
            data = bytes.fromhex(digits)
        except ValueError:
            raise UsageError(f"bad hex {data!r}: expected 8 or 32 hex digits") from None
    if len(data) == 4:
        return socket.inet_ntop(socket.AF_INET, data)
    if len(data) == 16:
        return socket.inet_ntop(socket.AF_INET6, data)
    raise UsageError(f"bad packed address of {len(data)} bytes: expected 4 (IPv4) or 16 (IPv6)")


def parse_int(text: str, bits: int) -> int:
    """A decimal or ``0x`` hex value that fits in ``bits`` unsigned bits; :class:`UsageError` if not."""
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"bad value {text!r}: expected a decimal or 0x-hex integer") from None
    if value < 0:
        raise UsageError(
            f"bad value {text!r}: negative; expected an unsigned {bits}-bit value,"
            f" 0 to {(1 << bits) - 1}"
        )
    if not value < 1 << bits:
        raise UsageError(f"bad value {text!r}: expected 0 to {(1 << bits) - 1} for {bits} bits")
    return value


def _swap(value: int, size: int) -> int:
    return int.from_bytes(value.to_bytes(size, sys.byteorder), "big")


def hton16(value: int) -> int:
    """``htons``: the 16-bit value whose host-order bytes are ``value``'s network-order bytes."""
    return _swap(value, 2)


def hton32(value: int) -> int:
    """``htonl``."""
    return _swap(value, 4)


# Converting is its own inverse: ntoh and hton are the same swap (or no-op).
ntoh16 = hton16
ntoh32 = hton32


@dataclass(frozen=True, slots=True)
class ByteOrder:
    """What the classic union test shows: the bytes of a 16-bit 0x0102 as stored in memory."""

    order: str  # "little" or "big"
    memory: bytes

    @property
    def name(self) -> str:
        return "little-endian" if self.order == "little" else "big-endian"


class _ShortBytes(ctypes.Union):
    # The union from classic socket texts: write a short, read back its bytes.
    _fields_ = [("value", ctypes.c_uint16), ("bytes", ctypes.c_uint8 * 2)]


def byte_order() -> ByteOrder:
    """This machine's byte order, found by storing 0x0102 in a union and reading its bytes."""
    probe = _ShortBytes()
    probe.value = 0x0102
    memory = bytes(probe.bytes)
    return ByteOrder("big" if memory == b"\x01\x02" else "little", memory)


def service_port(name: str, proto: str | None = None) -> list[tuple[int, str]]:
    """``getservbyname`` for ``tcp`` and ``udp`` (or just ``proto``): ``[(port, proto), ...]``."""
    found = []
    for p in (proto,) if proto else ("tcp", "udp"):
        try:
            found.append((socket.getservbyname(name, p), p))
        except OSError:
            continue
    if not found:
        raise SockkitError(f"unknown service {name!r}" + (f" for {proto}" if proto else ""))
    return found


def service_name(port: int, proto: str | None = None) -> list[tuple[str, str]]:
    """``getservbyport``: ``[(name, proto), ...]`` for ``tcp``/``udp`` (or just ``proto``)."""
    found = []
    for p in (proto,) if proto else ("tcp", "udp"):
        try:
            found.append((socket.getservbyport(port, p), p))
        except (OSError, OverflowError):
            continue
    if not found:
        raise SockkitError(f"no service name known for port {port}")
    return found
