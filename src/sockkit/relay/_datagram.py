"""Relaying datagrams (UDP, unixgram) with latency and loss, on asyncio.

Each client address gets its own connected socket to the target, so replies
find their way back to the client that caused them.  A mapping unused for
``idle`` seconds is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from typing import Any, cast

from sockkit._endpoint import Endpoint, format_sockaddr, open_connection
from sockkit._errors import SockkitError
from sockkit.relay._faults import Faults

__all__ = ["DatagramRelay"]

log = logging.getLogger("sockkit.relay")


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target; replies go back through the listener."""

    def __init__(self, relay: DatagramRelay, client: Any) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.used = time.monotonic()
        self.pending: list[bytes] = []  # datagrams that came before the socket was ready
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
        self.relay.forward(data, lambda d: self.relay.send_to_client(d, self.client))

    def error_received(self, exc: Exception) -> None:
        log.info("relay %s: %s", self.relay.target, exc)


class DatagramRelay(asyncio.DatagramProtocol):
    """Forwards datagrams from the listening socket to ``target`` and replies back."""

    def __init__(
        self, listener: socket.socket, target: Endpoint, faults: Faults, idle: float = 60.0
    ) -> None:
        self.listener = listener
        self.target = target
        self.faults = faults
        self.idle = idle
        self.rng = random.Random()
        self.upstreams: dict[Any, _Upstream] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.forwarded = 0
        self.dropped = 0

    async def serve(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, sock=self.listener)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(self.idle, 1.0))
            self._expire()
        for upstream in self.upstreams.values():
            if upstream.transport is not None:
                upstream.transport.close()
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
                log.warning("relay %s -> %s failed: %s", addr, self.target, exc)
                return
        upstream.used = time.monotonic()
        self.forward(data, upstream.send)

    def forward(self, data: bytes, send: Any) -> None:
        """Send ``data`` with ``send`` after the faults: maybe dropped, maybe late."""
        if self.faults.drop and self.rng.random() < self.faults.drop:
            self.dropped += 1
            return
        self.forwarded += 1
        delay = self.faults.delay(self.rng)
        if delay:
            asyncio.get_running_loop().call_later(delay, send, data)
        else:
            send(data)

    def send_to_client(self, data: bytes, client: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, client)

    def _open_upstream(self, client: Any) -> _Upstream:
        sock = open_connection(self.target, timeout=5)
        sock.setblocking(False)
        upstream = _Upstream(self, client)
        loop = asyncio.get_running_loop()
        # The socket is already connected, so the endpoint is ready at once.
        upstream.opening = loop.create_task(
            loop.create_datagram_endpoint(lambda: upstream, sock=sock)
        )
        self.upstreams[client] = upstream
        log.info("open %s -> %s", format_sockaddr(self.listener.family, client), self.target)
        return upstream

    def _expire(self) -> None:
        now = time.monotonic()
        for client, upstream in list(self.upstreams.items()):
            if now - upstream.used > self.idle:
                del self.upstreams[client]
                if upstream.transport is not None:
                    upstream.transport.close()
