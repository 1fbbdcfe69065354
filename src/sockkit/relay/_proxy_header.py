"""The PROXY protocol header a relay sends its target first (``--send-proxy v1|v2``).

Version 1 is one text line, ``PROXY TCP4 SRC DST SPORT DPORT\\r\\n`` (``TCP6``,
or ``PROXY UNKNOWN\\r\\n`` for non-IP peers); version 2 is the binary form: the
12-byte signature, version/command ``0x21`` (PROXY), family/protocol, the
length, then the addresses.  ``source`` is the client as the relay saw it,
``destination`` the address it connected to on the relay.
"""

from __future__ import annotations

import socket
import struct

__all__ = ["V2_SIGNATURE", "proxy_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def _ip(addr: object) -> tuple[int, str, int] | None:
    if not isinstance(addr, tuple) or len(addr) < 2:
        return None
    host = str(addr[0]).split("%", 1)[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return family, host, int(addr[1])


def proxy_header(version: str, source: object, destination: object) -> bytes:
    """The header for a connection from ``source`` to ``destination`` (sockaddrs)."""
    src, dst = _ip(source), _ip(destination)
    if src is not None and dst is not None and src[0] != dst[0]:
        # One side IPv4, the other IPv6: state both as IPv6 (v4-mapped).
        src, dst = (
            (socket.AF_INET6, f"::ffff:{a[1]}" if a[0] == socket.AF_INET else a[1], a[2])
            for a in (src, dst)
        )
    if version == "v1":
        if src is None or dst is None:
            return b"PROXY UNKNOWN\r\n"
        proto = "TCP4" if src[0] == socket.AF_INET else "TCP6"
        return f"PROXY {proto} {src[1]} {dst[1]} {src[2]} {dst[2]}\r\n".encode()
    if src is None or dst is None:
        return V2_SIGNATURE + struct.pack("!BBH", 0x20, 0x00, 0)  # LOCAL, no addresses
    family, size = (0x11, 4) if src[0] == socket.AF_INET else (0x21, 16)
    body = (
        socket.inet_pton(src[0], src[1])
        + socket.inet_pton(dst[0], dst[1])
        + struct.pack("!HH", src[2], dst[2])
    )
    assert len(body) == 2 * size + 4
    return V2_SIGNATURE + struct.pack("!BBH", 0x21, family, len(body)) + body
