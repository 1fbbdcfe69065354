"""One connection of the reactor: a non-blocking socket joined to one Service.

A :class:`Connection` is driven only by the reactor thread, through the bound
method it registers as its fd's handler (``handler(mask)``).  Rules:

- Output is sent at once; what the socket does not take is buffered in
  ``out`` and WRITE interest is registered only while ``out`` is non-empty
  (or the service is ``producing``).
- ``len(out) > high_water`` pauses the connection (no READ interest, no
  ``produce``); draining to ``low_water`` resumes it.  ``len(out) >
  output_cap`` disconnects it.
- ``produce(limit)`` is asked once per writable event while the buffer is
  below low water, so a peer that never reads leaves server memory flat.
- The plain-echo hot path (:meth:`Connection.on_readable`) is one
  ``recv_into`` (the reactor's shared buffer; ``received`` gets an exact-size
  copy), one ``received`` call and one ``send``; everything else (state changes,
  buffering, interest changes) lives off that path.
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
from collections.abc import Callable
from typing import Protocol

from sockkit._errors import translate_os_error
from sockkit.engines._contract import CloseReason, ServeContext, service_error
from sockkit.engines._reactor_poll import ERROR, READ, WRITE, Poller
from sockkit.services._base import CLOSE, HALF_CLOSE, OPEN, Service

__all__ = ["Connection", "ConnectionHost", "TlsConnection"]

_READY_TO_READ = READ | ERROR
_READY_TO_WRITE = WRITE | ERROR
_RETRY = (BlockingIOError, InterruptedError)

_log = logging.getLogger("sockkit.engines.reactor")


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


class Connection:
    """A plain (TCP or Unix) connection; see the module docstring."""

    __slots__ = (
        "_high",
        "_low",
        "_recv_into",
        "_send",
        "_view",
        "bytes_in",
        "bytes_out",
        "closed",
        "closing",
        "events",
        "fd",
        "half",
        "host",
        "io_mark",
        "io_since",
        "local",
        "opened_at",
        "out",
        "out_mark",
        "out_since",
        "paused",
        "peer",
        "reading",
        "service",
        "serving",
        "shut_wr",
        "sock",
    )

    def __init__(self, host: ConnectionHost, sock: socket.socket, peer: str, local: str) -> None:
        limits = host.ctx.limits
        self.host = host
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.local = local
        self._recv_into = sock.recv_into
        self._view = host.read_view
        self._send: Callable[[bytes | bytearray | memoryview], int] = sock.send
        self._high = limits.high_water
        self._low = limits.low_water
        self.service: Service = Service()
        self.out = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0
        self.events = 0
        self.reading = True
        self.paused = False
        self.closing = False
        self.closed = False
        self.shut_wr = False
        #: The service answered HALF_CLOSE: bytes it returns later are dropped.
        self.half = False
        self.serving = False
        self.opened_at = time.monotonic()
        # Marks for the reactor's coarse sweep: it compares byte counters with
        # these instead of the hot path stamping a time on every message.
        self.io_mark = -1
        self.io_since = self.opened_at
        self.out_mark = -1
        self.out_since = self.opened_at

    # ---------------------------------------------------------------- start

    def start(self, service: Service) -> None:
        """Begin serving: install ``wakeup``, log the open, call ``connected``.

        Call once, after any handshake; the connection is then registered.
        """
        self.service = service
        self.serving = True
        service.wakeup = self.wakeup
        self.host.ctx.log.opened(self.peer, self.local)
        self.sync()
        out = service.connected(self.peer)
        if out:
            self.write(out)
        self.after_call()

    # ------------------------------------------------------------- hot path

    def on_readable(self, mask: int) -> None:
        """READ is the only interest: recv, feed the service, send its reply."""
        view = self._view
        try:
            size = self._recv_into(view)
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
            if out:
                if self.out or self.half:
                    self.write(out)
                else:  # write()'s fast path, inlined: this is the per-message cost
                    try:
                        sent = self._send(out)
                    except _RETRY:
                        sent = 0
                    except OSError as exc:
                        self.lost(exc)
                        return
                    self.bytes_out += sent
                    if sent != len(out):
                        self.keep(out, sent)
            if service.state or service.producing:
                self.after_call()
        else:
            self.on_eof()

    def write(self, data: bytes) -> None:
        """Send ``data`` now, buffering what the socket does not take."""
        if self.half:
            return  # returned after HALF_CLOSE: dropped, as on every engine
        if self.out:
            self.out += data  # keep order behind what is already waiting
            self._buffered()
            return
        try:
            sent = self._send(data)
        except _RETRY:
            sent = 0
        except OSError as exc:
            self.lost(exc)
            return
        self.bytes_out += sent
        if sent != len(data):
            self.keep(data, sent)

    def keep(self, data: bytes, sent: int) -> None:
        """Buffer what the socket did not take of ``data`` (``sent`` bytes went)."""
        self.out += memoryview(data)[sent:]
        self._buffered()

    # ------------------------------------------------------------ slow path

    def on_event(self, mask: int) -> None:
        """Handler while WRITE interest is registered (alone or with READ)."""
        if mask & _READY_TO_WRITE:
            self.on_writable()
        if mask & _READY_TO_READ and not self.closed and self.reading and not self.paused:
            self.on_readable(mask)

    def on_writable(self) -> None:
        """Drain the buffer; resume below low water; ask for more output when producing."""
        out = self.out
        if out:
            try:
                sent = self._send(out)
            except _RETRY:
                sent = 0
            except OSError as exc:
                self.lost(exc)
                return
            if sent:
                del out[:sent]
                self.bytes_out += sent
        if self.paused and len(out) <= self._low:
            self.paused = False
        service = self.service
        if service.producing and not (self.closing or self.half) and len(out) < self._low:
            produced = service.produce(self._high - len(out))
            if produced:
                self.write(produced)
            if self.closed:
                return
        self.after_call()

    def on_eof(self) -> None:
        """The peer finished sending: stop reading, tell the service."""
        self.reading = False
        out = self.service.eof_received()
        if out:
            self.write(out)
        self.after_call()

    def after_call(self) -> None:
        """Act on the service's state, then bring the registration in line."""
        if self.closed:
            return
        state = self.service.state
        if state != OPEN:
            if state == CLOSE:
                self.closing = True
                self.reading = False
                if not self.out:
                    self.close(self.service.close_reason)
                    return
            elif state == HALF_CLOSE and not self.shut_wr:
                self.half = True
                if self.out:
                    self.sync()
                    return
                self.shut_wr = True
                try:
                    self.sock.shutdown(socket.SHUT_WR)
                except OSError as exc:
                    self.lost(exc)
                    return
        self.sync()

    def _buffered(self) -> None:
        """Output went into the buffer: enforce the cap, pause above high water."""
        pending = len(self.out)
        if pending > self._high:
            if pending > self.host.ctx.limits.output_cap:
                self.close(CloseReason.OUTPUT_CAP)
                return
            self.paused = True
        if not self.events & WRITE:
            self.sync()

    def wanted_events(self) -> int:
        """The poller interest the connection's state calls for."""
        events = 0
        if self.reading and not self.paused:
            events = READ
        if self.out or (self.service.producing and not (self.closing or self.half)):
            events |= WRITE
        return events

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
        """The service raised: log the traceback, close this connection only."""
        _log.error("service error on %s", self.peer, exc_info=exc)
        self.close(service_error(exc))

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
        self.out = bytearray()
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
        self._send = self._tls_send

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
            self.close(f"tls handshake failed: {reason}")
            return
        factory = self._factory
        assert callable(factory)
        # The registration's handler is the handshake one: drop it so start()
        # registers the serving handlers.
        self.host.poller.unregister(self.fd)
        self.events = 0
        self.start(factory())

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
                size = self._recv_into(view)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, *_RETRY):
                return
            except OSError as exc:
                self.lost(exc)
                return
            if not size:
                self.on_eof()
                return
            self.bytes_in += size
            data = view[:size].tobytes()
            service = self.service
            out = service.received(data)
            if out:
                self.write(out)
            if service.state or service.producing:
                self.after_call()
            # Bytes already decrypted inside OpenSSL make no fd readiness.
            if self.closed or not self.reading or self.paused or not sock.pending():
                return

    def _tls_send(self, data: bytes | bytearray | memoryview) -> int:
        try:
            return self.sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
