"""The PROXY protocol header a relay sends its target first (``--send-proxy v1|v2``).

The headers are built by sockkit's one PROXY protocol module (the same one
``serve --proxy-protocol`` reads with); this only turns the relay's socket
addresses into what it takes: ``(host, port)`` for IP, a path for Unix (v2
only; v1 says ``UNKNOWN`` for anything but TCP over IP).
"""

from __future__ import annotations

import os

from sockkit._proxy_protocol import build_v1, build_v2

__all__ = ["proxy_header"]


def _address(sockaddr: object) -> tuple[str, int] | str | None:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(sockaddr[0]), int(sockaddr[1])
    if isinstance(sockaddr, bytes):
        sockaddr = "@" + sockaddr[1:].decode() if sockaddr[:1] == b"\0" else os.fsdecode(sockaddr)
    if isinstance(sockaddr, str) and sockaddr:
        return "@" + sockaddr[1:] if sockaddr.startswith("\0") else sockaddr
    return None  # an unnamed Unix client


def proxy_header(version: str, source: object, destination: object) -> bytes:
    """The ``v1`` or ``v2`` header for a client at ``source`` reaching us at ``destination``."""
    src, dst = _address(source), _address(destination)
    if version == "v1":
        ip_src = src if isinstance(src, tuple) else None
        ip_dst = dst if isinstance(dst, tuple) else None
        return build_v1(ip_src, ip_dst)
    return build_v2(src, dst)
