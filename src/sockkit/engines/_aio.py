"""The asyncio and uvloop engines: one event loop, one :class:`~._aio_protocol.Conn` per connection.

Both engines are the same code on a different loop: asyncio's selector loop,
or uvloop's libuv loop (sockkit's default engine).  Under uvloop a plain
listener gets ``loop.create_server`` / ``create_unix_server`` on a duplicate
of its socket (libuv's accept loop is C); TLS listeners under uvloop, and
every listener under asyncio, are accepted by :class:`~._aio_accept.Acceptor`
(why: see that module).  The connections are :class:`~._aio_protocol.Conn`
objects (see that module for the per-connection design and the hot path).

What the loops already do, and we rely on:

- TCP_NODELAY is set on every accepted TCP socket (asyncio's selector
  transport and uvloop's TCP transport both do it).
- EMFILE/ENFILE in accept never busy-loops.  libuv accepts into a reserved
  descriptor and drops the connection, so the peer sees a reset and the
  loop goes on.  asyncio 3.11's own accept loop mishandles it (see
  :mod:`._aio_accept`), so the asyncio engine accepts with
  :class:`~._aio_accept.Acceptor` instead: one log line, a back-off, no spin.
  (Both are checked by measuring the server's CPU time while it is out of
  descriptors: see ``tests/engines/test_aio_engine.py``.)

Stop: the stop signal's fd is watched with ``add_reader``.  Once it is
readable the servers are closed (accepting stops at once) and the drain of
:mod:`._lifecycle` runs: listeners closed, open connections given up to
``limits.drain_timeout`` seconds (less after a second stop), the rest aborted.
Because uvloop closes the socket a server was created from, its server is
given a ``dup()`` of the listening socket: the listener itself stays open
for the server that owns it to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Protocol

from sockkit.engines._aio_accept import Acceptor
from sockkit.engines._aio_protocol import Conn, Door, Hub, protocol_factory
from sockkit.engines._aio_proxy import proxied_protocol_factory
from sockkit.engines._base import Engine
from sockkit.engines._contract import CloseReason, ServeContext, StreamListener
from sockkit.engines._lifecycle import Drain

__all__ = ["AsyncioEngine", "UvloopEngine"]

# struct tcp_info: eight u8 fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked.  On a listening socket Linux reports the accept backlog
# in tcpi_sacked.
_TCP_INFO_BACKLOG = struct.Struct("8x5xI")


def _backlog(sock: socket.socket) -> int:
    """The backlog ``sock`` listens with, so re-listening (the loops do) keeps it.

    The loops call ``listen()`` again on the socket they are given; without
    this they would silently change ``--backlog`` to 100.  Unix sockets have
    no way to read it back, so they get SOMAXCONN (the kernel caps it anyway).
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 64)
            backlog = int(_TCP_INFO_BACKLOG.unpack_from(info)[0])
            if backlog > 0:
                return backlog
    return socket.SOMAXCONN


class _Listening(Protocol):
    """What serving one listener gives back: an ``asyncio.Server`` or an :class:`Acceptor`."""

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class AsyncioEngine(Engine):
    """Serves every connection on one asyncio event loop (the selector loop)."""

    name = "asyncio"

    def _loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        # Explicit, so an installed event-loop policy cannot swap the loop.
        return asyncio.SelectorEventLoop

    def run(self, ctx: ServeContext) -> None:
        with asyncio.Runner(loop_factory=self._loop_factory()) as runner:
            runner.run(_serve(ctx, self._listen))

    async def _listen(self, hub: Hub, listener: StreamListener) -> _Listening:
        """Start accepting on ``listener``; the listening socket stays the server's to close."""
        return _accept(hub, listener)


class UvloopEngine(AsyncioEngine):
    """Serves every connection on one uvloop (libuv) event loop: sockkit's default engine."""

    name = "uvloop"

    @classmethod
    def available(cls) -> bool:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return False
        return True

    def _loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory

    async def _listen(self, hub: Hub, listener: StreamListener) -> _Listening:
        # libuv's accept loop is C and copes with EMFILE; it needs a socket it
        # may close, so it gets a duplicate and the server keeps ``sock``.
        if listener.tls is not None:
            return _accept(hub, listener)  # admission before the handshake: see _aio_accept
        sock = listener.sock
        door = _door(hub, listener)
        factory = _protocol(hub, door)
        own = sock.dup()
        try:
            if sock.family == socket.AF_UNIX:
                return await hub.loop.create_unix_server(factory, sock=own, backlog=_backlog(sock))
            return await hub.loop.create_server(factory, sock=own, backlog=_backlog(sock))
        except BaseException:
            own.close()
            raise


def _door(hub: Hub, listener: StreamListener) -> Door:
    return Door(hub, listener.factory, listener.sock.family, str(listener.endpoint), listener.tls)


def _protocol(hub: Hub, door: Door) -> Callable[[], Conn]:
    """The protocol factory for a listener: with ``--proxy-protocol``, one that reads the header."""
    proxy = hub.admission.proxies
    if proxy is None:
        return protocol_factory(door)
    return proxied_protocol_factory(door, proxy)  # type: ignore[arg-type]


def _accept(hub: Hub, listener: StreamListener) -> Acceptor:
    door = _door(hub, listener)
    acceptor = Acceptor(door, listener.sock, _protocol(hub, door), str(listener.endpoint))
    acceptor.start()
    return acceptor


async def _serve(
    ctx: ServeContext, listen: Callable[[Hub, StreamListener], Awaitable[_Listening]]
) -> None:
    loop = asyncio.get_running_loop()
    hub = Hub(loop, ctx.limits, ctx.access, ctx.log, ctx.proxy)
    servers: list[_Listening] = []
    #: Set on every stop request (the first begins the drain, a second ends it).
    stop_seen = asyncio.Event()

    def on_stop() -> None:
        ctx.stop.consume()  # level-triggered: it would fire for ever
        stop_seen.set()

    loop.add_reader(ctx.stop.fd, on_stop)
    signal_fd = ctx.stop.signal_fd
    if signal_fd >= 0:  # a signal's handler runs once the loop wakes
        loop.add_reader(signal_fd, ctx.stop.drain_signals)
    hub.start_ticking()
    try:
        for listener in ctx.listeners:
            servers.append(await listen(hub, listener))
        await stop_seen.wait()
    finally:
        for server in servers:
            server.close()
        drain = Drain(ctx)
        drain.begin(hub.count)
        await _drain(hub, drain, stop_seen)
        loop.remove_reader(ctx.stop.fd)
        if signal_fd >= 0:
            loop.remove_reader(signal_fd)
        hub.stop_ticking()
        for server in servers:
            await server.wait_closed()


async def _drain(hub: Hub, drain: Drain, stop_seen: asyncio.Event) -> None:
    """Let open connections end while ``drain`` allows, then abort the rest and wait for them."""
    hub.stopping = True
    while hub.count:
        left = drain.remaining()
        if left <= 0:
            break
        hub.drained = drained = hub.loop.create_future()
        stop_seen.clear()
        again = asyncio.ensure_future(stop_seen.wait())
        await asyncio.wait({drained, again}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        again.cancel()
    for conn in hub.conns():
        conn.abort(CloseReason.SERVER_STOPPING)
    # Aborted transports report connection_lost on a later loop turn.
    for _ in range(100):
        if not hub.count:
            break
        await asyncio.sleep(0.01)
