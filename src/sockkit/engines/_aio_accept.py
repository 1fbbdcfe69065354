"""The asyncio engine's own accept loop, in place of ``loop.create_server``.

Why not ``create_server``: on Python 3.11, when ``accept()`` fails with
EMFILE, asyncio's selector loop keeps calling it for the rest of its batch
(``backlog`` times) and schedules one retry per failure -- thousands of
timers with ``--backlog 4096``, each logging a traceback, and each failing
again with a traceback if the server closes before they fire.  It also calls
``listen()`` again with its own backlog.  This loop instead:

- accepts up to :data:`ACCEPT_BATCH` connections per readiness event, so one
  busy listener cannot starve the connections already open;
- on EMFILE/ENFILE/ENOBUFS/ENOMEM stops watching the listener, logs one line
  (once per episode), and looks again after :data:`EMFILE_BACKOFF` seconds:
  never a busy loop, and the waiting clients stay queued in the backlog;
- leaves the listening socket open (and its backlog alone) for the server
  that owns it to close.

Each accepted socket is handed to ``loop.connect_accepted_socket``, which
makes the same transport ``create_server`` would (TCP_NODELAY included).

TLS listeners are accepted here under both engines, because the peer must be
admitted (``--allow``/``--deny``, ``--max-conns``) before the handshake sends
it a byte: ``create_server(ssl=...)`` only tells the protocol after the
handshake, and ``start_tls`` from ``connection_made`` races uvloop, which
starts reading right after ``connection_made`` even if it paused reading.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from sockkit._accept import AsyncAcceptor, SockAddr
from sockkit._endpoint import format_sockaddr
from sockkit.engines._aio_protocol import Door

__all__ = ["Acceptor"]

_logger = logging.getLogger("sockkit.engines")


class Acceptor:
    """Accepts on one listening socket and hands each connection to the loop.

    The accepting itself (batches, the back-off) is :class:`AsyncAcceptor`'s;
    this adds what the engine needs: admission before a TLS handshake, and
    adopting each socket into a transport.  ``start()`` begins accepting;
    ``close()`` stops at once; ``wait_closed()`` waits for connections still
    being set up.
    """

    def __init__(
        self,
        door: Door,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        where: str,
    ) -> None:
        self._door = door
        self._loop = door.hub.loop
        self._factory = protocol_factory
        self._accepting = AsyncAcceptor(
            sock, self._accepted, where=where, warn=_logger.warning, loop=self._loop
        )
        self._adopting: set[asyncio.Task[None]] = set()
        # Only TLS peers are admitted here; plain ones in connection_made.
        self._admits_here = door.tls is not None

    def start(self) -> None:
        self._accepting.start()

    def close(self) -> None:
        self._accepting.close()

    async def wait_closed(self) -> None:
        """Cancel connections still in their TLS handshake (the drain is over) and wait."""
        for task in self._adopting:
            task.cancel()
        if self._adopting:
            await asyncio.gather(*self._adopting, return_exceptions=True)

    def _accepted(self, conn: socket.socket, addr: SockAddr) -> None:
        if self._admits_here:
            reason = self._door.refusal(addr, len(self._adopting), conn)
            if reason is not None:
                conn.close()
                self._refused(addr, reason)
                return
        task = self._loop.create_task(self._adopt(conn, addr))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _adopt(self, conn: socket.socket, addr: object) -> None:
        door = self._door
        timeout = door.hub.limits.handshake_timeout if door.tls is not None else None
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=door.tls, ssl_handshake_timeout=timeout
            )
        except OSError as exc:
            # The peer vanished while the transport was set up, or (TLS) the
            # handshake failed or timed out: SSLError and the timeout's
            # ConnectionAbortedError are OSErrors too.
            conn.close()
            if door.releases:
                door.hub.admission.release(addr)
            if door.tls is not None:
                self._refused(addr, f"tls: {exc.strerror or exc or type(exc).__name__}")
        except BaseException:
            conn.close()
            raise

    def _refused(self, addr: object, reason: str) -> None:
        log = self._door.hub.log
        if log.enabled:
            log.refused(format_sockaddr(self._door.family, addr), reason)
