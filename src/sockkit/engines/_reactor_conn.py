"""One connection of the reactor: a non-blocking socket, pumped around its connection core.

A plain connection keeps the socket's descriptor, not a Python socket
object (88 bytes an idle connection would hold): it reads with ``readv``
into the reactor's buffer and writes with ``write``, which on a socket are
``recv`` and ``send`` without flags, and makes a socket object only for the
rare ``shutdown``.  A TLS connection keeps its ``SSLSocket``.

A :class:`Connection` is a :class:`~sockkit.engines._core.ConnectionRules`
subclass (one object per connection) driven only by the reactor thread: it
registers itself as its fd's handler while READ is its only interest
(``on_ready`` is then the hot path, :meth:`Connection.on_readable`), and a
:class:`~sockkit.engines._reactor_poll.Callback` of :meth:`Connection.on_event`
while it also waits to write.
The rules -- output buffer, water marks, cap, deadlines, half-close order,
close reasons -- are the core's; this module only moves bytes:

- READ events: ``recv_into`` the reactor's shared buffer, hand the bytes to
  the service.  The echo case is inlined (:meth:`Connection.on_readable`):
  when nothing waits in the core's buffer the reply is sent at once; anything
  else (a remainder, a state change, a producing service) goes to the core.
- WRITE events: :meth:`Connection.pump` sends what ``data_to_send()`` gives
  (or shuts down writing on ``END_OF_STREAM``), lets a producing service
  fill the room, closes when the core says so, and registers the interest
  the core wants (``wants_read`` / ``wants_write``).
- ``closed()`` is called once, whatever ended the connection, and the reactor
  is told (:meth:`ConnectionHost.connection_gone`) so it can resume accepting
  or finish a drain.

An idle connection is mostly this object, so what all connections of a
listener share is not stored in each: :func:`bind` makes a class per listener
holding the reactor, the listener's name and factory, the limits and the read
buffer as class attributes, and the deadline marks as slots only when a
deadline is configured.  The connection itself is the service's ``wakeup``
(``__call__``) and the poller's handler, so neither costs a bound method.

:class:`TlsConnection` adds a non-blocking handshake phase and the SSL
want-read/want-write and ``pending()`` cases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import ClassVar, Protocol, TypeVar

from sockkit._accept import SockAddr
from sockkit._errors import translate_os_error
from sockkit.engines._contract import REFUSED_TLS, ServeContext
from sockkit.engines._core import ConnectionRules, EndOfStream, tick_interval
from sockkit.engines._reactor_poll import ERROR, READ, WRITE, Callback, Handler, Poller
from sockkit.services._base import Service

__all__ = ["Connection", "ConnectionHost", "TlsConnection", "bind"]

_READY_TO_READ = READ | ERROR
_READY_TO_WRITE = WRITE | ERROR
_RETRY = (BlockingIOError, InterruptedError)

_log = logging.getLogger("sockkit.engines.reactor")

_readv = os.readv
_write = os.write

#: What a connection holds until its service exists (during a TLS handshake).
_NO_SERVICE = Service()
_BASE_CONNECTED = Service.connected


class ConnectionHost(Protocol):
    """What a connection needs from its reactor."""

    poller: Poller
    ctx: ServeContext
    #: One ``limits.read_size`` buffer every connection receives into: a
    #: fresh 256 KiB ``recv()`` would cost glibc an mmap/mremap/munmap each.
    read_view: memoryview

    def connection_gone(self, conn: Connection) -> None:
        """``conn`` is closed and its fd unregistered."""

    def wake_from_thread(self, conn: Connection) -> None:
        """Schedule ``conn.sync()`` on the reactor thread (``wakeup`` called off-thread)."""

    def on_reactor_thread(self) -> bool:
        """Whether the caller runs on the reactor thread."""

    def hold_slot(self, fd: int, address: SockAddr) -> None:
        """``fd``'s connection holds a per-address slot for ``address`` until it is gone."""


#: The core's deadline state: slots of a listener's class only when a deadline is set.
_DEADLINE_SLOTS = ("_io_mark", "_io_since", "_line", "_out_mark", "_out_since")

_C = TypeVar("_C", bound="Connection")


def bind(
    cls: type[_C], host: ConnectionHost, local: str, factory: Callable[[], Service]
) -> type[_C]:
    """``cls`` for one listener of ``host``: what its connections share, as class attributes.

    ``local`` is the listener's endpoint text and ``factory`` its service
    factory.  With an idle, send or line timeout the class also has the
    core's deadline slots, and each connection starts its clock.
    """
    limits = host.ctx.limits
    timed = tick_interval(limits) is not None
    shared = {
        "__slots__": _DEADLINE_SLOTS if timed else (),
        "host": host,
        "local": local,
        "factory": staticmethod(factory),
        "_limits": limits,
        "_view": host.read_view,
        "_views": [host.read_view],
        "_timed": timed,
    }
    return type(cls.__name__, (cls,), shared)


class Connection(ConnectionRules):
    """A plain (TCP or Unix) connection: the reactor's pump around its core.

    The pump is a subclass of the core, so a connection is still one object.
    Instantiate the class :func:`bind` made for the listener, not this one.
    """

    __slots__ = ("closed", "events", "fd", "opened_at", "peer", "serving")

    # Shared by a listener's connections (see bind()).
    host: ClassVar[ConnectionHost]
    local: ClassVar[str]
    factory: ClassVar[Callable[[], Service]]
    _view: ClassVar[memoryview]
    #: ``[_view]``, as ``os.readv`` takes it.
    _views: ClassVar[list[memoryview]]
    _timed: ClassVar[bool] = False
    #: No deadlines, so no partial line to time (a timed class has the slot).
    _line = None

    def __init__(self, sock: socket.socket, peer: str) -> None:
        now = time.monotonic()
        ConnectionRules.__init__(self, _NO_SERVICE)
        if self._timed:
            self.start_clock(now)
        self.fd = self._adopt(sock)
        self.peer = peer
        self.events = 0
        self.closed = False
        self.serving = False
        self.opened_at = now

    def _adopt(self, sock: socket.socket) -> int:
        """Keep what this connection does its I/O with; return the descriptor."""
        return sock.detach()  # the fd is ours now: close() closes it

    # ---------------------------------------------------------------- start

    def begin_serving(self, service: Service) -> None:
        """Begin serving: install ``wakeup``, log the open, call ``connected``.

        Call once, after any handshake; the connection is then registered.
        """
        self.service = service
        self.serving = True
        service.wakeup = self
        self.host.ctx.log.opened(self.peer, self.local)
        if type(service).connected is _BASE_CONNECTED and not (service.state or service.producing):
            self.sync()  # no greeting and nothing to act on: what start() would conclude
            return
        self.start(self.peer)
        self.pump()

    # ------------------------------------------------------------- hot path

    def on_readable(self, mask: int) -> None:
        """READ is the only interest: recv, feed the service, send its reply.

        The echo case inlined (the per-message cost): when nothing waits in
        the core's buffer the reply is sent at once; anything else -- a
        remainder, a state change, a producing service -- goes to the core.
        """
        try:
            size = _readv(self.fd, self._views)
        except _RETRY:
            return
        except OSError as exc:
            self.lost(exc)
            return
        if size:
            self.bytes_in += size
            data = self._view[:size].tobytes()
            service = self.service
            out = service.received(data)
            if self._line is not None:  # --line-timeout: time the service's partial line
                self._line.seen(service, time.monotonic())
            if out:
                if self.out or self._done_sending:
                    self.output(out)  # behind waiting output, or dropped after HALF_CLOSE
                else:
                    try:
                        sent = _write(self.fd, out)
                    except _RETRY:
                        sent = 0
                    except OSError as exc:
                        self.lost(exc)
                        return
                    self.bytes_out += sent
                    if sent != len(out):
                        self.output(memoryview(out)[sent:])
            if self.out or service.state or service.producing:
                self.settle()
                self.pump()
        else:
            self.receive_eof()
            self.pump()

    #: The poller's call while READ is the only interest (see sync()).  A
    #: subclass that overrides on_readable sets this again.
    on_ready = on_readable

    # ------------------------------------------------------------ slow path

    def on_event(self, mask: int) -> None:
        """Handler while WRITE interest is registered (alone or with READ)."""
        if mask & _READY_TO_WRITE:
            self.writable()
            self.pump()
        if mask & _READY_TO_READ and not self.closed and self.wants_read:
            self.on_readable(mask)

    def pump(self) -> None:
        """Send what the core holds (or the FIN), then act on its verdict and interest."""
        if self.closed:
            return
        data = self.data_to_send()
        if isinstance(data, EndOfStream):
            try:
                self._shutdown_write()
            except OSError as exc:
                self.lost(exc)
                return
            self.fin_sent()
        elif data:
            try:
                sent = self._send(data)
            except _RETRY:
                sent = 0
            except OSError as exc:
                self.lost(exc)
                return
            self.sent(sent)
            if sent and self.wants_write and not self.out:
                self.writable()  # room now: a producing service may hand out more
                self.pump()
                return
        if self.should_close:
            self.close(self.close_reason)
            return
        self.sync()

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        """Send what the socket takes now (the slow path; TLS overrides it)."""
        return _write(self.fd, data)

    def _shutdown_write(self) -> None:
        """``shutdown(SHUT_WR)``: through a socket object lent the fd for the call."""
        sock = socket.socket(fileno=self.fd)
        try:
            sock.shutdown(socket.SHUT_WR)
        finally:
            sock.detach()

    def _close_socket(self) -> None:
        os.close(self.fd)

    def wanted_events(self) -> int:
        """The poller interest the core's state calls for."""
        return (READ if self.wants_read else 0) | (WRITE if self.wants_write else 0)

    def sync(self) -> None:
        """Register, modify or unregister so the poller matches :meth:`wanted_events`.

        Also the on-thread ``wakeup`` path: a service that starts ``producing``
        gets WRITE interest, and the writable event asks it to ``produce``.
        """
        if self.closed:
            return
        events = self.wanted_events()
        if events == self.events:
            return
        poller = self.host.poller
        if events:
            # The connection itself while only reading (no object per idle
            # connection); a callback made for the rarer wait to write.
            handler: Handler = self if events == READ else Callback(self.on_event)
            if self.events:
                poller.modify(self.fd, events, handler)
            else:
                poller.register(self.fd, events, handler)
        else:
            poller.unregister(self.fd)
        self.events = events

    def __call__(self) -> None:
        """The service's ``wakeup`` (the connection is installed as it): flush produced output soon.

        Any thread.
        """
        if self.host.on_reactor_thread():
            self.sync()
        else:
            self.host.wake_from_thread(self)

    # -------------------------------------------------------------- closing

    def lost(self, exc: OSError) -> None:
        """The socket failed (reset, broken pipe): close with the reason."""
        self.close(str(translate_os_error(exc, "serve", self.peer)))

    def fail(self, exc: BaseException) -> None:
        """The service raised in an inlined call: log the traceback, close this connection only."""
        self.failed(exc)
        self.close(self.close_reason)

    def close(self, reason: str | None) -> None:
        """Unregister, close the socket, call ``closed()`` and log.  Idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.events:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.host.poller.unregister(self.fd)
            self.events = 0
        self._close_socket()
        self.out = b""
        try:
            if self.serving:
                try:
                    self.service.closed()
                except Exception as exc:
                    _log.error("service error closing %s", self.peer, exc_info=exc)
                duration = time.monotonic() - self.opened_at
                self.host.ctx.log.closed(self.peer, self.bytes_in, self.bytes_out, duration, reason)
            else:
                self.host.ctx.log.refused(self.peer, reason or "closed before serving")
        finally:
            self.host.connection_gone(self)


class TlsConnection(Connection):
    """A TLS connection: a non-blocking handshake, then the plain rules over SSL."""

    __slots__ = ("sock",)

    sock: ssl.SSLSocket

    def _adopt(self, sock: socket.socket) -> int:
        assert isinstance(sock, ssl.SSLSocket)
        self.sock = sock
        return sock.fileno()

    def _shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def _close_socket(self) -> None:
        self.sock.close()

    def begin(self) -> None:
        """Register for the handshake; serving follows when it completes."""
        self.host.poller.register(self.fd, READ, Callback(self.on_handshake))
        self.events = READ
        self.on_handshake(READ)

    def on_handshake(self, mask: int) -> None:
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(READ)
            return
        except ssl.SSLWantWriteError:
            self._want(WRITE)
            return
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            self.close(f"{REFUSED_TLS}: handshake failed: {reason}")
            return
        # Unregister the handshake's interest: serving registers its own.
        self.host.poller.unregister(self.fd)
        self.events = 0
        self.begin_serving(type(self).factory())

    def _want(self, events: int) -> None:
        if events != self.events:
            self.host.poller.modify(self.fd, events, Callback(self.on_handshake))
            self.events = events

    def on_readable(self, mask: int) -> None:
        """Like the plain one, but keep reading while OpenSSL holds decrypted bytes."""
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        while True:
            view = self._view
            try:
                size = sock.recv_into(view)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, *_RETRY):
                return
            except OSError as exc:
                self.lost(exc)
                return
            if not size:
                self.receive_eof()
                self.pump()
                return
            self.receive(view[:size].tobytes())
            self.pump()
            # Bytes already decrypted inside OpenSSL make no fd readiness.
            if self.closed or not self.wants_read or not sock.pending():
                return

    on_ready = on_readable

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
