"""The select, poll and epoll engines: one reactor over three pollers.

The three engines differ only in the poller class (:mod:`._reactor_poll`),
chosen once below.  The reactor runs on the thread that calls :meth:`Engine.run`:

- Every registered fd has a handler, an object with ``on_ready(mask)`` (a
  connection is its own); the loop is ``for fd, mask in wait(timeout):
  handlers[fd].on_ready(mask)``, nothing more.
- Listeners are accepted by :class:`sockkit._accept.Acceptor` (batches, the
  shared back-off).  Refusals (deny, max-conns, select's fd limit) close at
  once.  Out of descriptors, the listeners are not watched until a connection
  closes or the back-off passes: never a busy loop.
- Timeouts (idle, send, TLS handshake, EMFILE back-off, drain) are served by
  one coarse sweep every ``min(timeout / 4, 0.5 s)``; idle and send deadlines
  are each connection core's ``tick``, read from byte counters, so no
  per-message timestamps.  With none of them configured, ``wait`` blocks
  without a timeout and no clock is read.
- ``ctx.stop.fd`` is watched: on stop the listeners are unregistered and
  closed at once, then the drain of :mod:`._lifecycle` runs (a second stop
  closes what is left at once).
- ``wakeup`` from another thread goes through a self-pipe.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import ClassVar, cast

from sockkit._accept import ACCEPT_BATCH, Acceptor, SockAddr
from sockkit._endpoint import format_sockaddr
from sockkit._errors import SockkitError, translate_os_error
from sockkit.engines._base import Engine
from sockkit.engines._contract import CloseReason, ServeContext, StreamListener, service_error
from sockkit.engines._core import line_tick
from sockkit.engines._lifecycle import Drain
from sockkit.engines._reactor_conn import Connection, TlsConnection, bind
from sockkit.engines._reactor_poll import (
    READ,
    Callback,
    EpollPoller,
    Poller,
    PollPoller,
    SelectPoller,
)
from sockkit.engines._reactor_proxy import ProxiedConnection

__all__ = ["EpollEngine", "PollEngine", "SelectEngine"]

_log = logging.getLogger("sockkit.engines.reactor")

#: Coarsest sweep period: a timeout fires at most this late.
_MAX_TICK = 0.5


class _Acceptor:
    """A listener as the reactor sees it: its handler accepts a batch (policy: sockkit._accept)."""

    __slots__ = ("acceptor", "conn_class", "family", "listener", "local", "reactor", "sock")

    def __init__(self, reactor: _Reactor, listener: StreamListener) -> None:
        self.reactor = reactor
        self.listener = listener
        self.sock = listener.sock
        self.local = str(listener.endpoint)
        # Read once: socket.family converts to an enum on every access.
        self.family = int(listener.sock.family)
        self.acceptor = Acceptor(listener.sock, self.local, _log.warning)
        kind: type[Connection] = reactor.connection_class
        if reactor.ctx.proxy is not None:
            kind = ProxiedConnection
        elif listener.tls is not None:
            kind = reactor.tls_connection_class
        #: The class of this listener's connections (what they share lives in it).
        self.conn_class = bind(kind, reactor, self.local, listener.factory)

    def on_ready(self, mask: int) -> None:
        reactor = self.reactor
        accept = self.acceptor.accept  # Acceptor.batch() unrolled: this is per connection
        try:
            for _ in range(ACCEPT_BATCH):
                got = accept()
                if got is None:
                    return
                if isinstance(got, float):
                    reactor.back_off(got)
                    return
                reactor.admit(self, *got)
                if reactor.stopping or reactor.backing_off:
                    return
        except OSError as exc:
            raise translate_os_error(exc, "accept on", self.local) from exc


class _Reactor:
    """One run of an engine; see the module docstring."""

    #: What :meth:`admit` makes of an accepted socket (the pool engine makes its own).
    connection_class: ClassVar[type[Connection]] = Connection
    tls_connection_class: ClassVar[type[TlsConnection]] = TlsConnection

    def __init__(self, ctx: ServeContext, poller: Poller) -> None:
        self.ctx = ctx
        self.poller = poller
        self.fd_limit = poller.fd_limit
        self.conns: dict[int, Connection] = {}
        self.read_view = memoryview(bytearray(ctx.limits.read_size))
        self.acceptors = [_Acceptor(self, listener) for listener in ctx.listeners]
        self.stopping = False
        self.done = False
        self.backing_off = False
        # None when nobody can be refused: the admission call is skipped.
        self._admission = ctx.admission if ctx.admission.refuses_any else None
        #: fd -> peer address of connections counted per address (--max-conns-per-ip),
        #: released from the admission when the connection goes.
        self._counted: dict[int, SockAddr] = {}
        # Behind --proxy-protocol the slot is the client's, taken after its header.
        self._counts_peers = ctx.admission.per_ip is not None and ctx.proxy is None
        self._resume_at = 0.0
        self._drain = Drain(ctx)
        self._thread_id = threading.get_ident()
        self._woken: collections.deque[Connection] = collections.deque()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        limits = ctx.limits
        periods = [_MAX_TICK]
        for timeout in (limits.idle_timeout, limits.send_timeout):
            if timeout is not None:
                periods.append(timeout / 4)
        self._tls = any(listener.tls is not None for listener in ctx.listeners)
        if self._tls:
            periods.append(limits.handshake_timeout / 4)
        if ctx.proxy is not None:
            periods.append(ctx.proxy.timeout / 4)
        #: Sweep period, or None when no per-connection timeout is configured.
        line = line_tick(limits)
        if line is not None:
            periods.append(line)
        self._tick: float | None = (
            min(periods)
            if limits.idle_timeout
            or limits.send_timeout
            or limits.line_timeout
            or self._tls
            or ctx.proxy
            else None
        )
        self._next_sweep = 0.0
        #: When the loop must next look at the clock (None: block indefinitely).
        self._wake_at: float | None = None

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        ctx = self.ctx
        if ctx.stop.is_set():
            return
        self._check_fd(ctx.stop.fd, "the stop signal")
        self._check_fd(self._wake_r, "the wakeup pipe")
        for acceptor in self.acceptors:
            self._check_fd(acceptor.sock.fileno(), f"listener {acceptor.local}")
            acceptor.sock.setblocking(False)
        poller = self.poller
        poller.register(ctx.stop.fd, READ, Callback(self._on_stop))
        if ctx.stop.signal_fd >= 0:  # a signal's handler runs once this thread wakes
            poller.register(ctx.stop.signal_fd, READ, Callback(self._on_signal))
        poller.register(self._wake_r, READ, Callback(self._on_wake))
        self._watch_listeners(True)
        if self._tick is not None:
            self._next_sweep = time.monotonic() + self._tick
            self._wake_at = self._next_sweep
        wait = poller.wait
        handlers = poller.handlers
        scale = poller.scale
        monotonic = time.monotonic
        fd = -1
        while not self.done:
            timeout = None
            if self._wake_at is not None:
                timeout = self._wake_at - monotonic()
                if timeout <= 0:
                    self._on_timer(monotonic())
                    continue
                timeout *= scale
            try:
                for fd, mask in wait(timeout):
                    # An fd closed earlier in this batch maps to a no-op; a
                    # reused fd's new handler may see one spurious event, and
                    # its recv/send just say EAGAIN.
                    handlers[fd].on_ready(mask)
            except InterruptedError:
                pass
            except Exception as exc:
                # A service raised inside a handler: close that connection
                # only.  Events not yet handled in this batch are still
                # pending (level-triggered) and come back on the next wait.
                owner: object = handlers.get(fd)
                if isinstance(owner, Callback):
                    owner = getattr(owner.on_ready, "__self__", None)
                if not isinstance(owner, Connection):
                    raise
                owner.fail(exc)
            fd = -1

    def _check_fd(self, fd: int, what: str) -> None:
        if self.fd_limit is not None and fd >= self.fd_limit:
            raise SockkitError(
                f"the select engine cannot watch fd {fd} ({what}): select() handles fds below"
                f" {self.fd_limit} only; use --engine poll or epoll"
            )

    def close(self) -> None:
        """Close every connection still open and the reactor's own fds.  Listeners stay open."""
        for conn in list(self.conns.values()):
            conn.close(CloseReason.SERVER_STOPPING)
        self.poller.close()
        wake_fds = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1
        for fd in wake_fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    # ------------------------------------------------------------- accepting

    def admit(self, acceptor: _Acceptor, sock: socket.socket, addr: SockAddr) -> None:
        """Refuse or start serving one accepted socket.  No byte is read before ``admit``."""
        ctx = self.ctx
        family = acceptor.family
        peer = format_sockaddr(family, addr)
        admission = self._admission
        reason: str | None = None
        if admission is not None:
            reason = admission.admit(addr, len(self.conns), sock)
        if reason is None and self.fd_limit is not None and sock.fileno() >= self.fd_limit:
            reason = f"fd {sock.fileno()} is past what select() can watch; use poll or epoll"
            if admission is not None:
                admission.release(admission.counted(addr))
        if reason is not None:
            sock.close()
            ctx.log.refused(peer, reason)
            return
        if self._counts_peers:
            self._counted[sock.fileno()] = addr
        sock.setblocking(False)
        if family != socket.AF_UNIX:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener = acceptor.listener
        if ctx.proxy is not None:
            proxied_class = cast("type[ProxiedConnection]", acceptor.conn_class)
            proxied = proxied_class(sock, addr, peer, ctx.proxy.timeout)
            self.conns[proxied.fd] = proxied
            proxied.begin()
            return
        if listener.tls is not None:
            try:
                tls_sock = listener.tls.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
            except (ssl.SSLError, OSError) as exc:
                self._release(sock.fileno())
                sock.close()
                ctx.log.refused(peer, f"tls: {exc}")
                return
            tls_conn = acceptor.conn_class(tls_sock, peer)
            assert isinstance(tls_conn, TlsConnection)
            self.conns[tls_conn.fd] = tls_conn
            try:
                tls_conn.begin()
            except Exception as exc:
                tls_conn.fail(exc)
            return
        conn = acceptor.conn_class(sock, peer)
        self.conns[conn.fd] = conn
        try:
            service = listener.factory()
        except Exception as exc:
            _log.error("service factory failed for %s", peer, exc_info=exc)
            conn.close(service_error(exc))
            return
        try:
            conn.begin_serving(service)
        except Exception as exc:
            conn.fail(exc)

    def back_off(self, delay: float) -> None:
        """Out of fds: stop watching the listeners until a close or ``delay`` seconds."""
        self.backing_off = True
        self._watch_listeners(False)
        self._resume_at = time.monotonic() + delay
        self._schedule()

    def _resume_accepting(self) -> None:
        self.backing_off = False
        if not self.stopping:
            self._watch_listeners(True)
        self._schedule()

    def _watch_listeners(self, watch: bool) -> None:
        for acceptor in self.acceptors:
            fd = acceptor.sock.fileno()
            if watch:
                self.poller.register(fd, READ, acceptor)
            else:
                with contextlib.suppress(KeyError, ValueError):
                    self.poller.unregister(fd)

    # ---------------------------------------------------- connection events

    def connection_gone(self, conn: Connection) -> None:
        if self.conns.get(conn.fd) is conn:
            del self.conns[conn.fd]
            self._release(conn.fd)
        if self.backing_off:
            self._resume_accepting()
        if self.stopping and not self.conns:
            self.done = True

    def hold_slot(self, fd: int, address: SockAddr) -> None:
        """``fd``'s connection holds a per-address slot for ``address`` until it is gone."""
        self._counted[fd] = address

    def _release(self, fd: int) -> None:
        addr = self._counted.pop(fd, None)
        if addr is not None:
            self.ctx.admission.release(addr)

    def on_reactor_thread(self) -> bool:
        return threading.get_ident() == self._thread_id

    def wake_from_thread(self, conn: Connection) -> None:
        self._woken.append(conn)
        fd = self._wake_w
        if fd >= 0:  # -1 once the reactor is gone: never write to a reused fd number
            with contextlib.suppress(OSError):
                os.write(fd, b"w")

    def _on_wake(self, mask: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        woken = self._woken
        while woken:
            woken.popleft().sync()

    # ------------------------------------------------------- stop and timers

    def _on_signal(self, mask: int) -> None:
        self.ctx.stop.drain_signals()

    def _on_stop(self, mask: int) -> None:
        self.ctx.stop.consume()
        if self.stopping:  # asked again: close what is left now
            self._schedule()
            return
        self.stopping = True
        self._watch_listeners(False)
        self._drain.begin(len(self.conns))
        if not self.conns:
            self.done = True
        self._schedule()

    def _schedule(self) -> None:
        """Recompute when the loop must next look at the clock."""
        times = []
        if self._tick is not None:
            times.append(self._next_sweep)
        if self.backing_off:
            times.append(self._resume_at)
        if self.stopping:
            times.append(self._drain.deadline if not self.ctx.stop.hurried() else 0.0)
        self._wake_at = min(times) if times else None

    def _on_timer(self, now: float) -> None:
        if self.stopping and self._drain.remaining() <= 0:
            for conn in list(self.conns.values()):
                conn.close(CloseReason.SERVER_STOPPING)
            self.done = True
            return
        if self.backing_off and now >= self._resume_at:
            self._resume_accepting()
        if self._tick is not None and now >= self._next_sweep:
            self._sweep(now)
            self._next_sweep = now + self._tick
        self._schedule()

    def _sweep(self, now: float) -> None:
        """Let every connection's core check its deadlines; close the ones past one."""
        handshake = self.ctx.limits.handshake_timeout
        for conn in list(self.conns.values()):
            if isinstance(conn, ProxiedConnection) and conn.header_late(now):
                conn.close(f"proxy-protocol: no PROXY header within {conn.deadline:g} s")
                continue
            if not conn.serving:
                if now - conn.opened_at >= handshake:
                    conn.close(CloseReason.TLS_HANDSHAKE_TIMEOUT)
                continue
            conn.tick(now)
            if conn.should_close:
                conn.close(conn.close_reason)


class _ReactorEngine(Engine):
    """A reactor engine; subclasses pick the poller class, nothing else."""

    poller_class: ClassVar[type[Poller] | None]

    @classmethod
    def available(cls) -> bool:
        return cls.poller_class is not None

    def run(self, ctx: ServeContext) -> None:
        factory = self.poller_class
        assert factory is not None
        reactor = _Reactor(ctx, factory())
        try:
            reactor.run()
        finally:
            reactor.close()


class SelectEngine(_ReactorEngine):
    """select(2): portable, but only fds below 1024; others are refused with a log line."""

    name = "select"
    poller_class = SelectPoller


class PollEngine(_ReactorEngine):
    """poll(2): no fd limit, cost linear in the number of connections per wait."""

    name = "poll"
    poller_class = PollPoller if hasattr(select, "poll") else None


class EpollEngine(_ReactorEngine):
    """epoll(7): cost proportional to the ready connections only."""

    name = "epoll"
    poller_class = EpollPoller if hasattr(select, "epoll") else None
