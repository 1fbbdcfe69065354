"""Relaying datagrams (UDP, unixgram) through a proxy's packet faults, on asyncio.

Each client address gets its own connected socket to the target, so replies
find their way back to the client that sent the request.  A mapping unused
for ``idle`` seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import TYPE_CHECKING, Any, cast

from sockkit._endpoint import format_sockaddr, open_connection
from sockkit._errors import SockkitError
from sockkit.relay._log import event
from sockkit.relay._packets import PacketFaults

if TYPE_CHECKING:
    from collections.abc import Callable

    from sockkit.relay._host import ProxyView

__all__ = ["DatagramRelay"]


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target; replies go back through the listener."""

    def __init__(self, relay: DatagramRelay, client: Any) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.used = time.monotonic()
        self.pending: list[bytes] = []  # datagrams that came before the transport
        self.opening: asyncio.Task[Any] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Selector and uvloop datagram transports don't all subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)
        for data in self.pending:
            self.transport.sendto(data)
        self.pending.clear()

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.sendto(data)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.used = time.monotonic()
        self.relay.forward("downstream", data, lambda d: self.relay.send_to_client(d, self.client))

    def error_received(self, exc: Exception) -> None:
        event(logging.INFO, f"relay {self.relay.proxy.upstream}: {exc}", event="error")


class DatagramRelay(asyncio.DatagramProtocol):
    """Forwards datagrams from the proxy's socket to its target and replies back."""

    def __init__(self, proxy: ProxyView, listener: socket.socket, idle: float = 60.0) -> None:
        self.proxy = proxy
        self.listener = listener
        self.idle = idle
        self.faults = {way: PacketFaults(proxy.rng) for way in ("upstream", "downstream")}
        self.upstreams: dict[Any, _Upstream] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._expiry: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # ride out bursts; the kernel caps it at rmem_max
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        await loop.create_datagram_endpoint(lambda: self, sock=self.listener)
        self._expiry = loop.call_later(min(self.idle, 1.0), self._expire)

    def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for upstream in self.upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
        self.upstreams.clear()
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        upstream = self.upstreams.get(addr)
        if upstream is None:
            try:
                upstream = self._open_upstream(addr)
            except SockkitError as exc:
                peer = format_sockaddr(self.listener.family, addr)
                event(logging.WARNING, f"refused {peer}: {exc}", event="refused", peer=peer)
                return
        upstream.used = time.monotonic()
        self.forward("upstream", data, upstream.send)

    def forward(self, way: str, data: bytes, send: Callable[[bytes], None]) -> None:
        """Send ``data`` with ``send`` after the packet faults of direction ``way``."""
        toxics = [
            t
            for t in self.proxy.toxics
            if t.stream == way and (t.toxicity >= 1 or self.proxy.rng.random() < t.toxicity)
        ]
        loop = asyncio.get_running_loop()
        for delay, datagram in self.faults[way].apply(data, toxics):
            self.proxy.count(way, len(datagram))
            if delay:
                loop.call_later(delay, send, datagram)
            else:
                send(datagram)

    def send_to_client(self, data: bytes, client: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, client)

    def _open_upstream(self, client: Any) -> _Upstream:
        sock = open_connection(self.proxy.upstream, timeout=5)
        sock.setblocking(False)
        upstream = _Upstream(self, client)
        loop = asyncio.get_running_loop()
        upstream.opening = loop.create_task(
            loop.create_datagram_endpoint(lambda: upstream, sock=sock)
        )
        self.upstreams[client] = upstream
        self.proxy.connections += 1
        peer = format_sockaddr(self.listener.family, client)
        event(logging.INFO, f"opened {peer} -> {self.proxy.upstream}", event="opened", peer=peer)
        return upstream

    def _expire(self) -> None:
        now = time.monotonic()
        for client, upstream in list(self.upstreams.items()):
            if now - upstream.used > self.idle:
                del self.upstreams[client]
                if upstream.transport is not None:
                    upstream.transport.close()
        self._expiry = asyncio.get_running_loop().call_later(min(self.idle, 1.0), self._expire)
