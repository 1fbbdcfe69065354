"""The asyncio/uvloop pump: one Protocol per connection, pumped around its connection core.

(Over 400 lines: the protocol, the hub's ring and timer and the listener's
admission read one another's slots, so they are kept in one module.)

A :class:`Conn` is both a core (:class:`~sockkit.engines._core.ConnectionRules`,
its limits on the per-listener class) and an ``asyncio.Protocol``: one object
per connection, no task, timer or dict.  The rules -- output buffer, water
marks, cap, deadlines, half-close order, close reasons -- are the core's;
this module maps asyncio's callbacks onto the core's calls::

    connection_made          -->  start(peer)          (when the service greets)
    data_received(data)      -->  receive(data)        (echo inlined: see below)
    eof_received()           -->  receive_eof()
    resume_writing()         -->  writable: what data_to_send() gives is written
    pause_writing()          -->  not writable: output stays in the core
    one loop timer (Hub)     -->  tick(now) for every connection
    the core ends            -->  transport.close() (finish) / transport.abort() (abort)

The transport plays the socket: it takes every write, and its own buffer
(64 KiB before it says ``pause_writing``) is what the kernel's socket buffer
is to the reactor.  Once paused nothing more is written to it; output waits
in the core, where the high-water pause, the output cap and the send
deadline apply.  A reply longer than 64 KiB always goes through the core,
so the cap sees it.

The hot path, :meth:`Conn.data_received`, is the echo case inlined: when the
core holds nothing and the transport takes writes, the reply is written at
once; anything else (waiting output, a state change, a producing service)
goes to the core.  :class:`TrackedConn` adds the byte counts on that path,
the log record and the deadline marks; the engine picks it per listener when
the log or a deadline is on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar, cast

from sockkit._accept import TrustedProxies
from sockkit._endpoint import format_sockaddr
from sockkit._errors import translate_os_error
from sockkit.engines._contract import AccessList, ConnectionLog, Limits, service_error
from sockkit.engines._core import ConnectionRules, EndOfStream, tick_interval
from sockkit.services._base import Service

__all__ = ["Conn", "Door", "Hub", "TrackedConn", "protocol_factory"]

_log = logging.getLogger("sockkit.engines")

# The base class's calls that do nothing a pump can't do cheaper itself.
_BASE_CONNECTED = Service.connected
_BASE_EOF_RECEIVED = Service.eof_received
_BASE_CLOSED = Service.closed

#: The service of a refused connection, and of one whose ``closed`` was called.
_NO_SERVICE = Service()

#: The longest reply the hot path writes itself: what the transport takes
#: before it says pause_writing (its default high-water mark).  A longer one
#: goes through the core, so the output cap sees it.
_TRANSPORT_TAKES = 64 * 1024

# Conn._writing: how output reaches the transport (0 is the hot path's "write it yourself").
#: The core holds nothing and the transport takes writes: the hot path writes a reply itself.
_DIRECT = 0
#: The core holds output (or the service has finished sending): replies go to the core.
_THROUGH_CORE = 1
#: The transport said pause_writing: output waits in the core until resume_writing.
_BLOCKED = 2


class Hub:
    """What every connection of one :meth:`Engine.run` shares."""

    __slots__ = (
        "access",
        "admission",
        "count",
        "drained",
        "limits",
        "log",
        "loop",
        "ring",
        "stopping",
        "sweep",
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
        #: Every admitted connection (counted for ``max_conns``, ticked, closed at
        #: the end of a drain) is on a ring through its ``_prev``/``_next``:
        #: 16 bytes a connection, where a set costs 30-65.
        self.ring: Conn = object.__new__(Conn)
        self.ring._prev = self.ring._next = self.ring
        self.count = 0
        self.stopping = False
        #: Set by the drain once stopping: resolved when the last connection goes.
        self.drained: asyncio.Future[None] | None = None
        self.sweep: asyncio.TimerHandle | None = None

    def add(self, conn: Conn) -> None:
        """``conn`` is admitted: on the ring (:meth:`forget` takes it off)."""
        ring = self.ring
        last = conn._prev = ring._prev
        conn._next = ring
        last._next = ring._prev = conn
        self.count += 1

    def forget(self, conn: Conn) -> None:
        before, after = conn._prev, conn._next
        before._next, after._prev = after, before
        self.count -= 1
        if not self.count and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def conns(self) -> list[Conn]:
        """The connections open now (a copy: closing them changes the ring)."""
        found = []
        conn = self.ring._next
        while conn is not self.ring:
            found.append(conn)
            conn = conn._next
        return found

    def start_ticking(self) -> None:
        """One loop timer for every connection's deadlines (the core's ``tick``)."""
        interval = tick_interval(self.limits)
        if interval is not None:
            self.sweep = self.loop.call_later(interval, self._tick, interval)

    def stop_ticking(self) -> None:
        if self.sweep is not None:
            self.sweep.cancel()

    def _tick(self, interval: float) -> None:
        now = self.loop.time()
        for conn in self.conns():
            conn.tick(now)
        self.sweep = self.loop.call_later(interval, self._tick, interval)


class Door:
    """One listener's view: its service factory, TLS context and how to admit peers."""

    __slots__ = ("factory", "family", "gate", "hub", "limits", "local", "logs", "releases", "tls")

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
        self.limits = hub.limits
        self.logs = hub.log.enabled
        # Access rules apply to IP peers only (Unix peers are guarded by file
        # permissions); with neither rules nor max_conns admission is free.
        # TLS connections are admitted by the acceptor, before the handshake.
        unix = family == socket.AF_UNIX
        checks_access = not hub.access.open and not unix
        checks_uid = hub.admission.allow_uids is not None and unix
        #: Admitted peers are counted per address and must be released at the end
        #: (behind --proxy-protocol the client is, by the proxied connection).
        self.releases = hub.admission.per_ip is not None and not unix and not hub.admission.proxies
        self.gate = (
            checks_access
            or checks_uid
            or self.releases
            or hub.limits.max_conns is not None
            or hub.admission.proxies is not None
        ) and tls is None

    def refusal(self, name: Any, pending: int = 0, sock: Any = None) -> str | None:
        """Why a peer at sockaddr ``name`` may not be served now, or None to serve it.

        ``pending`` counts connections accepted but not yet in ``conns`` (TLS
        handshakes under way), so ``max_conns`` holds for them too.
        """
        return self.hub.admission.admit(name, self.hub.count + pending, sock)

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
        if self.logs:
            self.hub.log.refused(self.peer(transport), reason)
        return False


def _hot_path(counts: bool) -> Callable[[Conn, bytes], None]:
    """``data_received``, written once: with the byte counts (the log, the deadlines) or without.

    When the core holds nothing and the transport takes writes, a reply of
    up to 64 KiB is written at once; anything else goes to the core.
    """

    def data_received(self: Conn, data: bytes) -> None:
        if counts:
            self.bytes_in += len(data)
        service = self.service
        try:
            out = service.received(data)
        except Exception as exc:
            self.failed(exc)
            return
        if counts and self._line is not None:  # --line-timeout: time a partial line
            self._line.seen(service, self._door.hub.loop.time())
        if out:
            if self._writing or len(out) > _TRANSPORT_TAKES:  # not _DIRECT, or long
                self.output(out)  # behind waiting output, or dropped after HALF_CLOSE
                self.settle()
                self._pump()
                return
            self._transport.write(out)
            if counts:
                self.bytes_out += len(out)
        if service.state or service.producing:
            self.settle()
            self._pump()

    return data_received


class Conn(ConnectionRules, asyncio.Protocol):
    """One connection: the asyncio pump around its core.

    :func:`protocol_factory` makes a subclass per listener with :attr:`_door`
    set and builds instances without ``__init__``: :meth:`connection_made`
    initialises the core once the service exists.
    """

    __slots__ = ("_next", "_prev", "_transport", "_writing")

    _door: ClassVar[Door]
    #: No deadlines, so no partial line to time (:class:`TrackedConn` has the slot).
    _line = None
    _prev: Conn
    _next: Conn
    #: Whether to start the core's deadline clock (:class:`TrackedConn`, which has its slots).
    _timed: ClassVar[bool]
    _transport: asyncio.Transport

    # -- asyncio callbacks -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        door = self._door
        self._transport = transport  # type: ignore[assignment]
        if door.gate and not door.admits(transport):
            ConnectionRules.__init__(self, _NO_SERVICE)
            self.should_close = True
            return
        door.hub.add(self)
        self._serve(door.factory(), None)

    def _serve(self, service: Service, peer: str | None) -> None:
        """Serve ``service`` on this admitted connection: the core, the log, the greeting."""
        door = self._door
        ConnectionRules.__init__(self, service)
        if self._timed:
            self.start_clock(door.hub.loop.time())
        self._writing = _DIRECT
        service.wakeup = self
        if door.logs:
            self._opened(peer if peer is not None else door.peer(self._transport))
        if type(service).connected is not _BASE_CONNECTED:
            self.start(peer if peer is not None else door.peer(self._transport))
            self._pump()
        elif service.state or service.producing:
            self.settle()
            self._pump()

    #: The echo case inlined; anything else is the core's (see the module docstring).
    #: (A function made by _hot_path: mypy reads it as an attribute, not a method.)
    data_received = _hot_path(counts=False)  # type: ignore[assignment]

    def eof_received(self) -> bool:
        service = self.service
        if (
            type(service).eof_received is _BASE_EOF_RECEIVED
            and not (service.state or service.producing or self.out)
            and service.close_reason is None
        ):
            # The base answer, "close once everything is sent", is what
            # returning False makes the transport do, without the calls.
            return False
        self.receive_eof()
        self._pump()
        # TLS transports cannot half-close: returning False closes once flushed.
        return self._door.tls is None

    def pause_writing(self) -> None:
        self._writing = _BLOCKED

    def resume_writing(self) -> None:
        self._writing = _THROUGH_CORE
        if not self.should_close:
            self._pump()

    def connection_lost(self, exc: Exception | None) -> None:
        service = self.service
        if service is _NO_SERVICE:
            return  # refused: never served
        # From here on a late wakeup() finds _NO_SERVICE and does nothing.
        self.service = _NO_SERVICE
        if type(service).closed is not _BASE_CLOSED:  # the base one does nothing
            try:
                service.closed()
            except Exception as error:
                _log.error("service error closing a connection", exc_info=error)
        door = self._door
        if door.logs:
            self._logged_close(exc)
        if door.releases:
            door.hub.admission.release(self._transport.get_extra_info("peername"))
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
        if self.service is not _NO_SERVICE and not self.should_close:
            self._pump()

    # -- the pump ------------------------------------------------------------

    def _pump(self) -> None:
        """Write what the core holds while the transport takes it; act on the core's verdict.

        A producing service is asked for more whenever the core has room
        (even while the transport is paused: its output then waits in the
        core, under the core's deadlines).  After ``high_water`` bytes the
        pump yields to other connections and goes on at the loop's next turn.
        """
        transport = self._transport
        budget = self._limits.high_water
        while not self.should_close:
            data = self.data_to_send()
            if data is None:
                if not self.wants_write:
                    break
                self.writable()
                if self.out or self.fin_due:
                    continue
                break
            if isinstance(data, EndOfStream):
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()  # TLS cannot half-close: the FIN becomes a close
                self.fin_sent()
                continue
            if self._writing == _BLOCKED:
                break
            if budget <= 0:
                self._door.hub.loop.call_soon(self._woken)
                break
            size = len(data)
            self.sent(size)  # the core lets go of ``data``: the transport keeps it
            budget -= size
            transport.write(data)
        if self.should_close:
            transport.close()  # flushes what the transport holds; after abort() a no-op
            return
        if (
            self._paused == transport.is_reading()
            and not self._peer_done
            and not transport.is_closing()
        ):
            if self._paused:
                transport.pause_reading()
            else:
                transport.resume_reading()
        if self._writing != _BLOCKED:
            self._writing = _THROUGH_CORE if self.out or self._done_sending else _DIRECT

    def abort(self, reason: str | None) -> None:
        """End now (a deadline, the output cap, a stop, a service error): drop what is unsent."""
        ConnectionRules.abort(self, reason)
        self._transport.abort()

    def _opened(self, peer: str) -> None:
        """Only :class:`TrackedConn` logs; :func:`protocol_factory` picks it when the log is on."""

    def _logged_close(self, exc: Exception | None) -> None:
        """See :meth:`_opened`."""


class TrackedConn(Conn):
    """A :class:`Conn` with a log record and the deadline marks."""

    __slots__ = (
        "_io_mark",
        "_io_since",
        "_line",
        "_opened_at",
        "_out_mark",
        "_out_since",
        "_peer",
    )

    data_received = _hot_path(counts=True)

    def _opened(self, peer: str) -> None:
        self._peer = peer
        self._opened_at = self._door.hub.loop.time()
        self._door.hub.log.opened(peer, self._door.local)

    def _logged_close(self, exc: Exception | None) -> None:
        if not self.should_close and exc is not None:
            # The transport failed (reset, broken pipe) before the core ended.
            if isinstance(exc, OSError):
                reason = str(translate_os_error(exc, "serve", self._peer))
            else:
                reason = service_error(exc)
            ConnectionRules.abort(self, reason)
        duration = self._door.hub.loop.time() - self._opened_at
        self._door.hub.log.closed(
            self._peer, self.bytes_in, self.bytes_out, duration, self.close_reason
        )


def protocol_factory(door: Door) -> Callable[[], Conn]:
    """The protocol factory for ``door``'s listener: :class:`Conn` objects bound to it.

    :class:`TrackedConn` when the log or a deadline is on, else the plain
    :class:`Conn`; either way made without ``__init__`` (see :class:`Conn`).
    """
    limits = door.limits
    base = TrackedConn if door.logs or tick_interval(limits) is not None else Conn
    attributes = {
        "__slots__": (),
        "_door": door,
        "_limits": limits,
        "_timed": base is TrackedConn,
    }
    cls = type(base.__name__, (base,), attributes)
    return partial(object.__new__, cls)
