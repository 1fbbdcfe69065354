"""The asyncio Protocol that joins one transport to one :class:`~sockkit.services.Service`.

(Over 400 lines: the unlogged hot-path protocol and its counting variant are
kept side by side so the per-message differences stay visible.)

Callback order (asyncio's, see ``asyncio.protocols``)::

    connection_made → data_received* → [eof_received] → connection_lost
    pause_writing / resume_writing at any point in between

Every connection costs one :class:`Conn` (or :class:`CountedConn`) object with
``__slots__`` and nothing else: no per-connection dict, timer or task.  The
object itself is installed as the service's ``wakeup`` callable, so not even a
bound method is allocated for it.

The hot path is :meth:`Conn.data_received`: feed the service, write its answer,
and look at ``state``/``producing`` -- two attribute loads that are zero for an
echo.  Everything else (flow control, producing, half-close, closing, limits)
lives in methods that run only when one of those flags says so.

:class:`CountedConn` adds byte counters and a start time; the engine picks it
once per listener when the log is on or a timeout needs an activity measure, so
the common "no log, no timeouts" server pays nothing for them.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, ClassVar, cast

from sockkit._accept import TrustedProxies
from sockkit._endpoint import format_sockaddr
from sockkit.engines._contract import (
    AccessList,
    CloseReason,
    ConnectionLog,
    Limits,
    service_error,
)
from sockkit.engines._core import PartialInput
from sockkit.services._base import CLOSE, HALF_CLOSE, Service

__all__ = ["Conn", "CountedConn", "Door", "Hub", "protocol_class"]

# The base class's calls that do nothing a driver can't do cheaper itself:
# a service that keeps them is not called for them (see where each is used).
_BASE_CONNECTED = Service.connected
_BASE_EOF_RECEIVED = Service.eof_received
_BASE_CLOSED = Service.closed


#: Stands in for the service before :meth:`Conn.connection_made` and after ``closed``, so
#: the hot path reads ``self._service`` without a None check or a cast.
_NO_SERVICE = Service()


class Hub:
    """What every connection of one :meth:`Engine.run` shares."""

    __slots__ = (
        "access",
        "admission",
        "conns",
        "custom_water",
        "drained",
        "limits",
        "log",
        "loop",
        "stopping",
        "thread",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        access: AccessList,
        log: ConnectionLog,
        proxy: TrustedProxies | None = None,
    ) -> None:
        self.loop = loop
        #: The thread running ``loop`` (a Hub is made on it).
        self.thread = threading.get_ident()
        self.limits = limits
        self.access = access
        self.admission = limits.admission(access, proxy)
        self.log = log
        #: Every admitted connection: counted for
        #: ``max_conns``, swept for timeouts, closed at the end of a drain.
        self.conns: set[Conn] = set()
        #: asyncio and uvloop already default to 64 KiB / 16 KiB; only call
        #: ``set_write_buffer_limits`` per connection when the limits differ.
        self.custom_water = (limits.high_water, limits.low_water) != (64 * 1024, 16 * 1024)
        self.stopping = False
        #: Set by the drain once stopping: resolved when the last connection goes.
        self.drained: asyncio.Future[None] | None = None

    def forget(self, conn: Conn) -> None:
        conns = self.conns
        conns.discard(conn)
        if not conns and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)


class Door:
    """One listener's view: its service factory, TLS context and how to admit peers."""

    __slots__ = (
        "conns",
        "custom_water",
        "factory",
        "family",
        "gate",
        "hub",
        "local",
        "logs",
        "releases",
        "simple",
        "tls",
    )

    def __init__(
        self,
        hub: Hub,
        factory: Callable[[], Service],
        family: int,
        local: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.hub = hub
        self.factory = factory
        self.family = family
        self.local = local
        self.tls = tls
        self.conns = hub.conns
        self.logs = hub.log.enabled
        self.custom_water = hub.custom_water
        # Access rules apply to IP peers only (Unix peers are guarded by file
        # permissions); with neither rules nor max_conns admission is free.
        # TLS connections are admitted by the acceptor, before the handshake.
        unix = family == socket.AF_UNIX
        checks_access = not hub.access.open and not unix
        checks_uid = hub.admission.allow_uids is not None and unix
        #: Admitted peers are counted per address and must be released at the end.
        self.releases = hub.admission.per_ip is not None and not unix
        self.gate = (
            checks_access
            or checks_uid
            or self.releases
            or hub.limits.max_conns is not None
            or hub.admission.proxies is not None
        )
        self.simple = not (self.gate or tls or self.logs or self.custom_water)
        if tls is not None:
            self.gate = False

    def refusal(self, name: Any, pending: int = 0, sock: Any = None) -> str | None:
        """Why a peer at sockaddr ``name`` may not be served now, or None to serve it.

        ``pending`` counts connections accepted but not yet in ``conns`` (TLS
        handshakes under way), so ``max_conns`` holds for them too.
        """
        hub = self.hub
        return hub.admission.admit(name, len(hub.conns) + pending, sock)

    def peer(self, transport: asyncio.BaseTransport) -> str:
        name = transport.get_extra_info("peername")
        if name is None:
            return "(unknown)"
        return format_sockaddr(self.family, name)

    def admits(self, transport: asyncio.BaseTransport) -> bool:
        """Refuse (abort + ``log.refused``) and return False if the peer may not be served."""
        reason = self.refusal(
            transport.get_extra_info("peername"), 0, transport.get_extra_info("socket")
        )
        if reason is None:
            return True
        cast(asyncio.Transport, transport).abort()
        if self.hub.log.enabled:
            self.hub.log.refused(self.peer(transport), reason)
        return False


class Conn(asyncio.Protocol):
    """One connection: a transport driving a service by the Service call grammar.

    :func:`protocol_class` makes a subclass per listener with :attr:`_door` set,
    so the class itself is the protocol factory and construction runs no
    Python ``__init__``: the slots are filled in :meth:`connection_made`.
    """

    __slots__ = ("_eof", "_paused", "_service", "_transport")

    _door: ClassVar[Door]
    _transport: asyncio.Transport
    _service: Service

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._paused = self._eof = False
        door = self._door
        if door.simple:
            # No admission rules, TLS, log or custom water marks: the common
            # case, kept to the few steps every connection needs.
            door.conns.add(self)
            service = door.factory()
            self._service = service
            service.wakeup = self
            if type(service).connected is not _BASE_CONNECTED or service.state or service.producing:
                self._greet(service, None)
            return
        if door.gate and not door.admits(transport):
            self._service = _NO_SERVICE
            return
        door.conns.add(self)
        self._start(transport, None)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        service = self._service
        out = service.received(data)
        if out:
            try:
                self._transport.write(out)
            except RuntimeError:
                pass  # after write_eof(): returned after HALF_CLOSE, dropped as on every engine
        if service.state or service.producing:
            self._settle()

    def eof_received(self) -> bool:
        self._eof = True
        service = self._service
        if service is _NO_SERVICE:
            return False
        if type(service).eof_received is _BASE_EOF_RECEIVED and service.close_reason is None:
            # The base answer is "close once flushed": exactly what returning
            # False makes the transport do, without the call.
            return False
        out = service.eof_received()
        if out:
            self._send(out)
        if service.state == CLOSE and service.close_reason is None and not service.producing:
            return False  # the usual end: the transport closes itself once flushed
        self._settle()
        # Returning True keeps a plain transport half-open for a service that
        # still sends; TLS transports cannot half-close and warn if asked to.
        return self._door.tls is None

    def pause_writing(self) -> None:
        self._paused = True
        transport = self._transport
        transport.pause_reading()
        if transport.get_write_buffer_size() > self._door.hub.limits.output_cap:
            self.abort(CloseReason.OUTPUT_CAP)

    def resume_writing(self) -> None:
        self._paused = False
        transport = self._transport
        if transport.is_closing():
            return
        if not self._eof:
            transport.resume_reading()
        if self._service.producing:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        service = self._service
        door = self._door
        if service is not _NO_SERVICE:
            # From here on a late wakeup() finds _NO_SERVICE and does nothing.
            self._service = _NO_SERVICE
            if type(service).closed is not _BASE_CLOSED:  # the base one does nothing
                service.closed()
            if door.logs:
                self._logged_close(exc)
            if door.releases:
                door.hub.admission.release(self._transport.get_extra_info("peername"))
        conns = door.conns
        conns.discard(self)
        if not conns:
            door.hub.forget(self)  # may end a drain

    # -- wakeup: the object is the service's wakeup callable ----------------

    def __call__(self) -> None:
        """``Service.wakeup``: safe from any thread; pumps on the loop's next turn."""
        hub = self._door.hub
        if threading.get_ident() == hub.thread:
            # Another connection's callback (a chat line): no need to wake
            # the loop through its self-pipe.
            hub.loop.call_soon(self._woken)
        else:
            hub.loop.call_soon_threadsafe(self._woken)

    def _woken(self) -> None:
        if self._service is not _NO_SERVICE and not self._transport.is_closing():
            self._settle()

    # -- slow paths ----------------------------------------------------------

    def _start(self, transport: asyncio.Transport, peer: str | None) -> None:
        """Serve on ``transport`` (TLS: after the handshake): make the service, greet."""
        door = self._door
        self._transport = transport
        if door.custom_water:
            limits = door.hub.limits
            transport.set_write_buffer_limits(limits.high_water, limits.low_water)
        service = door.factory()
        self._service = service
        service.wakeup = self
        # (Copying the class defaults of state/producing onto the instance
        # would make the hot path's loads ~25 ns cheaper each, but costs
        # ~170 ns per connection: a loss for short connections.)
        if door.logs:
            if peer is None:
                peer = door.peer(transport)
            self._opened(peer)
        self._greet(service, peer)

    def _greet(self, service: Service, peer: str | None) -> None:
        """Call ``connected`` unless it is the base one (which ignores the peer, says nothing)."""
        if type(service).connected is not _BASE_CONNECTED:
            if peer is None:
                peer = self._door.peer(self._transport)
            out = service.connected(peer)
            if out:
                self._send(out)
        if service.state or service.producing:
            self._settle()

    def _opened(self, peer: str) -> None:
        self._door.hub.log.opened(peer, self._door.local)

    def _logged_close(self, exc: Exception | None) -> None:
        """Only :class:`CountedConn` logs; :func:`protocol_class` picks it when the log is on."""

    def _send(self, out: bytes) -> None:
        transport = self._transport
        try:
            transport.write(out)
        except RuntimeError:
            return  # after write_eof(): returned after HALF_CLOSE, dropped as on every engine
        if self._paused and transport.get_write_buffer_size() > self._door.hub.limits.output_cap:
            self.abort(CloseReason.OUTPUT_CAP)

    def _settle(self) -> None:
        """Act on ``state`` and ``producing`` after a service call."""
        service = self._service
        transport = self._transport
        if service is _NO_SERVICE or transport.is_closing():
            return
        state = service.state
        if state == CLOSE:
            self._reason(service.close_reason)
            transport.close()  # flushes pending output first
            return
        if state == HALF_CLOSE:
            self._half_close()
            return
        if service.producing:
            if not self._paused:
                self._pump()
        elif self._eof:
            # The peer is done and the service has nothing more to hand out.
            transport.close()

    def _half_close(self) -> None:
        """Shut down our sending side once output is flushed; close once both sides are done."""
        transport = self._transport
        if self._eof or not transport.can_write_eof():
            # Both directions done -- or TLS, which asyncio cannot half-close:
            # ending cleanly beats leaving the peer waiting for an EOF.
            transport.close()
        else:
            transport.write_eof()  # flushes first; idempotent

    def _pump(self) -> None:
        """Call ``produce`` until the transport pauses, yielding to others every high-water."""
        service = self._service
        transport = self._transport
        high = self._door.hub.limits.high_water
        budget = high
        while service.producing and not self._paused and budget > 0:
            if transport.is_closing():
                return
            room = high - transport.get_write_buffer_size()
            out = service.produce(max(1, min(room, budget)))
            if out:
                budget -= len(out)
                self._send(out)
            if service.state:
                self._settle()
                return
            if not out:
                return  # nothing for now; the service calls wakeup when it has more
        if service.producing and not self._paused:
            # The socket took everything at once: let other connections run first.
            self._door.hub.loop.call_soon(self._woken)
        elif not service.producing and self._eof:
            self._settle()

    def _reason(self, reason: str | None) -> None:
        """Remember why we close; only :class:`CountedConn` keeps it (for the log)."""

    def abort(self, reason: str) -> None:
        """Drop the connection now (RST), discarding pending output."""
        self._reason(reason)
        self._transport.abort()

    def check(self, now: float, limits: Limits) -> None:
        """The periodic sweep's look at this connection; only counted connections have timeouts."""


class CountedConn(Conn):
    """A :class:`Conn` that counts bytes, for the log and the idle/send timeouts."""

    __slots__ = (
        "_close_reason",
        "_idle_mark",
        "_idle_since",
        "_line",
        "_nin",
        "_nout",
        "_peer",
        "_send_mark",
        "_send_since",
        "_started",
    )

    def __init__(self) -> None:
        door = self._door
        self._nin = 0
        self._nout = 0
        now = door.hub.loop.time()
        self._started = now
        self._idle_mark = 0  # a peer silent from the start is timed from its start
        self._idle_since = now
        self._send_mark: tuple[int, int] = (-1, -1)
        self._send_since = now
        self._peer = ""
        self._close_reason: str | None = None
        timeout = door.hub.limits.line_timeout
        self._line = PartialInput(timeout) if timeout is not None else None

    def data_received(self, data: bytes) -> None:
        self._nin += len(data)
        service = self._service
        out = service.received(data)
        if self._line is not None:
            self._line.seen(service, self._door.hub.loop.time())
        if out:
            self._send(out)
        if service.state or service.producing:
            self._settle()

    def _send(self, out: bytes) -> None:
        self._nout += len(out)
        super()._send(out)

    def _opened(self, peer: str) -> None:
        self._peer = peer
        super()._opened(peer)

    def _reason(self, reason: str | None) -> None:
        if reason is not None and self._close_reason is None:
            self._close_reason = reason

    def _logged_close(self, exc: Exception | None) -> None:
        log = self._door.hub.log
        reason = self._close_reason
        if reason is None and exc is not None:
            # A transport reports a socket error as an OSError; anything else
            # came out of the service (the loop caught it in a callback).
            if isinstance(exc, OSError):
                reason = str(exc) or type(exc).__name__
            else:
                reason = service_error(exc)
        duration = self._door.hub.loop.time() - self._started
        log.closed(self._peer, self._nin, self._nout, duration, reason)

    def check(self, now: float, limits: Limits) -> None:
        transport = self._transport
        if transport.is_closing() and not transport.get_write_buffer_size():
            return
        moved = self._nin + self._nout
        if moved != self._idle_mark:
            self._idle_mark = moved
            self._idle_since = now
        elif limits.idle_timeout is not None and now - self._idle_since >= limits.idle_timeout:
            self.abort(CloseReason.IDLE_TIMEOUT)
            return
        if self._line is not None and self._line.overdue(now):
            self.abort(CloseReason.LINE_TIMEOUT)
            return
        pending = transport.get_write_buffer_size()
        if pending > limits.output_cap:
            self.abort(CloseReason.OUTPUT_CAP)
            return
        if limits.send_timeout is None:
            return
        mark = (self._nout, pending)
        if not pending or mark != self._send_mark:
            self._send_mark = mark
            self._send_since = now
        elif now - self._send_since >= limits.send_timeout:
            self.abort(CloseReason.SEND_TIMEOUT)


def protocol_class(door: Door) -> type[Conn]:
    """The protocol factory for ``door``'s listener: a :class:`Conn` subclass bound to it.

    :class:`CountedConn` when the log is on or a timeout needs an activity
    measure; otherwise the plain :class:`Conn`, whose hot path counts nothing.
    """
    limits = door.hub.limits
    counted = (
        door.logs
        or limits.idle_timeout is not None
        or limits.send_timeout is not None
        or limits.line_timeout is not None
    )
    base = CountedConn if counted else Conn
    return type(base.__name__, (base,), {"__slots__": (), "_door": door})
