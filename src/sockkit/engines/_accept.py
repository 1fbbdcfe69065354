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

import logging
import select
import socket
from abc import abstractmethod

from sockkit._accept import Acceptor, SockAddr
from sockkit._endpoint import format_sockaddr
from sockkit._errors import translate_os_error
from sockkit.engines._base import Engine
from sockkit.engines._blocking import Connection
from sockkit.engines._contract import ServeContext, StreamListener
from sockkit.engines._lifecycle import Drain

__all__ = ["AcceptingEngine"]

_logger = logging.getLogger("sockkit.engines")


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
            drain = Drain(ctx)
            drain.begin(self.open_count())
            self.drain(drain)

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
    def drain(self, drain: Drain) -> None:
        """Let open connections finish while ``drain.step()`` allows, end the rest, clean up.

        Wait in slices of at most ``drain.step()`` seconds (a second stop makes
        it 0).  Returns only when no thread or child process of this engine is left.
        """

    def extra_fds(self) -> tuple[int, ...]:
        """File descriptors the accept loop should also wake for (fork: child exits)."""
        return ()

    def on_extra_fd(self, fd: int) -> None:
        """``fd``, one of :meth:`extra_fds`, is readable."""

    def poll_timeout_ms(self) -> int:
        """How long the accept loop may sleep with nothing to do (-1: until woken)."""
        return -1

    # -- the loop -----------------------------------------------------------

    def _accept_until_stopped(self) -> None:
        ctx = self.ctx
        poller = select.poll()
        acceptors: dict[int, tuple[Acceptor, StreamListener]] = {}
        for listener in ctx.listeners:
            # Non-blocking (Acceptor sees to it) so that a client that vanished
            # between poll and accept, or another worker that won the race,
            # cannot stall the loop.
            acceptor = Acceptor(listener.sock, str(listener.endpoint), _logger.warning)
            acceptors[listener.sock.fileno()] = (acceptor, listener)
            poller.register(listener.sock, select.POLLIN)
        poller.register(ctx.stop.fd, select.POLLIN)
        # Set while stop handlers are installed: the main thread must wake for
        # a signal so that its handler runs (see StopSignal).
        signal_fd = ctx.stop.signal_fd
        if signal_fd >= 0:
            poller.register(signal_fd, select.POLLIN)
        extra = self.extra_fds()
        for fd in extra:
            poller.register(fd, select.POLLIN)
        stop = ctx.stop
        while not stop.is_set():
            for fd, _ in poller.poll(self.poll_timeout_ms()):
                found = acceptors.get(fd)
                if found is None:
                    if fd == signal_fd:
                        stop.drain_signals()
                    elif fd in extra:
                        self.on_extra_fd(fd)
                    continue
                acceptor, listener = found
                try:
                    for got in acceptor.batch():
                        if isinstance(got, float):
                            stop.wait(got)  # the listener stays readable: never retry at once
                            break
                        self._hand_off(got[0], got[1], listener)
                except OSError as exc:
                    raise translate_os_error(exc, "accept on", str(listener.endpoint)) from exc

    def _hand_off(self, sock: socket.socket, addr: SockAddr, listener: StreamListener) -> None:
        ctx = self.ctx
        admission = ctx.admission
        reason: str | None = None
        if admission.refuses_any:
            reason = admission.admit(addr, self.open_count(), sock)
        if reason is None:
            reason = self.dispatch(Connection(sock, addr, listener, ctx))
            if reason is not None:
                admission.release(admission.counted(addr))
        if reason is not None:
            self._refuse(sock, addr, reason)

    def _refuse(self, sock: socket.socket, addr: SockAddr, reason: str) -> None:
        family = sock.family
        sock.close()
        self.ctx.log.refused(format_sockaddr(family, addr), reason)
