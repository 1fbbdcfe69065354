"""The accept loop the fork, thread and pool engines share.

:class:`AcceptingEngine` owns everything up to the hand-off: it polls the
listening sockets beside ``ctx.stop.fd`` (so a stop is seen at once), accepts,
asks ``access.admit`` and ``max_conns`` before a byte is read or written, backs
off on EMFILE/ENFILE, and on stop calls :meth:`AcceptingEngine.drain`.  A
subclass decides only where a :class:`~sockkit.engines._blocking.Connection`
runs, through four hooks (like ``socketserver``'s ``process_request``):

- :meth:`start` — before the first accept (start workers, install handlers);
- :meth:`open_count` — connections open now, for ``max_conns``;
- :meth:`dispatch` — run one connection somewhere; may refuse it;
- :meth:`drain` — after the last accept: wait, force-close, join, reap.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
from abc import abstractmethod

from sockkit._endpoint import format_sockaddr
from sockkit._errors import translate_os_error
from sockkit.engines._base import Engine
from sockkit.engines._blocking import Connection
from sockkit.server._context import (
    REFUSED_DENY,
    REFUSED_MAX_CONNS,
    ServeContext,
    StreamListener,
)

__all__ = ["AcceptingEngine"]

_logger = logging.getLogger("sockkit.engines")

#: Connections taken per readiness event, so one busy listener cannot starve the others.
_ACCEPT_BATCH = 32
#: How long to wait before accepting again when the process is out of file descriptors.
_EMFILE_BACKOFF = 0.1
#: Errors meaning the process (or system) ran out of a resource: back off, retry.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Errors meaning only that this one client vanished before we accepted it.
_CLIENT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ETIMEDOUT})


class AcceptingEngine(Engine):
    """An engine built from the shared accept loop and one hand-off strategy."""

    ctx: ServeContext

    def run(self, ctx: ServeContext) -> None:
        """Accept until ``ctx.stop`` is set, then :meth:`drain`; the contract is in ``_base``."""
        self.ctx = ctx
        self.start()
        try:
            self._accept_until_stopped()
        finally:
            self.drain(ctx.limits.drain_timeout)

    # -- hooks --------------------------------------------------------------

    def start(self) -> None:
        """Prepare to serve (called once, in :meth:`run`'s thread, before any accept)."""

    @abstractmethod
    def open_count(self) -> int:
        """How many connections are open (or queued to be served) now."""

    @abstractmethod
    def dispatch(self, conn: Connection) -> str | None:
        """Arrange for ``conn.run()`` to be called; return ``None``, or why it was refused.

        On refusal the caller closes the socket and logs the reason.
        """

    @abstractmethod
    def drain(self, timeout: float) -> None:
        """Let open connections finish for up to ``timeout`` seconds, end the rest, clean up.

        Returns only when no thread or child process of this engine is left.
        """

    def extra_fd(self) -> int | None:
        """A file descriptor the accept loop should also wake for (fork: child exits)."""
        return None

    def on_extra_fd(self) -> None:
        """:meth:`extra_fd` is readable."""

    def poll_timeout_ms(self) -> int:
        """How long the accept loop may sleep with nothing to do (-1: until woken)."""
        return -1

    # -- the loop -----------------------------------------------------------

    def _accept_until_stopped(self) -> None:
        ctx = self.ctx
        poller = select.poll()
        listeners: dict[int, StreamListener] = {}
        for listener in ctx.listeners:
            # Non-blocking so that a client that vanished between poll and accept
            # (or another worker process that won the race) cannot stall the loop.
            listener.sock.setblocking(False)
            listeners[listener.sock.fileno()] = listener
            poller.register(listener.sock, select.POLLIN)
        poller.register(ctx.stop.fd, select.POLLIN)
        extra = self.extra_fd()
        if extra is not None:
            poller.register(extra, select.POLLIN)
        stop = ctx.stop
        out_of_fds = False
        while not stop.is_set():
            for fd, _ in poller.poll(self.poll_timeout_ms()):
                listener_or_none = listeners.get(fd)
                if listener_or_none is None:
                    if fd == extra:
                        self.on_extra_fd()
                    continue
                listener = listener_or_none
                for _ in range(_ACCEPT_BATCH):
                    try:
                        sock, addr = listener.sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError as exc:
                        if exc.errno in _CLIENT_GONE:
                            continue
                        if exc.errno not in _EXHAUSTED:
                            where = str(listener.endpoint)
                            raise translate_os_error(exc, "accept on", where) from exc
                        if not out_of_fds:
                            _logger.warning(
                                "cannot accept on %s: %s; retrying every %.1fs",
                                listener.endpoint,
                                exc.strerror,
                                _EMFILE_BACKOFF,
                            )
                            out_of_fds = True
                        # Wait instead of retrying at once: the listener stays
                        # readable, so an immediate retry would spin.
                        stop.wait(_EMFILE_BACKOFF)
                        break
                    if out_of_fds:
                        _logger.warning("accepting on %s again", listener.endpoint)
                        out_of_fds = False
                    self._hand_off(sock, addr, listener)

    def _hand_off(self, sock: socket.socket, addr: object, listener: StreamListener) -> None:
        ctx = self.ctx
        if not ctx.access.open and not ctx.access.admit(_host_of(sock.family, addr)):
            self._refuse(sock, addr, REFUSED_DENY)
            return
        max_conns = ctx.limits.max_conns
        if max_conns is not None and self.open_count() >= max_conns:
            self._refuse(sock, addr, REFUSED_MAX_CONNS)
            return
        reason = self.dispatch(Connection(sock, addr, listener, ctx))
        if reason is not None:
            self._refuse(sock, addr, reason)

    def _refuse(self, sock: socket.socket, addr: object, reason: str) -> None:
        family = sock.family
        sock.close()
        self.ctx.log.refused(format_sockaddr(family, addr), reason)


def _host_of(family: int, addr: object) -> str:
    """The IP address ``access.admit`` wants ("" for Unix peers, which it always admits)."""
    if family == socket.AF_UNIX or not isinstance(addr, tuple):
        return ""
    return str(addr[0])
