"""One connection, served in the calling thread: the loop the fork, thread and pool engines share.

(Over 400 lines: the TLS handshake, the pump around the core and the blocking
echo fast path are one connection's three phases and share its fds and lock.)

:meth:`Connection.run` joins one accepted socket to one
:class:`~sockkit.services.Service` and returns when the connection is over.  The
three classic engines differ only in *where* it runs (a child process, a new
thread, a pool thread), like ``socketserver``'s ``process_request`` hook.

How the loop waits.  The connection's own thread is the only one that calls
the service or touches the socket.  It sleeps in ``poll()`` on two things: the
socket and an eventfd that :attr:`Service.wakeup` writes to.  The alternative,
sending from the waking thread under a per-connection lock, would make one
chat client's thread block on another client's full socket (or deadlock when
two rooms' members wake each other while holding their own locks); a poll on
one more fd costs about a tenth of a request's CPU and keeps every service
call on one thread.

The rules (output buffer, water marks, cap, deadlines, half-close order,
close reasons) are :class:`~sockkit.engines._core.ConnectionCore`'s;
:meth:`Connection._pump` only moves bytes and waits.  A service that only
answers what it is sent (echo), with no timeouts, takes a blocking fast path
(:meth:`Connection._serve_replies`), where the kernel's socket buffer is the
output buffer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import select
import socket
import sys
import threading
import time
from types import ModuleType
from typing import TYPE_CHECKING, cast

from sockkit._endpoint import format_sockaddr
from sockkit._proxy_admission import ProxiedPeer, ProxyStage, read_header_blocking
from sockkit._proxy_protocol import ProxyHeaderError
from sockkit.engines._contract import (
    REFUSED_TLS,
    CloseReason,
    ServeContext,
    StreamListener,
    service_error,
)
from sockkit.engines._core import ConnectionCore, EndOfStream, tick_interval
from sockkit.services._base import CLOSE, Service, lends_input

if TYPE_CHECKING:
    import ssl

__all__ = ["Aborted", "Connection"]

_logger = logging.getLogger("sockkit.engines")

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLLGONE = select.POLLHUP | select.POLLERR | select.POLLNVAL

_REASONS = {
    errno.ECONNRESET: "reset by peer",
    errno.EPIPE: "peer closed",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
}


def _ssl() -> ModuleType | None:
    """The ssl module if anything loaded it, else None.

    ssl is not imported here: only a tls:// listener's context brings it in,
    and without it no socket can be an SSLSocket nor an error an SSLError.
    Keeping it out keeps a plain fork server's processes ~6 MiB smaller.
    """
    return sys.modules.get("ssl")


def _would_block(tls: bool) -> tuple[type[Exception], ...]:
    """What a non-blocking send or recv raises when it must wait."""
    ssl = _ssl() if tls else None
    if ssl is None:
        return (BlockingIOError,)
    return (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


#: A read at least this large makes the next read a plain recv() (see _serve_replies).
_BULK_READ = 16 * 1024


class Aborted(Exception):
    """Raised inside a connection's loop to end it now (a fork child's SIGTERM)."""


class Connection:
    """One accepted socket on its way through the service's call grammar.

    Made by the accept loop (cheap: no I/O), then :meth:`run` is called once, in
    the thread or process that serves it.  :meth:`abort` may be called from any
    thread at any time, before or during :meth:`run`.
    """

    __slots__ = (
        "_closed",
        "_efd",
        "_lock",
        "aborted",
        "addr",
        "buffer",
        "bytes_in",
        "bytes_out",
        "counted",
        "ctx",
        "first",
        "listener",
        "sock",
    )

    def __init__(
        self, sock: socket.socket, addr: object, listener: StreamListener, ctx: ServeContext
    ) -> None:
        self.sock = sock
        self.addr = addr
        self.listener = listener
        self.ctx = ctx
        self.aborted = False
        #: Where recv_into reads; an engine may lend one to reuse (a pool
        #: thread's, or one the fork parent touched so children share its pages).
        self.buffer: memoryview | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        #: Bytes read with a PROXY header that belong to the service.
        self.first = b""
        #: The address this connection holds a per-address slot for, released
        #: by the engine when it ends: the peer's, or behind --proxy-protocol
        #: the client's once its header is read (None: no slot).
        self.counted = ctx.admission.counted(addr)  # type: ignore[arg-type]
        self._efd = -1
        self._closed = False
        # Guards the fds against being closed while another thread uses them:
        # a late wakeup or abort must never land on a reused descriptor.
        self._lock = threading.Lock()

    # -- from other threads -------------------------------------------------

    def abort(self) -> None:
        """End the connection soon: shut the socket down so any blocked call returns."""
        with self._lock:
            self.aborted = True
            if not self._closed:
                # OSError: not connected any more, so it is ending anyway.
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_RDWR)

    def _wake(self) -> None:
        with self._lock:
            if self._efd >= 0:
                os.eventfd_write(self._efd, 1)

    # -- in the serving thread ----------------------------------------------

    def run(self) -> None:
        """Serve the connection to its end, log it, close it.  Never raises."""
        ctx = self.ctx
        log = ctx.log
        peer = _peer_text(self.addr)
        try:
            if self.aborted:
                self._close()
                log.refused(peer, CloseReason.SERVER_STOPPING)
                return
            if isinstance(self.addr, tuple):  # TCP: answers must not wait for Nagle
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            via = None
            if ctx.proxy is not None:
                proxied = self._proxy_header(peer)
                if proxied is None:
                    return
                peer, via = proxied.peer, proxied.via
            if self.listener.tls is not None and not self._handshake(peer):
                return
            service = self.listener.factory()
        except Exception:
            _logger.exception("cannot start serving %s", peer)
            self._close()
            return
        except BaseException:
            self._close()
            raise
        # The log is skipped entirely when it writes nothing: in a fork child
        # every object touched is a page copied.
        logging_on = log.enabled
        if logging_on:
            started = time.monotonic()
            if via is None:
                log.opened(peer, str(self.listener.endpoint))
            else:
                log.opened(peer, str(self.listener.endpoint), via)
        reason: str | None = "error"
        try:
            reason = self._serve(service, peer)
        except Aborted:
            reason = CloseReason.SERVER_STOPPING
        except OSError as exc:
            reason = CloseReason.SERVER_STOPPING if self.aborted else _describe(exc)
        except Exception as exc:
            _logger.exception("service %s failed for %s", type(service).__name__, peer)
            reason = service_error(exc)
        finally:
            try:
                service.closed()
            except Exception:
                _logger.exception("service %s failed in closed()", type(service).__name__)
            self._close()
            if logging_on:
                duration = time.monotonic() - started
                log.closed(peer, self.bytes_in, self.bytes_out, duration, reason)

    def _proxy_header(self, peer: str) -> ProxiedPeer | None:
        """Read the PROXY header in time and admit the client it names; else log, close, None."""
        assert self.ctx.proxy is not None
        stage = ProxyStage(self.addr)  # type: ignore[arg-type]
        try:
            proxied = read_header_blocking(self.sock, stage, self.ctx.proxy.timeout)
        except ProxyHeaderError as exc:
            self.ctx.log.refused(peer, CloseReason.SERVER_STOPPING if self.aborted else str(exc))
            self._close()
            return None
        refusal = self.ctx.admission.admit_client(proxied.address)
        if refusal is not None:
            self.ctx.log.refused(proxied.peer, refusal)
            self._close()
            return None
        self.counted = proxied.address
        self.first = proxied.leftover
        return proxied

    def _handshake(self, peer: str) -> bool:
        """Do the TLS handshake within ``handshake_timeout``; on failure log, close, say False."""
        assert self.listener.tls is not None
        try:
            tls = self.listener.tls.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            self.ctx.log.refused(peer, f"{REFUSED_TLS}: setup failed: {exc}")
            self._close()
            return False
        with self._lock:
            self.sock = tls  # wrap_socket detached the plain socket: abort() must see this one
        try:
            tls.settimeout(self.ctx.limits.handshake_timeout)
            tls.do_handshake()
        except (OSError, ValueError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
            reason = CloseReason.SERVER_STOPPING if self.aborted else f"{REFUSED_TLS}: {why}"
            self.ctx.log.refused(peer, reason)
            self._close()
            return False
        return True

    def _close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._efd >= 0:
                os.close(self._efd)
                self._efd = -1
            self.sock.close()

    def _serve(self, service: Service, peer: str) -> str | None:
        """Serve to the end; returns the close reason (``None``: a normal end).

        Socket errors propagate (the caller turns them into a reason).  A
        service that only answers what it is sent, without timeouts, takes
        the blocking fast path; every other one is pumped around the core.
        """
        limits = self.ctx.limits
        if (
            type(service).produce is Service.produce
            and not self.first
            and limits.idle_timeout is None
            and limits.send_timeout is None
        ):
            return self._serve_replies(service, peer)
        core = ConnectionCore(service, limits)
        try:
            return self._pump(core, peer)
        finally:
            self.bytes_in, self.bytes_out = core.bytes_in, core.bytes_out

    def _pump(self, core: ConnectionCore, peer: str) -> str | None:
        """The I/O pump around :class:`ConnectionCore`: sockets and waiting here, rules there."""
        sock = self.sock
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        with self._lock:
            self._efd = efd
        core.service.wakeup = self._wake
        sock.setblocking(False)
        poller = select.poll()
        poller.register(efd, _POLLIN)
        sock_fd = sock.fileno()
        poller.register(sock_fd, 0)
        poll = poller.poll
        # recv_into one buffer, then copy out just what arrived: recv(read_size)
        # would allocate read_size bytes per call, and past glibc's mmap
        # threshold (128 KiB) that is an mmap/munmap pair per message.
        buffer = self._read_buffer()
        recv_into = sock.recv_into
        # After a handshake the socket is the SSLSocket; only then is ssl loaded.
        tls = cast("ssl.SSLSocket", sock) if self.listener.tls is not None else None
        would_block = _would_block(tls is not None)
        interval = tick_interval(self.ctx.limits)
        timeout_ms = -1 if interval is None else int(interval * 1000) + 1
        next_tick = 0.0 if interval is None else time.monotonic() + interval
        mask = 0
        core.start(peer)
        if self.first:  # what followed a PROXY header: the service's first bytes
            core.receive(self.first)
        while True:
            self._send_all_possible(core, would_block)
            if core.should_close:
                return core.close_reason
            if tls is not None and core.wants_read and tls.pending():
                events = [(sock_fd, _POLLIN)]  # decrypted bytes already wait in the TLS layer
            else:
                want = (_POLLIN if core.wants_read else 0) | (_POLLOUT if core.wants_write else 0)
                if want != mask:
                    poller.modify(sock_fd, want)
                    mask = want
                events = poll(timeout_ms)
            if interval is not None:
                now = time.monotonic()
                if now >= next_tick:
                    core.tick(now)
                    next_tick = now + interval
            for fd, ev in events:
                if fd == efd:
                    with contextlib.suppress(BlockingIOError):
                        os.eventfd_read(efd)
                    if self.aborted:
                        return CloseReason.SERVER_STOPPING
                    continue
                if core.wants_read and ev & (_POLLIN | _POLLGONE):
                    try:
                        n = recv_into(buffer)
                    except would_block:
                        continue
                    if n:
                        core.receive(buffer[:n].tobytes())
                    elif self.aborted:
                        return CloseReason.SERVER_STOPPING
                    else:
                        core.receive_eof()
                elif ev & _POLLGONE and not core.out:
                    # Not reading and nothing to send, yet the socket reports
                    # hang-up: the peer is gone.  Polling on would spin.
                    return CloseReason.SERVER_STOPPING if self.aborted else "peer closed"

    def _send_all_possible(
        self, core: ConnectionCore, would_block: tuple[type[Exception], ...]
    ) -> None:
        """Send what the core holds until the socket is full; let a producer fill the room."""
        send = self.sock.send
        while not core.should_close:
            data = core.data_to_send()
            if isinstance(data, EndOfStream):
                self.sock.shutdown(socket.SHUT_WR)
                core.fin_sent()
                continue
            if data:
                size = len(data)
                try:
                    sent = send(data)
                except would_block:
                    sent = 0
                core.sent(sent)
                if sent < size:
                    return  # the socket is full: wait for POLLOUT
                continue
            before = core.bytes_out + len(core.out)
            core.writable()
            if core.bytes_out + len(core.out) == before and not core.fin_due:
                return  # the service has nothing more for now

    def _read_buffer(self) -> memoryview:
        if self.buffer is None or len(self.buffer) != self.ctx.limits.read_size:
            # Anonymous pages, not a bytearray: a bytearray is zero-filled (all
            # read_size bytes resident at once), while the kernel backs these
            # only where recv_into writes — an idle connection that has seen a
            # 64-byte request holds one page of buffer, not 256 KiB.
            self.buffer = memoryview(mmap.mmap(-1, self.ctx.limits.read_size))
        return self.buffer

    def _serve_replies(self, service: Service, peer: str) -> str | None:
        """The loop for a service that only ever answers what it is sent (echo, daytime).

        Such a service has no :meth:`~Service.produce`, so nothing can appear
        between calls and no wakeup can matter: the thread simply blocks in
        ``recv`` and ``sendall``, one system call each way and no ``poll``.
        The kernel's socket buffer is the output buffer; a peer that stops
        reading stops us reading from it too.  Without timeouts only a peer
        or an :meth:`abort` ends the wait, which is what the limits ask for.

        A service whose ``received`` borrows its input (echo, discard:
        :func:`~sockkit.services._base.borrows_input`) is handed a view of the
        read buffer: a message is then never copied in Python, and every read,
        small or bulk, is one ``recv_into`` into the same pages (socketserver's
        ``recv(65536)`` allocates and frees 64 KiB per call).
        """
        sock = self.sock
        if sock.gettimeout() is not None:
            sock.settimeout(None)
        # Small reads go through the connection's buffer and are copied out
        # (no read_size allocation per call); after a large read the next one
        # takes recv()'s own bytes object, saving a copy of each bulk chunk.
        buffer = self._read_buffer()
        recv_into = sock.recv_into
        recv = sock.recv
        borrow = lends_input(type(service))
        # At most 64 KiB: recv() allocates the whole size it is asked for, and
        # past glibc's mmap threshold (128 KiB) that is an mmap/munmap per call.
        bulk_size = min(self.ctx.limits.read_size, 64 * 1024)
        bulk = False
        sendall = sock.sendall
        cap = self.ctx.limits.output_cap
        reading = True
        shut_wr = False
        bytes_in = bytes_out = 0
        try:
            out = service.connected(peer)
            while True:
                if out and not shut_wr:
                    if len(out) > cap:
                        # What the kernel does not take at once is the output
                        # buffer, as on every engine: past the cap, disconnect.
                        sent = _send_now(sock, out)
                        bytes_out += sent
                        if len(out) - sent > cap:
                            return CloseReason.OUTPUT_CAP
                        out = out[sent:]
                    sendall(out)
                    bytes_out += len(out)
                state = service.state
                if state:
                    if state == CLOSE:
                        return service.close_reason
                    if not shut_wr:
                        sock.shutdown(socket.SHUT_WR)
                        shut_wr = True
                if not reading:
                    return None  # the peer is done and so is the service
                data: bytes | memoryview
                if bulk:
                    data = recv(bulk_size)
                else:
                    n = recv_into(buffer)
                    # A view is consumed (sent) before the buffer is read into again.
                    data = buffer[:n] if borrow else buffer[:n].tobytes()
                if data:
                    bytes_in += len(data)
                    bulk = not borrow and len(data) >= _BULK_READ
                    out = service.received(data)  # type: ignore[arg-type]  # a view when borrowed
                else:
                    if self.aborted:
                        return CloseReason.SERVER_STOPPING
                    reading = False
                    out = service.eof_received()
        finally:
            self.bytes_in = bytes_in
            self.bytes_out = bytes_out


def _send_now(sock: socket.socket, data: bytes | memoryview) -> int:
    """Send what the kernel takes without waiting; the socket stays blocking."""
    sock.setblocking(False)
    try:
        return sock.send(data)
    except _would_block(True):
        return 0
    finally:
        sock.setblocking(True)


def _peer_text(addr: object) -> str:
    """The peer as ``format_sockaddr`` writes it, with IPv4 (the common case) done inline.

    The address's shape tells the family (2-tuple IPv4, 4-tuple IPv6, else
    Unix), which spares converting ``sock.family`` to its enum per connection.
    """
    if isinstance(addr, tuple):
        if len(addr) == 2:
            return f"{addr[0]}:{addr[1]}"
        return format_sockaddr(socket.AF_INET6, addr)
    return format_sockaddr(socket.AF_UNIX, addr)


def _describe(exc: OSError) -> str:
    """A short close reason for a socket error."""
    ssl = _ssl()
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    code = exc.errno
    if code in _REASONS:
        return _REASONS[code]
    return exc.strerror or str(exc) or type(exc).__name__
