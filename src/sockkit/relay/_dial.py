"""Connecting to a relay's target without blocking the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from sockkit._endpoint import Endpoint, format_sockaddr
from sockkit._errors import SockkitError, translate_os_error

__all__ = ["dial"]


async def dial(target: Endpoint, timeout: float) -> socket.socket:
    """A connected, non-blocking stream socket to ``target``.

    Every address the name gives is tried in turn, each for at most ``timeout``
    seconds.  Raises :class:`SockkitError` (refused, unreachable, timed out).
    """
    loop = asyncio.get_running_loop()
    if target.is_unix:
        path = target.path or ""
        addrs: list[tuple[int, Any]] = [
            (socket.AF_UNIX, b"\0" + path[1:].encode() if path.startswith("@") else path)
        ]
    else:
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise translate_os_error(exc, "resolve", str(target)) from None
        addrs = [(info[0], info[4]) for info in infos]
    last: SockkitError | None = None
    for family, addr in addrs:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, addr), timeout)
        except (TimeoutError, OSError) as exc:
            sock.close()
            where = str(target) if family == socket.AF_UNIX else format_sockaddr(family, addr)
            last = translate_os_error(exc, "connect to", where)
            continue
        if family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    assert last is not None
    raise last
