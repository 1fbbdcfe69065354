"""One connection of the reactor: a non-blocking socket, pumped around its connection core.

A :class:`Connection` is a :class:`~sockkit.engines._core.ConnectionCore`
subclass (one object per connection) driven only by the reactor thread,
through the bound method it registers as its fd's handler (``handler(mask)``).
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

:class:`TlsConnection` adds a non-blocking handshake phase and the SSL
want-read/want-write and ``pending()`` cases.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from typing import Protocol

from sockkit._accept import SockAddr
from sockkit._errors import translate_os_error
from sockkit.engines._contract import REFUSED_TLS, ServeContext
from sockkit.engines._core import ConnectionCore, EndOfStream
from sockkit.engines._reactor_poll import ERROR, READ, WRITE, Poller
from sockkit.services._base import Service

__all__ = ["Connection", "ConnectionHost", "TlsConnection"]

_READY_TO_READ = READ | ERROR
_READY_TO_WRITE = WRITE | ERROR
_RETRY = (BlockingIOError, InterruptedError)

_log = logging.getLogger("sockkit.engines.reactor")

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


class Connection(ConnectionCore):
    """A plain (TCP or Unix) connection: the reactor's pump around its :class:`ConnectionCore`.

    The pump is a subclass of the core, so a connection is still one object.
    """

    __slots__ = (
        "_view",
        "closed",
        "events",
        "fd",
        "host",
        "local",
        "opened_at",
        "peer",
        "serving",
        "sock",
    )

    def __init__(self, host: ConnectionHost, sock: socket.socket, peer: str, local: str) -> None:
        now = time.monotonic()
        super().__init__(_NO_SERVICE, host.ctx.limits, now)
        self.host = host
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.local = local
        # No bound sock.recv_into / sock.send kept per connection: 144 bytes
        # each idle connection would hold, for a lookup that costs nanoseconds.
        self._view = host.read_view
        self.events = 0
        self.closed = False
        self.serving = False
        self.opened_at = now

    # ---------------------------------------------------------------- start

    def begin_serving(self, service: Service) -> None:
        """Begin serving: install ``wakeup``, log the open, call ``connected``.

        Call once, after any handshake; the connection is then registered.
        """
        self.service = service
        self.serving = True
        service.wakeup = self.wakeup
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
        view = self._view
        try:
            size = self.sock.recv_into(view)
        except _RETRY:
            return
        except OSError as exc:
            self.lost(exc)
            return
        if size:
            self.bytes_in += size
            data = view[:size].tobytes()
            service = self.service
            out = service.received(data)
            if self._line is not None:  # --line-timeout: time the service's partial line
                self._line.seen(service, time.monotonic())
            if out:
                if self.out or self._done_sending:
                    self.output(out)  # behind waiting output, or dropped after HALF_CLOSE
                else:
                    try:
                        sent = self.sock.send(out)
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
                self.sock.shutdown(socket.SHUT_WR)
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
        return self.sock.send(data)

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
            handler = self.on_readable if events == READ else self.on_event
            if self.events:
                poller.modify(self.fd, events, handler)
            else:
                poller.register(self.fd, events, handler)
        else:
            poller.unregister(self.fd)
        self.events = events

    def wakeup(self) -> None:
        """Installed as ``service.wakeup``: flush produced output soon.  Any thread."""
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
        self.sock.close()
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

    __slots__ = ("_factory", "hs_events")

    def __init__(
        self,
        host: ConnectionHost,
        sock: ssl.SSLSocket,
        peer: str,
        local: str,
        factory: object,
    ) -> None:
        super().__init__(host, sock, peer, local)
        self._factory = factory
        self.hs_events = READ

    def begin(self) -> None:
        """Register for the handshake; :meth:`start` follows when it completes."""
        self.host.poller.register(self.fd, READ, self.on_handshake)
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
        factory = self._factory
        assert callable(factory)
        # The registration's handler is the handshake one: drop it so start()
        # registers the serving handlers.
        self.host.poller.unregister(self.fd)
        self.events = 0
        self.begin_serving(factory())

    def _want(self, events: int) -> None:
        if events != self.events:
            self.host.poller.modify(self.fd, events, self.on_handshake)
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

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
