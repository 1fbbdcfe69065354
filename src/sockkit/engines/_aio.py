"""The asyncio and uvloop engines: one event loop, one :class:`~._aio_protocol.Conn` per connection.

Both engines are the same code on a different loop: asyncio's selector loop,
or uvloop's libuv loop (sockkit's default engine).  Each listener gets a
``loop.create_server`` / ``create_unix_server`` on a duplicate of its socket;
the connections are :class:`~._aio_protocol.Conn` objects (see that module
for the per-connection design and the hot path).

What the loops already do, and we rely on:

- TCP_NODELAY is set on every accepted TCP socket (asyncio's selector
  transport and uvloop's TCP transport both do it).
- EMFILE/ENFILE in accept never busy-loops: asyncio stops watching that
  listener and retries after one second (``ACCEPT_RETRY_DELAY``); libuv
  accepts into a reserved descriptor and drops the connection, so the peer
  sees a reset and the loop goes on.  (Checked by measuring the server's CPU
  time while it is out of descriptors: see ``test_aio_engine.py``.)  asyncio
  reports every failed accept with a traceback -- up to a hundred a second --
  so :func:`_quiet_accept_errors` turns those into one warning a minute.

Stop: the stop signal's fd is watched with ``add_reader``.  Once it is
readable the servers are closed (accepting stops at once), open connections
get up to ``limits.drain_timeout`` seconds, then the rest are aborted.
Because the loops close the socket a server was created from, each server is
given a ``dup()`` of the listening socket: the listener itself stays open
for the server that owns it to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from typing import Any

from sockkit.engines._aio_protocol import Door, Hub, protocol_class
from sockkit.engines._base import Engine
from sockkit.server._context import ServeContext, StreamListener

__all__ = ["AsyncioEngine", "UvloopEngine"]

# struct tcp_info: eight u8 fields, then u32 rto, ato, snd_mss, rcv_mss,
# unacked, sacked.  On a listening socket Linux reports the accept backlog
# in tcpi_sacked.
_TCP_INFO_BACKLOG = struct.Struct("8x5xI")
_SWEEP_MAX = 1.0
#: How often asyncio's "out of system resource" accept failures are logged.
_EXHAUSTED_LOG_EVERY = 60.0

_logger = logging.getLogger("sockkit.engines")


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


class AsyncioEngine(Engine):
    """Serves every connection on one asyncio event loop (the selector loop)."""

    name = "asyncio"

    def _loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        # Explicit, so an installed event-loop policy cannot swap the loop.
        return asyncio.SelectorEventLoop

    def run(self, ctx: ServeContext) -> None:
        with asyncio.Runner(loop_factory=self._loop_factory()) as runner:
            runner.run(_serve(ctx))


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


async def _listen(hub: Hub, listener: StreamListener) -> asyncio.Server:
    sock = listener.sock
    door = Door(hub, listener.factory, sock.family, str(listener.endpoint), listener.tls)
    factory = protocol_class(door)
    own = sock.dup()  # the loop closes this one; the server closes ``sock``
    try:
        if sock.family == socket.AF_UNIX:
            return await hub.loop.create_unix_server(factory, sock=own, backlog=_backlog(sock))
        return await hub.loop.create_server(factory, sock=own, backlog=_backlog(sock))
    except BaseException:
        own.close()
        raise


def _quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Log asyncio's accept failures from EMFILE & co. once a minute, one line, no traceback."""
    last_logged = -_EXHAUSTED_LOG_EVERY

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        nonlocal last_logged
        if "out of system resource" not in str(context.get("message", "")):
            loop.default_exception_handler(context)
            return
        now = loop.time()
        if now - last_logged >= _EXHAUSTED_LOG_EVERY:
            last_logged = now
            sock = context.get("socket")
            where = sock.getsockname() if sock is not None else "?"
            exc = context.get("exception")
            reason = getattr(exc, "strerror", None) or exc
            _logger.warning("cannot accept on %s: %s; retrying every second", where, reason)

    loop.set_exception_handler(handler)


async def _serve(ctx: ServeContext) -> None:
    loop = asyncio.get_running_loop()
    _quiet_accept_errors(loop)
    hub = Hub(loop, ctx.limits, ctx.access, ctx.log)
    servers: list[asyncio.Server] = []
    stop_requested: asyncio.Future[None] = loop.create_future()

    def on_stop() -> None:
        loop.remove_reader(ctx.stop.fd)  # level-triggered: it would fire forever
        if not stop_requested.done():
            stop_requested.set_result(None)

    loop.add_reader(ctx.stop.fd, on_stop)
    sweeper = _Sweeper(hub)
    sweeper.start()
    try:
        for listener in ctx.listeners:
            servers.append(await _listen(hub, listener))
        await stop_requested
    finally:
        loop.remove_reader(ctx.stop.fd)
        for server in servers:
            server.close()
        await _drain(hub, ctx.limits.drain_timeout)
        sweeper.cancel()
        for server in servers:
            await server.wait_closed()


async def _drain(hub: Hub, timeout: float) -> None:
    """Give open connections ``timeout`` seconds to end, then abort the rest and wait for them."""
    hub.stopping = True
    if hub.conns:
        hub.drained = hub.loop.create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(hub.drained), timeout)
    for conn in list(hub.conns):
        conn.abort("stopped")
    if hub.handshakes:
        await asyncio.gather(*hub.handshakes, return_exceptions=True)
    # Aborted transports report connection_lost on a later loop turn.
    for _ in range(100):
        if not hub.conns:
            break
        await asyncio.sleep(0.01)


class _Sweeper:
    """One coarse periodic check of every connection's timeouts -- no timer per connection.

    Runs every ``min(shortest timeout / 2, 1 s)``, so a timeout fires between
    its value and its value plus one interval late.
    """

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        limits = hub.limits
        timeouts = [t for t in (limits.idle_timeout, limits.send_timeout) if t is not None]
        self._interval = min(min(timeouts) / 2, _SWEEP_MAX) if timeouts else None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._interval is not None:
            self._handle = self._hub.loop.call_later(self._interval, self._sweep)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _sweep(self) -> None:
        hub = self._hub
        now = hub.loop.time()
        for conn in list(hub.conns):
            conn.check(now, hub.limits)
        self.start()
